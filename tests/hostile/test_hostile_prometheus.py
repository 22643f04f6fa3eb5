"""Hostile Prometheus: the gate's PromQL and API reads against a fake Prometheus that errs, knows nothing, or answers NaN/+Inf.

Two readers of the target's ``prometheus.url`` are run through the real gate:

- post-deploy ``slo.error_rate`` and ``slo.latency``: the active probes against a healthy loopback
  service pass on their own, so whatever the checks conclude beyond "passed" is the Prometheus
  half's doing. An error answer, an empty vector, NaN or +Inf must make both checks ``error``
  ("could not judge"), never a zero error rate or a fast p95 read from nothing;
- pre-deploy ``infra.monitoring.targets`` and ``infra.monitoring.alert_rules``: an error answer is
  ``error``; an empty answer (no scrape targets, no rule groups) is ``failed``, because that is
  what the target really is then: not watched. NaN and +Inf have no place there (targets and
  rules carry no samples), so those two cases are SLO cases only.

The canary's Prometheus metrics read through the same :mod:`releasegate.probes.prometheus` calls
(``read``, ``read_range``); their NaN/empty handling is unit-tested in tests/canary/test_collect.py
rather than here: a canary stage run needs two deployments and several intervals.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import assert_fails_closed, record_row, run_gate
from prom_servers import QUERY, RULES, TARGETS, Answers, FakePrometheus, empty, error, fake_prometheus, sample

from loopback import LoopbackServer, Route, serve

DEADLINE_S = 30
GATES = f"""\
deadline_s: {DEADLINE_S}
probe: {{timeout_s: 2, retry: {{timeout_s: 0}}}}
thresholds:
  slo: {{max_error_rate: 0.01, p95_ms: 1000}}
  monitoring: {{jobs: [api], alert_rules: [HighErrorRate]}}
"""
SLO_CHECKS = ["slo.error_rate", "slo.latency"]
MONITORING_CHECKS = ["infra.monitoring.targets", "infra.monitoring.alert_rules"]


@pytest.fixture
def service() -> Iterator[LoopbackServer]:
    """A healthy service for the SLO checks' active probes: they pass, so only Prometheus can spoil the checks."""
    with serve({"/api/v1/me": Route(200, {"username": "alice"})}) as server:
        yield server


def _target(prometheus: FakePrometheus, base_url: str, *, slo: bool) -> str:
    plan = "slo: {paths: [/api/v1/me], requests: 30, window_s: 1.5}\n" if slo else ""
    return f"name: hostile-prometheus\nbase_url: {base_url}\nprometheus: {{url: '{prometheus.base_url}', selector: 'job=\"api\"'}}\n" + plan


# (answers, row case, the cause every affected check must name, the row's outcome)
SLO_CASES = [
    pytest.param(
        error(400),
        "SLO queries: HTTP 400 bad_data",
        r"Prometheus refused the query \(HTTP 400, bad_data\)",
        "error: Prometheus refused (400)",
        id="400",
    ),
    pytest.param(
        error(422),
        "SLO queries: HTTP 422 execution",
        r"Prometheus refused the query \(HTTP 422, execution\)",
        "error: Prometheus refused (422)",
        id="422",
    ),
    pytest.param(
        error(503),
        "SLO queries: HTTP 503 from a proxy",
        r"HTTP 503, not a Prometheus API answer \(not JSON\)",
        "error: HTTP 503, not the API",
        id="503",
    ),
    pytest.param(
        empty(), "SLO queries: empty vector", r"no series matched \(empty result\)", "error: no series matched, never 0", id="empty"
    ),
    pytest.param(sample("NaN"), "SLO queries: NaN", r"the query evaluated to NaN", "error: evaluated to NaN, never 0", id="nan"),
    pytest.param(sample("+Inf"), "SLO queries: +Inf", r"the query evaluated to \+Inf", "error: evaluated to +Inf", id="inf"),
]


@pytest.mark.parametrize(("answers", "case", "cause", "outcome"), SLO_CASES)
def test_slo_checks_never_read_a_broken_prometheus_as_a_number(
    tmp_path: Path, service: LoopbackServer, answers: Answers, case: str, cause: str, outcome: str
) -> None:
    # Given a healthy service whose Prometheus answers every query with `answers`
    with fake_prometheus(answers) as prometheus:
        # When the post-deploy SLO checks run
        result = run_gate(tmp_path, target=_target(prometheus, service.base_url, slo=True), gates=GATES, stage="post-deploy", only=["slo"])
        asked = prometheus.asked()

    # Then both asked Prometheus, and both are errors naming what Prometheus did: could not judge, hold
    assert asked.count(QUERY) == 2, asked
    assert_fails_closed(result, affected=SLO_CHECKS, deadline_s=DEADLINE_S, cause=cause)
    for check_id in SLO_CHECKS:
        assert "could not be measured" in result.check(check_id)["summary"]
    assert result.verdict is not None and result.verdict["decision"] == "hold"
    record_row("Prometheus", case, result, checks=SLO_CHECKS, outcome=outcome)


MONITORING_ERRORS = [
    pytest.param(error(400), r"Prometheus refused the request \(HTTP 400, bad_data\)", id="400"),
    pytest.param(error(422), r"Prometheus refused the request \(HTTP 422, execution\)", id="422"),
    pytest.param(error(503), r"HTTP 503, not a Prometheus API answer \(not JSON\)", id="503"),
]


@pytest.mark.parametrize(("answers", "cause"), MONITORING_ERRORS)
def test_monitoring_checks_are_errors_when_prometheus_refuses(tmp_path: Path, answers: Answers, cause: str) -> None:
    # Given a Prometheus whose targets and rules APIs refuse
    with fake_prometheus(answers) as prometheus:
        # When the pre-deploy monitoring checks run
        result = run_gate(
            tmp_path,
            target=_target(prometheus, "http://127.0.0.1:9", slo=False),
            gates=GATES,
            stage="pre-deploy",
            only=["infra.monitoring"],
        )
        asked = prometheus.asked()

    # Then both are errors naming the refusal, and the run holds
    assert TARGETS in asked and RULES in asked, asked
    assert_fails_closed(result, affected=MONITORING_CHECKS, deadline_s=DEADLINE_S, cause=cause)
    status = answers.name.split()[1]
    record_row("Prometheus", f"targets and rules API: HTTP {status}", result, checks=MONITORING_CHECKS, outcome=f"error: HTTP {status}")


def test_an_empty_prometheus_means_the_deployment_is_not_watched(tmp_path: Path) -> None:
    # Given a Prometheus that answers, but scrapes nothing and has no rules loaded
    with fake_prometheus(empty()) as prometheus:
        result = run_gate(
            tmp_path,
            target=_target(prometheus, "http://127.0.0.1:9", slo=False),
            gates=GATES,
            stage="pre-deploy",
            only=["infra.monitoring"],
        )

    # Then both checks fail (not error): the answer is complete, and it says the job and the rule are missing
    assert_fails_closed(result, affected=MONITORING_CHECKS, deadline_s=DEADLINE_S, outcomes=("failed",))
    assert "no active targets for job api" in result.check("infra.monitoring.targets")["summary"]
    assert "not loaded: HighErrorRate" in result.check("infra.monitoring.alert_rules")["summary"]
    record_row(
        "Prometheus", "targets and rules API: empty", result, checks=MONITORING_CHECKS, outcome="failed: no targets, rule not loaded"
    )
