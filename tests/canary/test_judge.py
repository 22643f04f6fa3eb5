"""The canary judge's decisions, told as stories: what a healthy, a slow, an erroring and a silent canary get.

Samples are built by hand or drawn from seeded generators (lognormal latency, sigma 0.5; Bernoulli
errors), so every figure is the same on every run. The statistics themselves are checked in
test_statistics.py; here it is the decision model: nodata, the one-sided tests with an allowed
effect, the pass bound, the alpha of each look, the score, and the reason and flip lines.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence

import numpy as np
import pytest

from releasegate.canary import statistics as st
from releasegate.canary.judge import explain, judge_look, judge_metric, judge_run, look_alphas
from releasegate.canary.model import IntervalSamples, LatencySamples, MetricSamples, RateSamples
from releasegate.config import CanaryMetric, CanaryPolicy

NUMBER = re.compile(r"\d")


def latency_metric(name: str = "latency", **settings: object) -> CanaryMetric:
    return CanaryMetric(name=name, kind="latency", probe="http_latency", **settings)  # type: ignore[arg-type]


def errors_metric(name: str = "errors", **settings: object) -> CanaryMetric:
    return CanaryMetric(name=name, kind="rate", probe="http_errors", **settings)  # type: ignore[arg-type]


def policy(*metrics: CanaryMetric, **settings: object) -> CanaryPolicy:
    return CanaryPolicy(metrics=list(metrics), **settings)  # type: ignore[arg-type]


def latency(base: Sequence[float], canary: Sequence[float], name: str = "latency", dropped: tuple[int, int] = (0, 0)) -> MetricSamples:
    return MetricSamples(name, "latency", LatencySamples(tuple(base), dropped[0]), LatencySamples(tuple(canary), dropped[1]))


def errors(events_b: int, trials_b: int, events_c: int, trials_c: int, name: str = "errors") -> MetricSamples:
    return MetricSamples(name, "rate", RateSamples(events_b, trials_b), RateSamples(events_c, trials_c))


def interval(index: int, *samples: MetricSamples) -> IntervalSamples:
    return IntervalSamples(index, f"2026-01-01T00:0{index}:00Z", 60.0, {s.name: s for s in samples})


def lognormal(rng: np.random.Generator, size: int, factor: float = 1.0) -> list[float]:
    return (rng.lognormal(math.log(20.0), 0.5, size) * factor).tolist()


# --------------------------------------------------------------------------- alpha per look


def test_haybittle_peto_keeps_nearly_all_of_alpha_for_the_last_look() -> None:
    alphas = look_alphas(policy(latency_metric(), max_intervals=5, alpha=0.01, interim_alpha=0.001))

    assert alphas == pytest.approx((0.00025, 0.00025, 0.00025, 0.00025, 0.009))
    assert sum(alphas) == pytest.approx(0.01)


def test_obrien_fleming_spends_little_early_and_sums_to_alpha() -> None:
    alphas = look_alphas(policy(latency_metric(), max_intervals=5, alpha=0.01, looks="obrien-fleming"))

    assert list(alphas) == sorted(alphas) and alphas[0] < 1e-7
    assert sum(alphas) == pytest.approx(0.01, rel=1e-9)


@pytest.mark.parametrize(
    ("looks", "expected"),
    [("bonferroni", (0.002,) * 5), ("none", (0.01,) * 5)],
)
def test_bonferroni_splits_alpha_evenly_and_none_does_not_correct(looks: str, expected: tuple[float, ...]) -> None:
    assert look_alphas(policy(latency_metric(), max_intervals=5, alpha=0.01, looks=looks)) == pytest.approx(expected)


@pytest.mark.parametrize("looks", ["haybittle-peto", "obrien-fleming", "bonferroni", "none"])
def test_a_single_look_gets_all_of_alpha(looks: str) -> None:
    assert look_alphas(policy(latency_metric(), max_intervals=1, alpha=0.02, looks=looks)) == pytest.approx((0.02,))


# --------------------------------------------------------------------------- the stories


def test_critical_failure_rolls_back_at_the_first_look_with_data() -> None:
    # Given a canary 50 % slower, and a first interval too short to judge (30 < min_samples 50).
    rng = np.random.default_rng(1)
    gates = policy(latency_metric(critical=True, allowed_increase=1.1), max_intervals=5)
    intervals = [interval(1, latency(lognormal(rng, 30), lognormal(rng, 30, 1.5)))]
    intervals += [interval(k, latency(lognormal(rng, 60), lognormal(rng, 60, 1.5))) for k in range(2, 6)]

    run = judge_run(gates, intervals)

    # Then look 1 has no data and goes on, look 2 (90 a side) rolls back at once, on interim alpha.
    assert [look.decision for look in run.looks] == ["continue", "rollback"]
    assert run.looks[0].metrics[0].state == "nodata"
    failed = run.looks[1].metrics[0]
    assert run.decision == "rollback" and failed.state == "failed"
    assert failed.alpha == pytest.approx(0.00025) and failed.p_value is not None and failed.p_value < failed.alpha
    assert failed.ratio is not None and failed.ratio > 1.3
    assert run.reasons[0].startswith("latency (critical) failed: canary higher: ratio")


def test_a_canary_that_gets_no_traffic_holds_at_the_end_and_never_promotes() -> None:
    # Given a baseline that serves and a canary that receives nothing, interval after interval.
    rng = np.random.default_rng(2)
    gates = policy(latency_metric(critical=True), errors_metric(critical=True), max_intervals=4)
    intervals = [interval(k, latency(lognormal(rng, 80), []), errors(0, 80, 0, 0)) for k in range(1, 5)]

    run = judge_run(gates, intervals)

    # Then every look continues for want of data, and the last one holds: not a rollback, not a promote.
    assert [look.decision for look in run.looks] == ["continue", "continue", "continue", "hold"]
    assert run.decision == "hold"
    assert all(m.state == "nodata" for look in run.looks for m in look.metrics)
    assert any("latency (critical) at the last look: no data: baseline 320, canary 0 values" in r for r in run.reasons)
    assert run.looks[-1].metrics[0].flip == "judged once both sides have 50 values (canary needs 50 more)"


def test_aa_promotes_early_when_the_allowed_increase_leaves_room() -> None:
    # Given identical distributions and a 50 % allowance: the upper 99 % bound falls below 1.5 early.
    rng = np.random.default_rng(3)
    gates = policy(latency_metric(critical=True, allowed_increase=1.5), max_intervals=5)
    intervals = [interval(k, latency(lognormal(rng, 100), lognormal(rng, 100))) for k in range(1, 6)]

    run = judge_run(gates, intervals)

    assert run.decision == "promote" and run.looks[-1].look < 5
    judged = run.looks[-1].metrics[0]
    assert judged.state == "passed" and judged.reason.startswith("within tolerance: the upper 99% bound <= 1.50")


def test_aa_promotes_only_at_the_last_look_when_no_increase_is_allowed() -> None:
    # Given allowed_increase 1.0: no bound can show "within tolerance" for an equal canary, so
    # the judge waits for the last look and passes what did not fail.
    rng = np.random.default_rng(3)
    gates = policy(latency_metric(critical=True, allowed_increase=1.0), max_intervals=5)
    intervals = [interval(k, latency(lognormal(rng, 100), lognormal(rng, 100))) for k in range(1, 6)]

    run = judge_run(gates, intervals)

    assert [look.decision for look in run.looks] == ["continue"] * 4 + ["promote"]
    assert run.looks[-1].metrics[0].reason.startswith("last look, not significantly worse")


def test_a_sparse_error_regression_fails_by_fisher_where_mann_whitney_on_zero_one_sees_no_shift() -> None:
    # Given 0.5 % -> 2 % errors at n = 2,000 per side: 10 vs 40 errors.
    gates = policy(errors_metric(critical=True, allowed_increase=1.5), max_intervals=1)

    run = judge_run(gates, [interval(1, errors(10, 2000, 40, 2000))])

    # Then Fisher's exact test finds it (p ~ 1e-5) with a ratio near 4: rollback.
    judged = run.looks[0].metrics[0]
    assert run.decision == "rollback" and judged.test == "fisher"
    assert judged.p_value is not None and judged.p_value < 1e-4
    assert judged.ratio == pytest.approx(40.5 / 10.5)
    assert judged.effect_size == pytest.approx(0.015)
    # While Mann-Whitney on the same requests as 0/1 values (Kayenta's way) estimates a shift of
    # exactly 0 with a 98 % interval of [0, 0]: its rule "lower bound above 0.25 x |shift|" can
    # never fire, however many errors the canary adds, as long as fewer than half its requests fail.
    base, canary = np.r_[np.ones(10), np.zeros(1990)], np.r_[np.ones(40), np.zeros(1960)]
    hl = st.hodges_lehmann(base, canary, [0.01])
    assert hl.shift == 0.0 and hl.bounds(0.01) == (0.0, 0.0)


def test_the_correction_for_repeated_looks_keeps_aa_false_rollbacks_within_alpha() -> None:
    # Given 400 seeded A/A runs of 5 looks (20 lognormal samples a side per interval) judged at
    # alpha 0.05 with allowed_increase 1.0: a judge that tests every look at alpha (none) rolls
    # back far more than 5 % of healthy canaries; the union-bound corrections stay within it.
    rng = np.random.default_rng(20_260_701)
    runs = [[interval(k, latency(lognormal(rng, 20), lognormal(rng, 20))) for k in range(1, 6)] for _ in range(400)]

    def rolled_back(looks: str) -> set[int]:
        gates = policy(latency_metric(critical=True, min_samples=20), max_intervals=5, alpha=0.05, interim_alpha=0.005, looks=looks)
        return {index for index, intervals in enumerate(runs) if judge_run(gates, intervals).decision == "rollback"}

    rolled = {looks: rolled_back(looks) for looks in ("haybittle-peto", "obrien-fleming", "bonferroni", "none")}
    rates = {looks: len(indexes) / len(runs) for looks, indexes in rolled.items()}

    # Under this seed (the bound is exact, not statistical: the draws never change), haybittle-
    # peto's expected rate is ~0.047 (most of alpha at the last look); the others spend less.
    assert rates["haybittle-peto"] <= 0.05
    assert rates["obrien-fleming"] <= 0.05 and rates["bonferroni"] <= 0.05
    assert rates["none"] > 0.08  # ~0.11-0.14: five correlated looks at 5 % each
    # Every look of a corrected judge tests at a level below none's, so none rolls back every
    # canary they roll back, and more.
    assert rolled["haybittle-peto"] | rolled["obrien-fleming"] | rolled["bonferroni"] <= rolled["none"]


# --------------------------------------------------------------------------- direction, weights, band


def test_direction_decides_which_way_is_worse() -> None:
    # Given a canary twice as fast as the baseline (200 a side).
    rng = np.random.default_rng(4)
    samples = latency(lognormal(rng, 200), lognormal(rng, 200, 0.5))

    def state(direction: str) -> str:
        metric = latency_metric(direction=direction, allowed_increase=1.1, allowed_decrease=0.9)
        return judge_metric(metric, samples, look=1, policy=policy(metric, max_intervals=3)).state

    assert state("increase") == "passed"  # faster is not worse: shown within the allowed increase
    assert state("decrease") == "failed"  # e.g. throughput: lower is worse
    assert state("either") == "failed"


def test_either_direction_splits_the_look_alpha_between_the_two_tests() -> None:
    rng = np.random.default_rng(5)
    metric = latency_metric(direction="either")
    judged = judge_metric(metric, latency(lognormal(rng, 100), lognormal(rng, 100)), look=5, policy=policy(metric, max_intervals=5))

    assert judged.alpha == pytest.approx(0.0045)
    assert judged.confidence == pytest.approx(0.991)
    assert "p(higher)=" in judged.reason and "p(lower)=" in judged.reason


def test_weights_and_the_marginal_band() -> None:
    # Given three non-critical metrics weighing 60/30/10 and score thresholds pass 95, marginal 75.
    rng = np.random.default_rng(6)
    gates = policy(
        latency_metric("heavy", weight=60, allowed_increase=1.5),
        latency_metric("middle", weight=30, allowed_increase=1.1),
        latency_metric("light", weight=10, allowed_increase=1.1),
        max_intervals=3,
    )

    def look(slow: str, k: int) -> tuple[str, float, float]:
        samples = {
            name: latency(lognormal(rng, 300), lognormal(rng, 300, 1.6 if name == slow else 1.0), name)
            for name in ("heavy", "middle", "light")
        }
        judged = judge_look(gates, samples, k)
        return judged.decision, judged.score, judged.max_score

    # When the light one fails at the last look: max score 90 >= marginal, score < pass: hold.
    decision, score, max_score = look("light", 3)
    assert (decision, score, max_score) == ("hold", 90.0, 90.0)
    # When the middle one fails, even at an interim look: max score 70 < marginal 75: rollback.
    decision, _, max_score = look("middle", 1)
    assert (decision, max_score) == ("rollback", 70.0)


def test_a_hold_in_the_band_says_why() -> None:
    rng = np.random.default_rng(7)
    gates = policy(latency_metric("main", weight=90, allowed_increase=1.5), latency_metric("side", weight=10), max_intervals=1)
    samples = {
        "main": latency(lognormal(rng, 200), lognormal(rng, 200), "main"),
        "side": latency(lognormal(rng, 200), lognormal(rng, 200, 2.0), "side"),
    }

    judged = judge_look(gates, samples, 1)

    assert judged.decision == "hold"
    assert judged.reasons[0] == "score 90.0 below pass 95 (marginal 75, max score 90.0) at the last look"
    assert judged.reasons[1].startswith("side failed: canary higher")


def test_single_look_policy_decides_at_once() -> None:
    rng = np.random.default_rng(8)
    gates = policy(latency_metric(critical=True), max_intervals=1)

    healthy = judge_run(gates, [interval(1, latency(lognormal(rng, 200), lognormal(rng, 200)))])
    slow = judge_run(gates, [interval(1, latency(lognormal(rng, 200), lognormal(rng, 200, 1.3)))])

    assert healthy.decision == "promote" and healthy.looks[0].metrics[0].alpha == pytest.approx(0.01)
    assert slow.decision == "rollback"


# --------------------------------------------------------------------------- awkward samples


def test_values_that_are_not_latencies_are_excluded_and_counted() -> None:
    rng = np.random.default_rng(9)
    base = lognormal(rng, 60) + [math.nan, math.inf, 0.0, -3.0]
    metric = latency_metric(min_samples=50)

    judged = judge_metric(metric, latency(base, lognormal(rng, 60), dropped=(0, 2)), look=1, policy=policy(metric, max_intervals=2))

    assert judged.n_baseline == 60 and judged.n_canary == 60
    assert "6 values excluded (non-finite or <= 0: baseline 4, canary 2)" in judged.reason


def test_exclusions_can_leave_too_few_samples_to_judge() -> None:
    metric = latency_metric(min_samples=50)
    base = [10.0] * 45 + [math.nan] * 10

    judged = judge_metric(metric, latency(base, [10.0] * 60), look=2, policy=policy(metric, max_intervals=2))

    assert judged.state == "nodata" and judged.test == "none"
    assert judged.reason.startswith("no data: baseline 45, canary 60 values, min_samples 50 per side (look 2/2)")
    assert "10 values excluded" in judged.reason


def test_constant_samples() -> None:
    metric = latency_metric(allowed_increase=1.1, min_samples=30)
    gates = policy(metric, max_intervals=3)

    same = judge_metric(metric, latency([10.0] * 40, [10.0] * 40), look=1, policy=gates)
    slower = judge_metric(metric, latency([10.0] * 40, [12.0] * 40), look=1, policy=gates)

    # Equal constants: every difference is 0, the ratio's interval is [1, 1]: within tolerance.
    assert same.state == "passed" and same.ratio == 1.0 and same.ci == (1.0, 1.0) and same.p_value == 1.0
    # Different constants: every canary value is above every baseline one, by 20 %.
    assert slower.state == "failed" and slower.ratio == pytest.approx(1.2) and slower.effect_size == 1.0


def test_one_side_empty_is_no_data_whichever_side() -> None:
    metric = latency_metric(min_samples=5)
    gates = policy(metric, max_intervals=1)

    assert judge_metric(metric, latency([], [3.0] * 10), look=1, policy=gates).state == "nodata"
    assert judge_metric(metric, latency([3.0] * 10, []), look=1, policy=gates).state == "nodata"
    assert judge_metric(metric, None, look=1, policy=gates).reason == "no data: nothing was collected for this metric (look 1/1)"


def test_no_errors_on_either_side_passes_only_at_the_last_look() -> None:
    metric = errors_metric(allowed_increase=1.5, min_samples=100)
    gates = policy(metric, max_intervals=3)

    early = judge_metric(metric, errors(0, 500, 0, 500), look=1, policy=gates)
    last = judge_metric(metric, errors(0, 1500, 0, 1500), look=3, policy=gates)

    # 0 vs 0 cannot show a ratio below 1.5 (the +0.5 ratio's interval is wide): undecided, then passed.
    assert early.state == "undecided" and early.ratio == pytest.approx(1.0)
    assert last.state == "passed" and last.p_value == 1.0
    assert "no events on either side" in last.reason
    assert last.baseline == {"rate": 0.0, "events": 0, "trials": 1500}


def test_impossible_counts_and_wrong_kinds_are_no_data_not_a_crash() -> None:
    gates = policy(errors_metric(), latency_metric(), max_intervals=1)

    impossible = judge_metric(gates.metrics[0], errors(5, 4, 0, 100), look=1, policy=gates)
    wrong_kind = judge_metric(gates.metrics[1], errors(0, 100, 0, 100, name="latency"), look=1, policy=gates)

    assert impossible.state == "nodata" and "impossible counts (baseline 5 events out of 4 trials)" in impossible.reason
    assert wrong_kind.state == "nodata" and "the samples are rate but the policy judges a latency metric" in wrong_kind.reason


def test_collection_problems_are_carried_into_the_reason() -> None:
    metric = latency_metric(min_samples=5)
    samples = MetricSamples("latency", "latency", LatencySamples(()), LatencySamples(()), ("canary: connection refused",))

    judged = judge_metric(metric, samples, look=1, policy=policy(metric, max_intervals=1))

    assert judged.reason.endswith("; collection: canary: connection refused")


# --------------------------------------------------------------------------- explanations and runs


@pytest.mark.parametrize(
    ("factor", "allowed", "look", "state"),
    [(1.6, 1.1, 1, "failed"), (1.0, 1.5, 1, "passed"), (1.05, 1.1, 1, "undecided"), (1.0, 1.0, 3, "passed")],
)
def test_every_judged_state_has_a_reason_and_a_flip_with_figures(factor: float, allowed: float, look: int, state: str) -> None:
    rng = np.random.default_rng(10)
    metric = latency_metric(allowed_increase=allowed)

    judged = judge_metric(
        metric, latency(lognormal(rng, 150), lognormal(rng, 150, factor)), look=look, policy=policy(metric, max_intervals=3)
    )

    assert judged.state == state
    assert NUMBER.search(judged.reason) and NUMBER.search(judged.flip)
    assert f"(look {look}/3)" in judged.reason and "median " in judged.reason


def test_undecided_flip_says_what_fails_it_and_what_passes_it() -> None:
    rng = np.random.default_rng(11)
    metric = latency_metric(allowed_increase=1.1)
    judged = judge_metric(metric, latency(lognormal(rng, 150), lognormal(rng, 150, 1.05)), look=1, policy=policy(metric, max_intervals=3))

    assert judged.state == "undecided"
    assert judged.flip.startswith("fails if Mann-Whitney p(higher) < 0.0005 (now ")
    assert "the lower 99.9% bound above 1, now " in judged.flip
    assert "and ratio > 1.10 (now " in judged.flip
    assert "passes early once the upper 99% bound <= 1.10 (now " in judged.flip
    assert judged.flip.endswith("otherwise passes at the last look (3) unless it fails")


def test_a_failed_flip_says_what_would_clear_it() -> None:
    metric = errors_metric(allowed_increase=1.5)
    judged = judge_metric(metric, errors(10, 2000, 40, 2000), look=1, policy=policy(metric, max_intervals=1))

    assert judged.flip.startswith("stops failing if Fisher p(higher) rises to 0.01 or above (now ")
    assert judged.flip.endswith("or the ratio falls to 1.50 or below (now 3.857)")


def test_a_run_that_stops_early_holds_and_says_so() -> None:
    rng = np.random.default_rng(12)
    gates = policy(latency_metric(critical=True), max_intervals=5)
    intervals = [interval(k, latency(lognormal(rng, 60), lognormal(rng, 60))) for k in (1, 2)]

    stopped = judge_run(gates, intervals, complete=False)
    recorded = judge_run(gates, intervals)

    assert stopped.decision == recorded.decision == "hold"
    assert stopped.reasons[0] == "the run stopped after look 2 of 5 (deadline or collection failure) before a decision"
    assert recorded.reasons[0] == "only 2 of 5 intervals were recorded, none decided"
    assert judge_run(gates, []).decision == "hold"


def test_only_max_intervals_are_judged() -> None:
    rng = np.random.default_rng(13)
    gates = policy(latency_metric(critical=True), max_intervals=2)
    intervals = [interval(k, latency(lognormal(rng, 60), lognormal(rng, 60))) for k in (1, 2, 3)]

    run = judge_run(gates, intervals)

    assert len(run.looks) == 2 and run.looks[-1].look == 2
    assert run.reasons[-1] == "only the first 2 of 3 intervals were judged (max_intervals 2)"


def test_the_run_serialises_to_strict_json_and_explains_itself() -> None:
    rng = np.random.default_rng(14)
    gates = policy(latency_metric(critical=True, min_samples=3), errors_metric(min_samples=3), max_intervals=2)
    # Three values a side: too few for any 99 % bound, which is infinite (written "inf").
    intervals = [interval(1, latency(lognormal(rng, 3), lognormal(rng, 3)), errors(0, 3, 1, 3))]
    intervals.append(interval(2, latency(lognormal(rng, 200), lognormal(rng, 200)), errors(1, 200, 1, 200)))

    run = judge_run(gates, intervals)
    text = json.dumps(run.as_dict(), allow_nan=False)
    table = explain(run)

    assert '"inf"' in text
    assert run.decision == "promote"
    assert "looks (decision, score/max score): 1: continue (0/100), 2: promote (100/100)" in table
    assert re.search(r"^latency \*\s+passed\s+203/203\s+", table, re.M)
    assert re.search(r"^errors\s+passed\s+203/203\s+0\.493% \(1/203\)\s+0\.985% \(2/203\)", table, re.M)
    assert "  flips: " in table
    assert "\ndecision: PROMOTE\n  - score 100.0 >= pass 95; every critical metric passed (latency)\n" in table


# --------------------------------------------------------------------------- absolute tolerance


def test_a_few_milliseconds_on_a_fast_path_fail_by_ratio_but_pass_within_allowed_increase_ms() -> None:
    # Two healthy processes on one busy host: sync round trips of ~2 ms on one, ~3 ms on the other.
    rng = np.random.default_rng(7)
    base = (rng.lognormal(math.log(2.0), 0.3, 60)).tolist()
    slower = (rng.lognormal(math.log(3.0), 0.3, 60)).tolist()
    samples = latency(base, slower)
    ratio_only = judge_metric(latency_metric(allowed_increase=1.2), samples, look=1, policy=policy(latency_metric()))
    with_floor = judge_metric(
        latency_metric(allowed_increase=1.2, allowed_increase_ms=25), samples, look=1, policy=policy(latency_metric())
    )

    # By ratio alone, half again as slow is a significant regression
    assert ratio_only.state == "failed"
    # With 25 ms allowed at the ~2 ms median, the ratio may reach ~13: shown within it at once
    assert with_floor.state == "passed"
    assert with_floor.allowed == pytest.approx(1 + 25 / with_floor.baseline["median"])  # type: ignore[operator]
    assert "+25 ms at the baseline median" in with_floor.reason


def test_allowed_increase_ms_does_not_hide_a_slowdown_beyond_it() -> None:
    rng = np.random.default_rng(8)
    base = (rng.lognormal(math.log(2.0), 0.3, 60)).tolist()
    slow = (rng.lognormal(math.log(402.0), 0.3, 60)).tolist()  # slow-sync: +400 ms
    judged = judge_metric(
        latency_metric(allowed_increase=1.2, allowed_increase_ms=25), latency(base, slow), look=1, policy=policy(latency_metric())
    )

    assert judged.state == "failed"
    assert "above allowed" in judged.reason and "+25 ms" in judged.reason
    assert "+25 ms" in judged.flip


def test_allowed_increase_ms_is_refused_on_a_rate_metric() -> None:
    with pytest.raises(ValueError, match="allowed_increase_ms must be 0 for a rate metric"):
        errors_metric(allowed_increase_ms=5)
