"""The SLO judges and the Prometheus answer parser: plain data in, one finding out, no network.

Observations are built by hand, sample by sample, so each test states exactly what the service
answered and what the gate must conclude: errors counted (and 429s not), unanswered requests
counted as errors and as infinitely slow, baselines applied, and every "could not measure"
kept apart from a pass.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from releasegate._exceptions import ProbeError
from releasegate.baseline import SavedVerdict
from releasegate.config import PrometheusQueries, SloThresholds
from releasegate.probes.prometheus import PromReading, parse_instant, render
from releasegate.probes.slo import BaselineFigures, Sample, SloObservation, figures_of_saved, judge_error_rate, judge_latency

POLICY = SloThresholds(max_error_rate=0.01, p95_ms=200.0)
PROMETHEUS = "http://127.0.0.1:9090"


def window(*samples: Sample) -> SloObservation:
    return SloObservation("target test (https://localhost:1)", samples, window_s=2.0, elapsed_s=2.01)


def answered(count: int, *, status: int = 200, latency_ms: float = 5.0, path: str = "/api/v1/me") -> list[Sample]:
    return [Sample(path, at_ms=i * 10.0, status=status, latency_ms=latency_ms) for i in range(count)]


def refused(count: int) -> list[Sample]:
    return [Sample("/api/v1/me", at_ms=0.0, status=None, latency_ms=None, failure="cannot connect: refused") for _ in range(count)]


def timed_out(count: int) -> list[Sample]:
    return [Sample("/api/v1/me", at_ms=0.0, status=None, latency_ms=math.inf, failure="GET answered not within 5 s") for _ in range(count)]


def reading(value: float | None, problem: str | None = None) -> PromReading:
    return PromReading(PROMETHEUS, "some promql", value, problem)


def assert_json_safe(evidence: dict[str, Any]) -> None:
    json.dumps(evidence, allow_nan=False)


# --------------------------------------------------------------------------- error rate


def test_a_clean_window_passes_and_reports_the_numbers_a_later_baseline_reads() -> None:
    finding = judge_error_rate(window(*answered(40)), POLICY)
    assert finding.outcome == "passed", finding.summary
    assert finding.evidence["samples"] == 40
    assert finding.evidence["error_rate"] == 0.0  # the key SavedVerdict.number("slo.error_rate", "error_rate") reads
    assert finding.evidence["by_path"]["/api/v1/me"]["requests"] == 40
    assert_json_safe(finding.evidence)


def test_5xx_answers_over_the_limit_fail_and_the_worst_are_shown() -> None:
    # Given 3 of 40 requests answered 500
    finding = judge_error_rate(window(*answered(37), *answered(3, status=500)), POLICY)
    assert finding.outcome == "failed"
    assert finding.evidence["error_rate"] == pytest.approx(3 / 40)
    assert finding.evidence["errors_5xx"] == 3
    assert [w["status"] for w in finding.evidence["worst"]] == [500, 500, 500]
    assert "7.50 %" in finding.summary


def test_throttling_is_reported_but_is_neither_an_error_nor_in_the_denominator() -> None:
    # Given 30 answers, 10 of them 429 (the service protecting itself from the gate's own traffic)
    observation = window(*answered(19), *answered(1, status=503), *answered(10, status=429))
    finding = judge_error_rate(observation, SloThresholds(max_error_rate=0.06))
    # Then the rate is 1 of 20 judged requests (5 %), not 1 of 30 and not 11 of 30
    assert finding.evidence["samples"] == 20
    assert finding.evidence["error_rate"] == pytest.approx(0.05)
    assert finding.evidence["throttled"] == 10
    assert finding.outcome == "passed"


def test_unanswered_requests_count_as_errors_and_are_reported_apart_from_5xx() -> None:
    finding = judge_error_rate(window(*answered(36), *refused(2), *timed_out(2)), POLICY)
    assert finding.outcome == "failed"
    assert finding.evidence["transport_errors"] == 4
    assert finding.evidence["errors_5xx"] == 0
    assert finding.evidence["error_rate"] == pytest.approx(0.1)
    assert "4 unanswered" in finding.summary


def test_nothing_answered_is_an_error_not_a_failure_of_the_release() -> None:
    # A gate that cannot reach the service at all has measured nothing about the release.
    finding = judge_error_rate(window(*refused(40)), POLICY)
    assert finding.outcome == "error"
    assert "none of 40 requests was answered" in finding.summary
    assert judge_latency(window(*refused(40)), POLICY).outcome == "error"


def test_a_window_of_only_client_errors_measured_nothing() -> None:
    # Given every answer 401 (an expired token, a wrong path): no success and no server error
    finding = judge_error_rate(window(*answered(40, status=401)), POLICY)
    assert finding.outcome == "error"
    assert "401 x40" in finding.summary


def test_only_throttled_answers_are_an_error() -> None:
    assert judge_error_rate(window(*answered(40, status=429)), POLICY).outcome == "error"


# --------------------------------------------------------------------------- latency


def test_latency_percentiles_come_from_the_raw_samples() -> None:
    # Given 90 fast answers and 10 at 250 ms: p95 is a real sample, not a bucket bound
    samples = answered(90, latency_ms=4.0) + answered(10, latency_ms=250.0)
    finding = judge_latency(window(*samples), POLICY)
    assert finding.outcome == "failed"
    assert finding.evidence["p50_ms"] == 4.0
    assert finding.evidence["p95_ms"] == 250.0  # the key SavedVerdict.number("slo.latency", "p95_ms") reads
    assert finding.evidence["samples"] == 100
    assert finding.evidence["worst"][0]["latency_ms"] == 250.0
    assert "p95 250.0 ms > 200.0 ms" in finding.summary


def test_every_budget_set_is_judged_and_unset_ones_are_not() -> None:
    samples = answered(100, latency_ms=120.0)
    assert judge_latency(window(*samples), SloThresholds(p50_ms=100.0, p95_ms=None)).outcome == "failed"
    assert judge_latency(window(*samples), SloThresholds(p50_ms=None, p95_ms=None, p99_ms=130.0)).outcome == "passed"


def test_timeouts_push_the_percentiles_up_instead_of_vanishing() -> None:
    # Given 10 of 100 requests never answered within the probe timeout
    finding = judge_latency(window(*answered(90, latency_ms=3.0), *timed_out(10)), POLICY)
    assert finding.outcome == "failed"
    assert finding.evidence["lost"] == 10
    assert finding.evidence["p95_ms"] is None  # inf is written as null, beside the count of lost samples
    assert "timed out" in finding.observed
    assert_json_safe(finding.evidence)


def test_throttled_answers_are_not_latency_samples() -> None:
    finding = judge_latency(window(*answered(40, latency_ms=8.0), *answered(20, status=429, latency_ms=0.5)), POLICY)
    assert finding.evidence["samples"] == 40
    assert finding.evidence["p50_ms"] == 8.0


# --------------------------------------------------------------------------- baselines


def test_error_rate_may_rise_only_by_the_allowed_increase_over_the_baseline() -> None:
    # Given an absolute limit of 5 % that 2 % meets, and a baseline of 0 % with +0.5 points allowed
    policy = SloThresholds(max_error_rate=0.05, baseline_max_error_rate_increase=0.005)
    observation = window(*answered(98), *answered(2, status=500))
    baseline = BaselineFigures("verdict earlier.json", error_rate=0.0, p95_ms=4.0)
    finding = judge_error_rate(observation, policy, baseline)
    assert finding.outcome == "failed"
    assert "baseline" in finding.summary
    assert finding.evidence["baseline"]["allowed_error_rate"] == 0.005
    # And against a baseline that already had 2 %, the same window passes
    assert judge_error_rate(observation, policy, BaselineFigures("b", error_rate=0.02, p95_ms=4.0)).outcome == "passed"


def test_the_allowed_increase_is_inclusive_despite_floating_point() -> None:
    policy = SloThresholds(max_error_rate=0.5, baseline_max_error_rate_increase=0.005)
    observation = window(*answered(985), *answered(15, status=500))  # exactly 1.5 %
    assert judge_error_rate(observation, policy, BaselineFigures("b", error_rate=0.01, p95_ms=None)).outcome == "passed"


def test_p95_may_grow_only_by_the_allowed_ratio_over_the_baseline() -> None:
    policy = SloThresholds(p95_ms=500.0, baseline_max_p95_ratio=1.25, baseline_min_p95_increase_ms=10.0)
    observation = window(*answered(40, latency_ms=104.0))
    finding = judge_latency(observation, policy, BaselineFigures("target stable", error_rate=0.0, p95_ms=40.0))
    assert finding.outcome == "failed"
    assert finding.evidence["baseline"] == {"source": "target stable", "error_rate": 0.0, "p95_ms": 40.0, "allowed_p95_ms": 50.0}
    assert judge_latency(observation, policy, BaselineFigures("b", error_rate=0.0, p95_ms=90.0)).outcome == "passed"


def test_at_a_few_milliseconds_the_baseline_allows_an_absolute_increase_not_a_ratio_of_noise() -> None:
    # Given a baseline p95 of 3.4 ms: x1.25 would allow 4.25 ms, and 1 ms of scheduling noise would fail
    policy = SloThresholds(p95_ms=500.0, baseline_max_p95_ratio=1.25, baseline_min_p95_increase_ms=10.0)
    baseline = BaselineFigures("saved", error_rate=0.0, p95_ms=3.4)

    assert judge_latency(window(*answered(40, latency_ms=4.3)), policy, baseline).outcome == "passed"
    assert judge_latency(window(*answered(40, latency_ms=13.5)), policy, baseline).outcome == "failed"


def test_a_saved_verdict_gives_the_numbers_its_slo_checks_measured(tmp_path: Path) -> None:
    saved = SavedVerdict(
        tmp_path / "verdict.json", "post-deploy", "prod", {"slo.error_rate": {"error_rate": 0.002}, "slo.latency": {"p95_ms": 41.5}}
    )
    figures = figures_of_saved(saved)
    assert (figures.error_rate, figures.p95_ms, figures.problem) == (0.002, 41.5, None)


def test_a_baseline_without_the_number_is_said_so_and_the_check_judges_absolutely(tmp_path: Path) -> None:
    saved = SavedVerdict(tmp_path / "verdict.json", "post-deploy", "prod", {"slo.error_rate": {"error_rate": 0.0}})
    figures = figures_of_saved(saved)
    assert figures.p95_ms is None and figures.problem is not None and "p95_ms" in figures.problem
    finding = judge_latency(window(*answered(40, latency_ms=50.0)), POLICY, figures)
    assert finding.outcome == "passed"
    assert "p95_ms" in finding.evidence["baseline"]["problem"]


# --------------------------------------------------------------------------- Prometheus


def test_a_prometheus_breach_fails_the_check_even_when_the_probes_saw_no_error() -> None:
    finding = judge_error_rate(window(*answered(40)), POLICY, prometheus=reading(0.04))
    assert finding.outcome == "failed"
    assert "Prometheus error rate 4.00 %" in finding.summary
    assert finding.evidence["prometheus"]["value"] == 0.04


def test_an_unmeasurable_prometheus_is_an_error_that_keeps_the_active_figures() -> None:
    # Given clean active probes, and a Prometheus the operator named that cannot answer
    finding = judge_error_rate(window(*answered(40)), POLICY, prometheus=reading(None, "cannot connect: refused"))
    assert finding.outcome == "error"
    assert "cannot connect" in finding.summary
    assert finding.evidence["error_rate"] == 0.0
    assert finding.evidence["prometheus"]["problem"] == "cannot connect: refused"


def test_a_breach_seen_by_the_probes_fails_even_when_prometheus_cannot_answer() -> None:
    finding = judge_error_rate(window(*answered(30), *answered(10, status=500)), POLICY, prometheus=reading(None, "empty result"))
    assert finding.outcome == "failed"
    assert "empty result" in finding.summary


def test_prometheus_p95_is_judged_in_milliseconds_and_marked_as_an_estimate() -> None:
    fast = window(*answered(40, latency_ms=3.0))
    finding = judge_latency(fast, POLICY, prometheus=reading(0.2375))
    assert finding.outcome == "failed"
    assert finding.evidence["prometheus"]["p95_ms"] == 237.5
    assert "interpolates" in finding.evidence["prometheus"]["note"]
    assert judge_latency(fast, POLICY, prometheus=reading(0.0048)).outcome == "passed"
    assert judge_latency(fast, POLICY, prometheus=reading(None, "NaN")).outcome == "error"


def vector(*values: str) -> bytes:
    result = [{"metric": {"job": f"j{i}"}, "value": [1764000000.1, v]} for i, v in enumerate(values)]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()


def test_an_instant_vector_of_one_series_is_its_value() -> None:
    assert parse_instant(200, vector("0.0125")) == 0.0125
    scalar = {"status": "success", "data": {"resultType": "scalar", "result": [1764000000.1, "3"]}}
    assert parse_instant(200, json.dumps(scalar).encode()) == 3.0


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (200, vector(), "no series matched"),
        (200, vector("NaN"), "NaN"),
        (200, vector("+Inf"), "evaluated to +Inf"),
        (200, vector("0.1", "0.2"), "2 series"),
        (400, b'{"status":"error","errorType":"bad_data","error":"parse error at char 5"}', "bad_data"),
        (200, b"<html>proxy login</html>", "not JSON"),
        (200, b'{"status":"success","data":{"resultType":"matrix","result":[]}}', "matrix"),
        (200, b'{"status":"success","data":{"resultType":"vector","result":[{"value":[1,2]}]}}', "malformed sample"),
    ],
)
def test_anything_but_one_finite_number_cannot_be_measured(status: int, body: bytes, reason: str) -> None:
    with pytest.raises(ProbeError, match=reason.replace("+", r"\+")):
        parse_instant(status, body)


def test_a_cut_answer_is_not_parsed() -> None:
    with pytest.raises(ProbeError, match="cut"):
        parse_instant(200, vector("1")[:20], truncated=True)


def test_queries_get_the_selector_and_window_and_nothing_else_is_touched() -> None:
    rendered = render(PrometheusQueries().error_rate, selector='job="api"', window="30s")
    assert '{status=~"5..",job="api"}[30s]' in rendered
    assert "$" not in rendered
    assert render("x{$selector} $unknown", selector="", window="5m") == "x{} $unknown"


# --------------------------------------------------------------------------- 4xx: the probe's mistake, or a broken path


def test_a_path_the_release_broke_with_404_is_an_error_not_watered_down_by_the_others() -> None:
    # Given /api/v1/me healthy and /api/v1/conversations answering 404 on every request
    observation = window(*answered(20), *answered(20, status=404, latency_ms=1.0, path="/api/v1/conversations"))
    for judge in (judge_error_rate, judge_latency):
        finding = judge(observation, POLICY)
        # Then neither check passes on the strength of the healthy path
        assert finding.outcome == "error", finding.summary
        assert "/api/v1/conversations: no 2xx/3xx answer (404 x20): check slo.paths or the token" in finding.summary
        assert finding.evidence["client_errors_4xx"] == 20
        assert finding.evidence["by_path"]["/api/v1/conversations"]["client_errors_4xx"] == 20


def test_a_few_4xx_are_reported_apart_and_left_out_of_the_rate_and_the_latency() -> None:
    # Given 1 of 40 answers a 404 (2.5 %, under the 5 % a path may have) with a fast latency
    observation = window(*answered(39, latency_ms=50.0), *answered(1, status=404, latency_ms=0.1))
    error_rate, latency = judge_error_rate(observation, POLICY), judge_latency(observation, POLICY)
    assert (error_rate.outcome, latency.outcome) == ("passed", "passed"), (error_rate.summary, latency.summary)
    # Then the 404 is neither a success in the denominator nor a (flattering) latency sample
    assert error_rate.evidence["samples"] == 39
    assert latency.evidence["samples"] == 39 and latency.evidence["min_ms"] == 50.0
    assert error_rate.evidence["client_errors_4xx"] == 1


def test_4xx_on_more_than_5_percent_of_a_paths_answers_cannot_be_judged() -> None:
    # Given 3 of 40 answers 401: not rare enough to be the probe's stray mistake
    observation = window(*answered(37), *answered(3, status=401))
    finding = judge_error_rate(observation, POLICY)
    assert finding.outcome == "error"
    assert "3 of 40 answers were 4xx (200 x37, 401 x3), over 5%" in finding.summary
    assert finding.evidence["path_problems"] == [
        "/api/v1/me: 3 of 40 answers were 4xx (200 x37, 401 x3), over 5%: a release that broke the path cannot be told "
        "from a wrong path or token"
    ]


def test_a_path_that_only_fails_on_the_server_side_fails_the_error_rate() -> None:
    # A violation outweighs what could not be judged: a path answering only 500 is a failure
    observation = window(*answered(20), *answered(20, status=500, path="/api/v1/conversations"))
    finding = judge_error_rate(observation, POLICY)
    assert finding.outcome == "failed"
    assert "also: path /api/v1/conversations: no 2xx/3xx answer" in finding.summary


# --------------------------------------------------------------------------- a check that judged nothing


def test_latency_without_any_budget_needs_a_baseline_figure_or_it_is_an_error() -> None:
    # Given every latency budget null: only --baseline can judge
    policy = SloThresholds(p50_ms=None, p95_ms=None, p99_ms=None)
    observation = window(*answered(40, latency_ms=5.0))
    finding = judge_latency(observation, policy)
    assert finding.outcome == "error"
    assert "no latency budget is set" in finding.summary
    # A baseline without a p95 judges nothing either
    assert judge_latency(observation, policy, BaselineFigures("b", error_rate=0.0, p95_ms=None)).outcome == "error"
    # With a baseline figure the check judges, and passes
    assert judge_latency(observation, policy, BaselineFigures("b", error_rate=0.0, p95_ms=5.0)).outcome == "passed"


def test_a_saved_verdict_that_was_not_promoted_is_used_but_the_evidence_says_so(tmp_path: Path) -> None:
    saved = SavedVerdict(
        tmp_path / "verdict.json",
        "post-deploy",
        "prod",
        {"slo.error_rate": {"error_rate": 0.2}, "slo.latency": {"p95_ms": 41.5}},
        "rollback",
    )
    figures = figures_of_saved(saved)
    assert figures.error_rate == 0.2
    finding = judge_error_rate(window(*answered(40)), POLICY, figures)
    assert "decision rollback" in finding.evidence["baseline"]["source"]
    assert "decided rollback, not promote" in finding.evidence["baseline"]["caveat"]
