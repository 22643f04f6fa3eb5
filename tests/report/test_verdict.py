"""verdict.json: the machine-readable contract (design.md) plus the documented additions."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from releasegate.config import Gates
from releasegate.decision import Judgement, decide
from releasegate.report.verdict import SCHEMA, RunFacts, iso, verdict_document
from releasegate.results import OUTCOMES, SEVERITIES, CheckResult, Decision

STARTED = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
FACTS = RunFacts(stage="post-deploy", target="staging", started_at=STARTED, finished_at=STARTED + timedelta(seconds=42))

CONTRACT_KEYS = {"schema", "stage", "target", "decision", "exit_code", "reasons", "checks", "started_at", "finished_at"}
ADDED_KEYS = {"dry_run", "notes", "counts"}  # docs/contract.md
CHECK_KEYS = {"id", "outcome", "severity", "summary", "observed", "expected", "evidence", "duration_s"}


def judged() -> Judgement:
    results = [
        CheckResult("health.liveness", "passed", "blocking", "200 in 12 ms", observed=200, expected="2xx", duration_s=0.0123456),
        CheckResult(
            "health.readiness",
            "failed",
            "blocking",
            "503 from /readyz",
            observed=503,
            expected="2xx",
            evidence={"status": 503, "body": "db down", "attempts": [1.0, 2.0]},
            duration_s=30.5,
        ),
        CheckResult("health.deep", "warned", "warning", "cache degraded", observed={"cache": "warn"}, expected={"cache": "pass"}),
        CheckResult("health.release_id", "skipped", "blocking", "no expected release"),
    ]
    return decide(results, Gates(), "post-deploy", today=date(2026, 6, 1))


def test_document_has_exactly_the_contract_keys_and_the_documented_additions() -> None:
    document = verdict_document(FACTS, judged())

    assert set(document) == CONTRACT_KEYS | ADDED_KEYS
    assert document["schema"] == SCHEMA == "releasegate.verdict/v1"
    assert (document["stage"], document["target"]) == ("post-deploy", "staging")
    assert (document["started_at"], document["finished_at"]) == ("2026-06-01T12:00:00Z", "2026-06-01T12:00:42Z")


def test_decision_exit_code_and_reasons() -> None:
    document = verdict_document(FACTS, judged())

    assert (document["decision"], document["exit_code"]) == ("rollback", 1)
    assert document["reasons"] == ["health.readiness failed: 503 from /readyz"]
    assert document["notes"] == ["warning: health.deep warned: cache degraded"]
    assert document["dry_run"] is False


def test_every_check_row_has_the_contract_keys() -> None:
    checks = verdict_document(FACTS, judged())["checks"]

    assert [c["id"] for c in checks] == ["health.liveness", "health.readiness", "health.deep", "health.release_id"]
    for row in checks:
        assert set(row) == CHECK_KEYS
        assert row["outcome"] in OUTCOMES
        assert row["severity"] in SEVERITIES
    assert checks[0]["duration_s"] == 0.0123
    assert checks[1] == {
        "id": "health.readiness",
        "outcome": "failed",
        "severity": "blocking",
        "summary": "503 from /readyz",
        "observed": 503,
        "expected": "2xx",
        "evidence": {"status": 503, "body": "db down", "attempts": [1.0, 2.0]},
        "duration_s": 30.5,
    }


def test_counts_per_outcome() -> None:
    assert verdict_document(FACTS, judged())["counts"] == {"passed": 1, "failed": 1, "warned": 1, "skipped": 1}


@pytest.mark.parametrize(("decision", "exit_code"), [(Decision.PASS, 0), (Decision.PROMOTE, 0), (Decision.ROLLBACK, 1), (Decision.HOLD, 2)])
def test_exit_code_follows_the_decision(decision: Decision, exit_code: int) -> None:
    document = verdict_document(FACTS, Judgement(decision=decision, reasons=("r",), results=(), notes=()))

    assert (document["decision"], document["exit_code"]) == (decision.value, exit_code)


def test_dry_run_is_recorded() -> None:
    facts = RunFacts(stage="pre-deploy", target="staging", started_at=STARTED, finished_at=STARTED, dry_run=True)

    assert verdict_document(facts, judged())["dry_run"] is True


def test_document_round_trips_through_json() -> None:
    document = verdict_document(FACTS, judged())

    assert json.loads(json.dumps(document)) == document


def test_times_are_utc_whatever_zone_they_were_taken_in() -> None:
    # Regression: an aware time in another zone was printed as local time with a Z.
    in_paris = datetime(2026, 6, 1, 14, 0, 0, tzinfo=timezone(timedelta(hours=2)))

    assert iso(in_paris) == "2026-06-01T12:00:00Z"
    assert iso(datetime(2026, 6, 1, 12, 0, 0)) == "2026-06-01T12:00:00Z"
