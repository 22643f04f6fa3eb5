"""summary.md: decision first, every non-passing check in a table, evidence folded, size bounded."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from releasegate.decision import Judgement
from releasegate.report.summary import MAX_EVIDENCE_CHARS, MAX_TOTAL_BYTES, TRUNCATED, render_summary
from releasegate.report.verdict import RunFacts
from releasegate.results import CheckResult, Decision

STARTED = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
FACTS = RunFacts(stage="post-deploy", target="staging", started_at=STARTED, finished_at=STARTED)


def failed(check_id: str = "health.readiness", summary: str = "503 from /readyz", **fields: Any) -> CheckResult:
    return CheckResult(check_id, "failed", "blocking", summary, **fields)


def render(*results: CheckResult, decision: Decision = Decision.ROLLBACK, notes: tuple[str, ...] = (), dry_run: bool = False) -> str:
    facts = RunFacts(stage=FACTS.stage, target=FACTS.target, started_at=STARTED, finished_at=STARTED, dry_run=dry_run)
    return render_summary(facts, Judgement(decision=decision, reasons=("the reason",), results=results, notes=notes))


def table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| `")]


def cells(row: str) -> list[str]:
    # Split on pipes that are not escaped; the outer pipes leave an empty first and last piece.
    return re.split(r"(?<!\\)\|", row)[1:-1]


def test_starts_with_the_decision() -> None:
    text = render(failed())

    assert text.splitlines()[0] == "## ❌ releasegate: **ROLLBACK**"
    assert "post-deploy on `staging` · exit code 1 · 1 failed" in text
    assert "### Reasons\n- the reason\n" in text


def test_success_and_dry_run_headlines() -> None:
    assert render(decision=Decision.PASS).startswith("## ✅ releasegate: **PASS**\n")
    assert render(decision=Decision.HOLD, dry_run=True).startswith("## ⏸️ releasegate: **HOLD** (dry run: exit 0)\n")


def test_one_table_row_per_non_passing_check() -> None:
    passed = CheckResult("health.liveness", "passed", "blocking", "200")
    warned = CheckResult("health.deep", "warned", "warning", "cache degraded")

    rows = table_rows(render(passed, failed(), warned))

    assert [cells(row)[0].strip() for row in rows] == ["`health.readiness`", "`health.deep`"]
    assert [cells(row)[1].strip() for row in rows] == ["failed", "warned"]


def test_pipes_and_newlines_in_cells_cannot_break_the_table() -> None:
    row = only_row(render(failed(summary="a|b\nc", observed={"x": "1|2"}, expected=None)))

    assert len(cells(row)) == 6
    assert cells(row)[3].strip() == '{"x": "1\\|2"}'
    assert cells(row)[4].strip() == "—"
    assert cells(row)[5].strip() == "a\\|b c"


def only_row(text: str) -> str:
    rows = table_rows(text)
    assert len(rows) == 1, rows
    return rows[0]


def test_evidence_is_folded_in_details() -> None:
    text = render(failed(evidence={"status": 503, "body": "db down"}))

    assert "<details><summary><code>health.readiness</code> evidence</summary>" in text
    folded = text.split("<details>", 1)[1].split("</details>", 1)[0]
    assert '"status": 503' in folded and '"body": "db down"' in folded


def test_a_code_fence_in_evidence_cannot_close_the_block() -> None:
    text = render(failed(evidence={"body": "```\n# heading"}))

    assert text.count("```") == 2


def test_huge_evidence_is_truncated() -> None:
    text = render(failed(evidence={"body": "x" * 100_000}))

    folded = text.split("<details>", 1)[1].split("</details>", 1)[0]
    assert "… (truncated; full evidence in verdict.json)" in folded
    assert len(folded) < MAX_EVIDENCE_CHARS + 500


def test_notes_are_listed() -> None:
    text = render(failed(), notes=("waiver for health.deep expired on 2026-05-31: not applied",))

    assert text.endswith("### Notes\n- waiver for health.deep expired on 2026-05-31: not applied\n")


def test_ten_thousand_failures_stay_under_the_size_cap() -> None:
    # Given a run where everything failed, with evidence and non-ASCII text (several bytes a character)
    results = [
        failed("health.readiness", summary=f"replica {i}: 応答なし", evidence={"subject": f"replica-{i}", "body": "障害" * 200})
        for i in range(10_000)
    ]

    text = render(*results)

    # Then the summary fits GitHub's limit in bytes, says it was cut, and leaves no block open
    assert len(text.encode("utf-8")) <= MAX_TOTAL_BYTES
    assert text.endswith(TRUNCATED)
    assert text.startswith("## ❌ releasegate: **ROLLBACK**")
    assert text.count("```") % 2 == 0
    assert text.count("<details>") == text.count("</details>")


def test_a_summary_under_the_cap_is_not_truncated() -> None:
    text = render(*[failed(summary=f"replica {i}") for i in range(100)])

    assert TRUNCATED.strip() not in text
    assert len(table_rows(text)) == 100
