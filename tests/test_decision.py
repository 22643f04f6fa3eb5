"""Results + policy -> one decision. The truth table of design.md, "Decision model"."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from releasegate.config import Gates
from releasegate.decision import Judgement, decide
from releasegate.results import CheckResult, Decision, Outcome, Severity, Stage

TODAY = date(2026, 6, 1)
LIVE, READY, DEEP = "health.liveness", "health.readiness", "health.deep"


def result(check_id: str, outcome: Outcome, severity: Severity = "blocking", summary: str = "") -> CheckResult:
    return CheckResult(id=check_id, outcome=outcome, severity=severity, summary=summary or f"{check_id} said {outcome}")


def gates(**policy: Any) -> Gates:
    return Gates.model_validate(policy)


def waiver(check: str, expires: date) -> dict[str, Any]:
    return {"check": check, "justification": "known issue, ticket OPS-123", "expires": expires}


def judge(results: list[CheckResult], stage: Stage = "post-deploy", selected: list[str] | None = None, **policy: Any) -> Judgement:
    return decide(results, gates(**policy), stage, today=TODAY, selected=selected)


ALL_PASS = [result(LIVE, "passed"), result(READY, "passed")]


@pytest.mark.parametrize(
    ("results", "policy", "decision"),
    [
        pytest.param(ALL_PASS, {}, Decision.PROMOTE, id="all pass"),
        pytest.param([result(LIVE, "passed"), result(READY, "failed")], {}, Decision.ROLLBACK, id="blocking failure"),
        pytest.param([result(LIVE, "passed"), result(READY, "error")], {}, Decision.HOLD, id="blocking error"),
        pytest.param(
            [result(LIVE, "passed"), result(READY, "error")],
            {"on_error": "rollback"},
            Decision.ROLLBACK,
            id="blocking error, on_error rollback",
        ),
        pytest.param([result(LIVE, "passed"), result(READY, "failed", "warning")], {}, Decision.PROMOTE, id="warning failure"),
        pytest.param([result(LIVE, "passed"), result(READY, "error", "warning")], {}, Decision.PROMOTE, id="warning error"),
        pytest.param(
            [result(LIVE, "passed"), result(READY, "error", "warning")],
            {"on_warning": "hold"},
            Decision.HOLD,
            id="warning error, on_warning hold",
        ),
        pytest.param([result(LIVE, "passed"), result(READY, "warned")], {}, Decision.PROMOTE, id="warned outcome"),
        pytest.param(
            [result(LIVE, "passed"), result(READY, "warned")], {"on_warning": "hold"}, Decision.HOLD, id="warned outcome, on_warning hold"
        ),
        pytest.param(
            [result(LIVE, "passed"), result(READY, "failed", "info")], {"on_warning": "hold"}, Decision.PROMOTE, id="info failure"
        ),
        pytest.param([result(LIVE, "passed"), result(READY, "error", "info")], {"on_warning": "hold"}, Decision.PROMOTE, id="info error"),
        pytest.param([result(LIVE, "passed"), result(READY, "skipped")], {}, Decision.PROMOTE, id="one skipped"),
        pytest.param([], {}, Decision.HOLD, id="nothing ran"),
        pytest.param([result(LIVE, "skipped"), result(READY, "skipped")], {}, Decision.HOLD, id="everything skipped"),
        pytest.param([result(LIVE, "failed"), result(READY, "error")], {}, Decision.ROLLBACK, id="rollback beats hold"),
    ],
)
def test_truth_table(results: list[CheckResult], policy: dict[str, Any], decision: Decision) -> None:
    assert judge(results, **policy).decision is decision


@pytest.mark.parametrize(
    ("stage", "decision"), [("pre-deploy", Decision.PASS), ("post-deploy", Decision.PROMOTE), ("canary", Decision.PROMOTE)]
)
def test_success_is_called_pass_before_the_deploy_and_promote_after(stage: Stage, decision: Decision) -> None:
    judgement = judge(ALL_PASS, stage=stage)

    assert judgement.decision is decision
    assert judgement.reasons == ("2 of 2 checks passed; no blocking check failed or errored",)
    assert judgement.notes == ()


def test_a_hold_or_rollback_is_never_called_pass_in_any_stage() -> None:
    for stage in ("pre-deploy", "post-deploy", "canary"):
        assert judge([result(LIVE, "error")], stage=stage).decision is Decision.HOLD
        assert judge([result(LIVE, "failed")], stage=stage).decision is Decision.ROLLBACK


def test_rollback_reasons_name_the_check() -> None:
    judgement = judge([result(LIVE, "passed"), result(READY, "failed", summary="503 from /readyz")])

    assert judgement.reasons == ("health.readiness failed: 503 from /readyz",)


def test_blocking_error_holds_with_could_not_be_judged() -> None:
    judgement = judge([result(READY, "error", summary="timed out after 5 s")])

    assert judgement.reasons == ("health.readiness could not be judged (error): timed out after 5 s",)


def test_rollback_beats_hold_and_both_are_reasons_rollback_first() -> None:
    # Given one check that could not judge and, after it, one that failed
    judgement = judge([result(LIVE, "error", summary="refused"), result(READY, "failed", summary="503")])

    # Then the failure decides, but the hold reason is not lost
    assert judgement.decision is Decision.ROLLBACK
    assert judgement.reasons == ("health.readiness failed: 503", "health.liveness could not be judged (error): refused")


@pytest.mark.parametrize(
    ("outcome", "severity", "note"),
    [
        ("error", "warning", "warning: health.readiness error: said so"),
        ("failed", "warning", "warning: health.readiness failed: said so"),
        ("warned", "blocking", "warning: health.readiness warned: said so"),
        ("failed", "info", "info: health.readiness failed: said so"),
        ("error", "info", "info: health.readiness error: said so"),
    ],
)
def test_non_deciding_results_are_reported_in_notes(outcome: Outcome, severity: Severity, note: str) -> None:
    judgement = judge([result(LIVE, "passed"), result(READY, outcome, severity, summary="said so")])

    assert judgement.decision is Decision.PROMOTE
    assert judgement.notes == (note,)


def test_on_warning_hold_turns_the_note_into_a_reason() -> None:
    judgement = judge([result(LIVE, "passed"), result(READY, "warned", summary="slow")], on_warning="hold")

    assert judgement.reasons == ("warning: health.readiness warned: slow",)
    assert judgement.notes == ()


def test_no_evidence_holds_and_says_why() -> None:
    assert judge([]).reasons == ("no checks ran: there is no evidence to judge, so the gate cannot pass",)
    assert judge([result(LIVE, "skipped"), result(READY, "skipped")]).reasons == (
        "all 2 checks were skipped: nothing applied to this target, so the gate cannot pass",
    )


# --------------------------------------------------------------------------- waivers


def test_an_active_waiver_turns_a_failure_into_waived_and_promotes() -> None:
    judgement = judge([result(LIVE, "passed"), result(DEEP, "failed", summary="cache down")], waivers=[waiver(DEEP, TODAY)])

    assert judgement.decision is Decision.PROMOTE
    waived = judgement.results[1]
    assert waived.outcome == "waived"
    assert waived.summary == "cache down [waived until 2026-06-01: known issue, ticket OPS-123]"


def test_a_waiver_by_pattern_covers_every_check_it_selects() -> None:
    judgement = judge([result(LIVE, "failed"), result(READY, "warned")], waivers=[waiver("health", TODAY)])

    assert judgement.decision is Decision.PROMOTE
    assert [r.outcome for r in judgement.results] == ["waived", "waived"]


def test_a_waiver_never_covers_an_error_because_it_is_not_evidence() -> None:
    # Given a blocking check that could not judge, and an active waiver for it
    judgement = judge([result(LIVE, "passed"), result(READY, "error", summary="timed out")], waivers=[waiver(READY, TODAY)])
    # Then the gate still holds: a waiver accepts a known failure, it cannot replace a measurement
    assert judgement.decision is Decision.HOLD
    assert judgement.results[1].outcome == "error"
    assert judgement.notes == ("waiver for health.readiness does not cover an error: the check could not judge",)


def test_an_expired_waiver_is_not_applied_and_the_notes_say_so() -> None:
    # Given a waiver that ran out yesterday
    judgement = judge([result(LIVE, "passed"), result(DEEP, "failed")], waivers=[waiver(DEEP, TODAY - timedelta(days=1))])

    # Then the failure decides again, and the reader learns why the waiver did not help
    assert judgement.decision is Decision.ROLLBACK
    assert judgement.results[1].outcome == "failed"
    assert judgement.notes == ("waiver for health.deep expired on 2026-05-31: not applied",)


def test_a_waiver_on_a_passing_check_is_no_longer_needed() -> None:
    judgement = judge(ALL_PASS, waivers=[waiver(READY, TODAY)])

    assert judgement.decision is Decision.PROMOTE
    assert judgement.notes == ("waiver for health.readiness is no longer needed: health.readiness passed",)


def test_a_pattern_waiver_still_in_use_is_not_called_unneeded() -> None:
    # Regression: a waiver for 'health' that waives one failure was reported as no longer
    # needed because another check it covers passed.
    judgement = judge([result(LIVE, "passed"), result(READY, "failed")], waivers=[waiver("health", TODAY)])

    assert judgement.decision is Decision.PROMOTE
    assert judgement.notes == ()


def test_a_check_run_per_subject_gets_one_note_per_waiver() -> None:
    rows = [result(READY, "failed", summary="replica a"), result(READY, "failed", summary="replica b")]

    judgement = judge(rows, waivers=[waiver(READY, TODAY - timedelta(days=1))])

    assert judgement.notes == ("waiver for health.readiness expired on 2026-05-31: not applied",)


# --------------------------------------------------------------------------- required checks


def test_a_required_check_that_was_skipped_holds() -> None:
    judgement = judge([result(LIVE, "passed"), result(READY, "skipped")], required=[READY])

    assert judgement.decision is Decision.HOLD
    assert judgement.reasons == ("required check health.readiness produced no evidence (not run or skipped)",)


def test_a_required_check_that_did_not_run_at_all_holds() -> None:
    assert judge([result(LIVE, "passed")], required=[READY]).decision is Decision.HOLD


def test_a_required_check_outside_the_only_selection_does_not_hold() -> None:
    # `--only health.liveness` asked for one check; requiring readiness must not block that run.
    judgement = judge([result(LIVE, "passed")], selected=[LIVE], required=[READY])

    assert judgement.decision is Decision.PROMOTE


def test_a_required_check_of_another_stage_does_not_hold() -> None:
    judgement = judge([result(LIVE, "passed")], stage="pre-deploy", required=[READY])

    assert judgement.decision is Decision.PASS


def test_overlapping_required_patterns_name_a_missing_check_once() -> None:
    judgement = judge([result(LIVE, "passed")], required=[READY, "health.rea*", "health.readiness."])

    assert judgement.reasons == ("required check health.readiness produced no evidence (not run or skipped)",)


def test_decide_is_pure() -> None:
    results = [result(LIVE, "failed")]
    policy = gates(waivers=[waiver(LIVE, TODAY)])

    first = decide(results, policy, "post-deploy", today=TODAY)

    assert decide(results, policy, "post-deploy", today=TODAY) == first
    assert results == [result(LIVE, "failed")]  # the input is not modified


# --------------------------------------------------------------------------- evidence


def test_a_policy_that_downgrades_every_check_cannot_promote() -> None:
    # Given gates.yaml turning every check into a warning, and a failing readiness
    judgement = judge([result(LIVE, "passed", "warning"), result(READY, "failed", "warning")])
    # Then nothing could have rolled back, so nothing may promote either
    assert judgement.decision is Decision.HOLD
    assert judgement.reasons[0].startswith("no blocking check produced evidence")


def test_one_blocking_check_with_evidence_is_enough_to_promote() -> None:
    judgement = judge([result(LIVE, "passed"), result(READY, "failed", "warning")])
    assert judgement.decision is Decision.PROMOTE


def sampled(outcome: Outcome, samples: int | None) -> CheckResult:
    evidence = {} if samples is None else {"samples": samples}
    return CheckResult(id=LIVE, outcome=outcome, severity="blocking", summary="p95 120 ms", evidence=evidence)


@pytest.mark.parametrize("outcome", ["passed", "failed"])
def test_too_few_samples_make_a_result_inconclusive_whatever_it_concluded(outcome: Outcome) -> None:
    judgement = judge([sampled(outcome, 12)], min_samples={LIVE: 50})
    # Neither a pass nor a fail on 12 samples: could not judge -> hold
    assert judgement.decision is Decision.HOLD
    assert judgement.results[0].outcome == "error"
    assert judgement.results[0].summary == "inconclusive: 12 samples, policy needs at least 50 (p95 120 ms)"


def test_a_result_with_no_sample_count_is_inconclusive_under_a_minimum() -> None:
    judgement = judge([sampled("passed", None)], min_samples={"health": 5})
    assert judgement.results[0].outcome == "error" and "no sample count" in judgement.results[0].summary


def test_enough_samples_keep_the_result() -> None:
    assert judge([sampled("passed", 50)], min_samples={LIVE: 50}).decision is Decision.PROMOTE
    assert judge([sampled("failed", 500)], min_samples={LIVE: 50}).decision is Decision.ROLLBACK
