"""summary.md: decision first, then every non-passing check, evidence folded (GitHub step summary)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from releasegate.decision import Judgement
from releasegate.report.canary import canary_blocks
from releasegate.report.verdict import RunFacts, iso
from releasegate.results import CheckResult

# GitHub refuses a step summary over 1024 KiB (bytes, not characters); stay far below. Output is
# cut between whole blocks, so a cut never leaves a code fence or <details> open.
MAX_EVIDENCE_CHARS = 4000
MAX_TOTAL_BYTES = 512 * 1024
TRUNCATED = "\n… summary truncated; see verdict.json for everything.\n"
_ICON = {"rollback": "❌", "hold": "⏸️", "pass": "✅", "promote": "✅"}


def render_summary(facts: RunFacts, judgement: Judgement) -> str:
    decision = judgement.decision.value
    counts = Counter(r.outcome for r in judgement.results)
    tally = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "no checks"
    dry = " (dry run: exit 0)" if facts.dry_run else ""
    # Each entry is a whole markdown block: kept or dropped as one.
    blocks = [
        f"## {_ICON[decision]} releasegate: **{decision.upper()}**{dry}",
        "",
        f"{facts.stage} on `{facts.target}` · exit code {judgement.decision.exit_code} · {tally} · "
        f"{iso(facts.started_at)} → {iso(facts.finished_at)}",
        "",
        "### Reasons",
        *[f"- {_inline(reason)}" for reason in judgement.reasons],
    ]
    # The canary judge's deciding look, whatever its outcome: a promote needs its figures too.
    blocks += canary_blocks(judgement.results)
    not_passing = [r for r in judgement.results if r.outcome not in ("passed",)]
    if not_passing:
        blocks += [
            "",
            "### Checks that did not pass",
            "",
            "| check | outcome | severity | observed | expected | summary |\n|---|---|---|---|---|---|",
        ]
        blocks += [
            f"| `{r.id}` | {r.outcome} | {r.severity} | {_cell(r.observed)} | {_cell(r.expected)} | {_cell(r.summary)} |"
            for r in not_passing
        ]
        for result in not_passing:
            blocks.append("\n".join(_details(result)))
    if judgement.notes:
        blocks += ["", "### Notes", *[f"- {_inline(note)}" for note in judgement.notes]]
    return _fit(blocks, MAX_TOTAL_BYTES)


def _fit(blocks: list[str], limit: int) -> str:
    budget = limit - len(TRUNCATED.encode())
    size = 0
    for count, block in enumerate(blocks):
        size += len(block.encode()) + 1
        if size > budget:
            return "\n".join(blocks[:count]) + "\n" + TRUNCATED
    return "\n".join(blocks) + "\n"


def _details(result: CheckResult) -> list[str]:
    body = json.dumps(result.evidence, indent=2, default=str, ensure_ascii=False)
    if len(body) > MAX_EVIDENCE_CHARS:
        body = body[:MAX_EVIDENCE_CHARS] + "\n… (truncated; full evidence in verdict.json)"
    return [
        "",
        f"<details><summary><code>{result.id}</code> evidence</summary>",
        "",
        "```json",
        body.replace("```", "'''"),
        "```",
        "",
        "</details>",
    ]


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    text = _inline(text)
    return text if len(text) <= 160 else text[:157] + "…"


def _inline(text: str) -> str:
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")
