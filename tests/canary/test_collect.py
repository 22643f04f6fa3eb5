"""The canary collector against real reference services on loopback (and a fake Prometheus).

A healthy baseline and canaries with faults (slow-api at +100 ms, error-burst), all started with
``server.start`` on loopback and sharing one JWT secret, so one token works on every side, and one
CA bundle that trusts them all (their CA certificates concatenated). Every test collects one
short interval (1.5 s, 20 GETs and 10 sync round trips per side) through :class:`CanaryCollector`
exactly as the stage does, then looks at the samples: slow-api's latencies sit apart from the
baseline's, error-burst's errors are events, a path that answers only 4xx gives no data and says
why, a dead canary gives events and problems but no exception, and the budget holds.

The Prometheus half uses a fake Prometheus (tests/loopback.py) that answers the HTTP API and
records what it was asked: the range, the step, the rendered selectors. The real one is in
test_prometheus_live.py. The pure mappings (probe observations -> samples) are tested on
hand-made observations.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import secrets
import statistics
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from loopback import Route, refused_port, serve
from releasegate._exceptions import ProbeError
from releasegate.canary.collect import CanaryCollector, http_samples, prometheus_latency, prometheus_rate, sync_samples
from releasegate.canary.model import IntervalSamples, LatencySamples, RateSamples
from releasegate.config import Gates, LoadedTarget, load_target
from releasegate.probes import slo
from releasegate.probes import sync as sync_probe
from releasegate.probes.prometheus import PromRange, PromReading, duration, parse_range, render
from releasegate.reference import server
from releasegate.reference.demo import BUSINESS_SECTIONS, login
from releasegate.reference.settings import ServiceSettings

TOKEN_ENV = "RELEASEGATE_CANARY_COLLECT_TOKEN"
SECOND_TOKEN_ENV = "RELEASEGATE_CANARY_COLLECT_TOKEN_2"
SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
# The demo target's sync section (driver shared_conversation, the reference's actions), as JSON flow YAML.
SYNC_SECTION = json.dumps(yaml.safe_load(BUSINESS_SECTIONS)["sync"])
SLOW_API_MS = 100
INTERVAL_S = 1.5
REQUESTS = 20  # per side per interval: ~13 req/s, under the reference's per-user limit of 20/s
ROUND_TRIPS = 10
BUDGET_S = 30.0
ALL_PROBES = [
    {"name": "http_latency", "kind": "latency", "probe": "http_latency", "min_samples": 10},
    {"name": "http_errors", "kind": "rate", "probe": "http_errors", "min_samples": 10},
    {"name": "sync_latency", "kind": "latency", "probe": "sync_latency", "min_samples": 5},
]


# --------------------------------------------------------------------------- the sides


@dataclass(frozen=True)
class Fleet:
    """Reference services sharing one JWT secret and one CA bundle; tokens in TOKEN_ENV / SECOND_TOKEN_ENV."""

    services: dict[str, server.RunningService]
    ca_bundle: Path

    def write_target(
        self,
        folder: Path,
        canary: str,
        *,
        canary_url: str | None = None,
        canary_ws_url: str | None = None,
        paths: tuple[str, ...] = ("/api/v1/me",),
        sync: bool = True,
        prometheus: dict[str, str] | None = None,
        requests: int = REQUESTS,
    ) -> LoadedTarget:
        """A target whose base_url is the canary ``canary`` and whose canary section names the baseline."""
        base, side = self.services["baseline"], self.services[canary]
        section: dict[str, Any] = {
            "baseline_url": base.base_url,
            "baseline_ws_url": base.ws_url,
            "paths": list(paths),
            "requests_per_interval": requests,
            "sync_round_trips": ROUND_TRIPS,
        }
        if canary_url is not None:
            section["canary_url"] = canary_url
        if canary_ws_url is not None:
            section["canary_ws_url"] = canary_ws_url
        if prometheus is not None:
            section["prometheus"] = prometheus
        lines = [
            "name: canary-collect",
            f"base_url: {side.base_url}",
            f"ws_url: {side.ws_url}",
            f"tls: {{ca_bundle: {self.ca_bundle}}}",
            f"auth: {{token_env: {TOKEN_ENV}, second_token_env: {SECOND_TOKEN_ENV}}}",
            f"canary: {json.dumps(section)}",
        ]
        if sync:
            lines += [f"scenarios: {SCENARIOS}", f"sync: {SYNC_SECTION}"]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "target.yaml"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return load_target(path)


@contextmanager
def running_fleet(folder: Path, sides: dict[str, ServiceSettings]) -> Iterator[Fleet]:
    """Start every side (``sides``: name -> settings whose jwt_secret is replaced by one shared secret); log alice and bob in once.

    One secret and the same users everywhere, so the tokens from the baseline work on every
    side; one CA bundle that trusts every side's own CA.
    """
    shared = secrets.token_urlsafe(32)
    with ExitStack() as stack, pytest.MonkeyPatch.context() as patch:
        services = {name: stack.enter_context(server.start(replace(settings, jwt_secret=shared))) for name, settings in sides.items()}
        bundle = folder / "ca-bundle.pem"
        bundle.write_text("".join(service.ca_path.read_text(encoding="utf-8") for service in services.values()), encoding="utf-8")
        base = services["baseline"]
        (first, first_password), (second, second_password) = base.settings.users[:2]
        patch.setenv(TOKEN_ENV, login(base.base_url, base.ca_path, first, first_password))
        patch.setenv(SECOND_TOKEN_ENV, login(base.base_url, base.ca_path, second, second_password))
        yield Fleet(services, bundle)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    folder = tmp_path_factory.mktemp("fleet")
    sides = {
        "baseline": ServiceSettings(data_dir=folder / "baseline"),
        "slow": ServiceSettings(data_dir=folder / "slow", faults=frozenset({"slow-api"}), slow_api_ms=SLOW_API_MS),
        "burst": ServiceSettings(data_dir=folder / "burst", faults=frozenset({"error-burst"})),
    }
    with running_fleet(folder, sides) as running:
        yield running


def gates(metrics: list[dict[str, Any]], **canary: Any) -> Gates:
    """A policy with these canary metrics; short probe timeouts so dead sides answer fast."""
    return Gates.model_validate(
        {
            "probe": {"timeout_s": 2, "retry": {"timeout_s": 0}},
            "thresholds": {"sync_latency": {"timeout_ms": 1000}},
            "canary": {"interval_s": INTERVAL_S, "max_intervals": 2, "metrics": metrics, **canary},
        }
    )


def collect_once(loaded: LoadedTarget, policy: Gates, *, interval_s: float = INTERVAL_S, budget_s: float = BUDGET_S) -> IntervalSamples:
    collector = CanaryCollector(loaded, policy)
    collector.open(BUDGET_S)
    try:
        return collector.collect(1, interval_s, budget_s=budget_s)
    finally:
        collector.close()


def latency(samples: IntervalSamples, name: str) -> tuple[LatencySamples, LatencySamples]:
    metric = samples.metrics[name]
    assert isinstance(metric.baseline, LatencySamples) and isinstance(metric.canary, LatencySamples)
    return metric.baseline, metric.canary


def rate(samples: IntervalSamples, name: str) -> tuple[RateSamples, RateSamples]:
    metric = samples.metrics[name]
    assert isinstance(metric.baseline, RateSamples) and isinstance(metric.canary, RateSamples)
    return metric.baseline, metric.canary


def no_secret_in(samples: IntervalSamples) -> None:
    shown = json.dumps({name: list(m.problems) for name, m in samples.metrics.items()})
    for env in (TOKEN_ENV, SECOND_TOKEN_ENV):
        assert os.environ[env] not in shown
        assert os.environ[env][:12] not in shown


# --------------------------------------------------------------------------- live sides


def test_slow_api_canary_latencies_sit_clearly_above_the_baselines(tmp_path: Path, fleet: Fleet) -> None:
    # Given a healthy baseline and a canary whose every API answer waits 100 ms more
    loaded = fleet.write_target(tmp_path, "slow")
    # When one interval is collected with all three probe metrics
    samples = collect_once(loaded, gates(ALL_PROBES))
    # Then every HTTP request of both sides is a latency sample, and the two sets do not overlap in the middle
    baseline, canary = latency(samples, "http_latency")
    assert (baseline.n, canary.n) == (REQUESTS, REQUESTS), samples.metrics["http_latency"].problems
    print(
        f"http_latency ms: baseline median {statistics.median(baseline.values):.1f} max {max(baseline.values):.1f}; "
        f"slow-api canary median {statistics.median(canary.values):.1f} min {min(canary.values):.1f}"
    )
    assert min(canary.values) >= SLOW_API_MS
    assert statistics.median(canary.values) - statistics.median(baseline.values) >= 0.8 * SLOW_API_MS
    # And no request failed on either side
    assert rate(samples, "http_errors") == (RateSamples(0, REQUESTS), RateSamples(0, REQUESTS))
    # And sync (WebSocket, untouched by slow-api) was measured on both sides, each in its own conversation
    sync_base, sync_canary = latency(samples, "sync_latency")
    shown = {side: sorted(round(v, 1) for v in values.values) for side, values in (("baseline", sync_base), ("canary", sync_canary))}
    print(f"sync_latency ms: {shown}")
    assert (sync_base.n, sync_canary.n) == (ROUND_TRIPS, ROUND_TRIPS), samples.metrics["sync_latency"].problems
    assert all(v > 0 and math.isfinite(v) for v in sync_base.values + sync_canary.values)
    assert samples.metrics["http_latency"].problems == () and samples.metrics["sync_latency"].problems == ()
    assert samples.index == 1 and samples.duration_s == INTERVAL_S and samples.started_at.endswith("Z")


def test_error_burst_canary_errors_are_events_out_of_judged_requests(tmp_path: Path, fleet: Fleet) -> None:
    # Given a canary that fails 3 of every 10 API requests with a 500
    loaded = fleet.write_target(tmp_path, "burst", sync=False)
    # When only the error metric is in the policy
    samples = collect_once(loaded, gates([ALL_PROBES[1]]))
    # Then only that metric was collected
    assert list(samples.metrics) == ["http_errors"]
    baseline, canary = rate(samples, "http_errors")
    print(f"http_errors: baseline {baseline.events}/{baseline.trials}; error-burst canary {canary.events}/{canary.trials}")
    # And the canary's 500s are events, every request a trial; the baseline has none
    assert baseline == RateSamples(0, REQUESTS)
    assert canary.trials == REQUESTS and 3 <= canary.events <= 9


def test_a_path_that_answers_only_4xx_gives_no_data_and_says_why(tmp_path: Path, fleet: Fleet) -> None:
    # Given a probe path that exists on neither side
    loaded = fleet.write_target(tmp_path, "slow", paths=("/api/v1/no-such-thing",), sync=False)
    # When an interval is collected
    samples = collect_once(loaded, gates(ALL_PROBES[:2]))
    # Then neither HTTP metric has a sample on either side: the judge sees no data, never a pass
    assert latency(samples, "http_latency") == (LatencySamples(()), LatencySamples(()))
    assert rate(samples, "http_errors") == (RateSamples(0, 0), RateSamples(0, 0))
    # And the problems say which path, which status, and what to check
    problems = " | ".join(samples.metrics["http_latency"].problems)
    assert "/api/v1/no-such-thing" in problems and "404" in problems and "canary.paths" in problems
    assert "baseline:" in problems and "canary:" in problems
    no_secret_in(samples)


def test_a_dead_canary_gives_error_events_and_problems_not_an_exception(tmp_path: Path, fleet: Fleet) -> None:
    # Given a canary whose port is closed (HTTP and WebSocket)
    port = refused_port()
    loaded = fleet.write_target(tmp_path, "slow", canary_url=f"https://localhost:{port}", canary_ws_url=f"wss://localhost:{port}/ws/sync")
    # When it is set up and collected like any other
    samples = collect_once(loaded, gates(ALL_PROBES))
    # Then every request to it is an error event: the error metric has the evidence to roll it back
    baseline, canary = rate(samples, "http_errors")
    assert baseline == RateSamples(0, REQUESTS) and canary == RateSamples(REQUESTS, REQUESTS)
    assert any("got no answer" in p and "connect" in p for p in samples.metrics["http_errors"].problems)
    # And the latency metrics have no canary sample, with the reason
    assert latency(samples, "http_latency")[1] == LatencySamples(())
    assert any(
        p.startswith("canary: no latency sample: none of 20 requests was answered") for p in samples.metrics["http_latency"].problems
    )
    sync_base, sync_canary = latency(samples, "sync_latency")
    assert sync_base.n == ROUND_TRIPS and sync_canary.n == 0
    assert any(p.startswith("canary: could not set up the sync conversation") for p in samples.metrics["sync_latency"].problems)
    no_secret_in(samples)


def test_a_baseline_whose_conversation_cannot_be_set_up_stops_open(tmp_path: Path, fleet: Fleet) -> None:
    # Given a target whose baseline is the dead side
    port = refused_port()
    loaded = fleet.write_target(tmp_path, "slow")
    canary_section = loaded.target.canary
    assert canary_section is not None
    dead = canary_section.model_copy(update={"baseline_url": f"https://localhost:{port}", "baseline_ws_url": f"wss://localhost:{port}/ws"})
    loaded = LoadedTarget(loaded.target.model_copy(update={"canary": dead}), loaded.path)
    # Then open() says the comparison cannot be set up
    collector = CanaryCollector(loaded, gates(ALL_PROBES))
    with pytest.raises(ProbeError, match="baseline: could not set up the sync conversation.*the baseline must work"):
        collector.open(BUDGET_S)


def test_a_sync_metric_without_a_sync_section_is_a_problem_and_the_rest_is_collected(tmp_path: Path, fleet: Fleet) -> None:
    loaded = fleet.write_target(tmp_path, "slow", sync=False, requests=6)
    samples = collect_once(loaded, gates(ALL_PROBES), interval_s=0.5)
    sync_metric = samples.metrics["sync_latency"]
    assert sync_metric.problems == ("the target has no sync section (key: sync): nothing says how to join a conversation",)
    assert sync_metric.baseline == LatencySamples(()) and sync_metric.canary == LatencySamples(())
    assert rate(samples, "http_errors") == (RateSamples(0, 6), RateSamples(0, 6))


def test_collect_keeps_its_budget_when_the_interval_does_not_fit(tmp_path: Path, fleet: Fleet) -> None:
    # Given an interval of 4 s but a budget of 1 s (the run's deadline is near)
    loaded = fleet.write_target(tmp_path, "slow")
    collector = CanaryCollector(loaded, gates(ALL_PROBES))
    collector.open(BUDGET_S)
    started = time.monotonic()
    samples = collector.collect(1, 4.0, budget_s=1.0)
    elapsed = time.monotonic() - started
    collector.close()
    # Then collect returns about when the budget ends, with every metric's reason and no samples
    assert elapsed < 2.0
    for name in ("http_latency", "http_errors", "sync_latency"):
        assert any("did not finish within the interval's budget" in p for p in samples.metrics[name].problems), name
    assert latency(samples, "http_latency") == (LatencySamples(()), LatencySamples(()))


def test_collect_before_open_is_a_programming_error(tmp_path: Path, fleet: Fleet) -> None:
    collector = CanaryCollector(fleet.write_target(tmp_path, "slow", sync=False), gates(ALL_PROBES[:1]))
    with pytest.raises(RuntimeError, match="open"):
        collector.collect(1, 1.0, budget_s=5.0)


# --------------------------------------------------------------------------- Prometheus (fake server)

T0 = 1_750_000_000.0


def stepping_clock(first: float, later: float) -> Iterator[float]:
    return itertools.chain([first], itertools.repeat(later))


def matrix(*values: str) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {"resultType": "matrix", "result": [{"metric": {}, "values": [[T0 + i, v] for i, v in enumerate(values)]}]},
    }


def vector(value: str | None) -> dict[str, Any]:
    result = [] if value is None else [{"metric": {}, "value": [T0, value]}]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


PROM_METRICS = [
    {
        "name": "api_latency",
        "kind": "latency",
        "source": "prometheus",
        "query": "sum(rate(d_sum{$selector}[$step])) / sum(rate(d_count{$selector}[$step]))",
        "min_samples": 3,
    },
    {
        "name": "api_errors",
        "kind": "rate",
        "source": "prometheus",
        "errors_query": 'sum(increase(r_total{status=~"5..",$selector}[$interval]))',
        "total_query": "sum(increase(r_total{$selector}[$interval]))",
        "min_samples": 3,
    },
]


def test_prometheus_metrics_read_each_sides_series_over_the_interval(tmp_path: Path) -> None:
    asked: list[dict[str, str]] = []

    def api(handler: Any) -> Route:
        query = {k: v[0] for k, v in parse_qs(urlsplit(handler.path).query).items()}
        asked.append(query | {"path": urlsplit(handler.path).path})
        text = query["query"]
        canary = 'job="canary"' in text
        if handler.path.startswith("/api/v1/query_range"):
            return Route(200, matrix("0.010", "NaN", "0.012", "0") if not canary else matrix("0.200", "0.210", "+Inf"))
        if "5.." in text:
            return Route(200, vector(None) if not canary else vector("2.6"))  # baseline: no 5xx series at all
        return Route(200, vector("100.4") if not canary else vector("40"))

    with serve({"/api/v1/query_range": api, "/api/v1/query": api}) as prometheus:
        section = {"url": prometheus.base_url, "baseline_selector": 'job="baseline"', "canary_selector": 'job="canary"'}
        path = tmp_path / "target.yaml"
        path.write_text(f"name: t\nbase_url: https://localhost:1\ncanary: {json.dumps({'prometheus': section})}\n", encoding="utf-8")
        clock = stepping_clock(T0, T0 + 100)
        collector = CanaryCollector(load_target(path), gates(PROM_METRICS, interval_s=0.4, step_s=0.1), clock=lambda: next(clock))
        collector.open(5.0)
        started = time.monotonic()
        samples = collector.collect(3, 0.4, budget_s=5.0)
        # The interval is waited out (the deployment's own traffic), then Prometheus is asked
        assert time.monotonic() - started >= 0.4

    # Latency: one range per side, from one step after the interval's start to its end, $step as a duration
    ranges = [q for q in asked if q["path"] == "/api/v1/query_range"]
    assert [q["query"] for q in ranges] == [
        render(PROM_METRICS[0]["query"], selector=f'job="{side}"', step="100ms") for side in ("baseline", "canary")
    ]
    assert {(float(q["start"]), float(q["end"]), q["step"]) for q in ranges} == {(T0 + 0.1, T0 + 0.4, "0.1")}
    baseline, canary = latency(samples, "api_latency")
    # Finite positive points are samples; NaN, zero and +Inf are dropped and counted
    assert baseline == LatencySamples((0.010, 0.012), dropped=2) and canary == LatencySamples((0.200, 0.210), dropped=1)
    problems = samples.metrics["api_latency"].problems
    assert any("baseline: 2 of 4 Prometheus points were NaN, infinite or not positive" in p for p in problems)
    # The canary's +Inf (a quantile beyond the last finite bucket) is dropped and counted too, and named as such
    assert any("canary: 1 of 3 Prometheus points were NaN, infinite or not positive" in p for p in problems)
    # Rate: instant counts at the interval's end over $interval, rounded; no 5xx series with a total = 0 errors
    instants = [q for q in asked if q["path"] == "/api/v1/query"]
    assert {float(q["time"]) for q in instants} == {T0 + 0.4} and all("[400ms]" in q["query"] for q in instants)
    assert rate(samples, "api_errors") == (RateSamples(0, 100), RateSamples(3, 40))
    assert samples.metrics["api_errors"].problems == ()
    assert samples.index == 3 and samples.started_at == "2025-06-15T15:06:40.000Z"


def test_prometheus_without_data_is_no_data_never_zero(tmp_path: Path) -> None:
    def api(handler: Any) -> Route:
        text = parse_qs(urlsplit(handler.path).query)["query"][0]
        if 'job="canary"' in text:
            if handler.path.startswith("/api/v1/query_range"):
                return Route(200, {"status": "success", "data": {"resultType": "matrix", "result": []}})
            return Route(200, vector(None))  # a side with no traffic has no series at all
        if handler.path.startswith("/api/v1/query_range"):
            return Route(422, {"status": "error", "errorType": "execution", "error": "query timed out"})
        return Route(200, vector(None if "5.." in text else "50"))

    with serve({"/api/v1/query_range": api, "/api/v1/query": api}) as prometheus:
        section = {"url": prometheus.base_url, "baseline_selector": 'job="baseline"', "canary_selector": 'job="canary"'}
        path = tmp_path / "target.yaml"
        path.write_text(f"name: t\nbase_url: https://localhost:1\ncanary: {json.dumps({'prometheus': section})}\n", encoding="utf-8")
        clock = stepping_clock(T0, T0 + 100)
        collector = CanaryCollector(load_target(path), gates(PROM_METRICS, interval_s=0.2, step_s=0.1), clock=lambda: next(clock))
        collector.open(5.0)
        samples = collector.collect(1, 0.2, budget_s=5.0)
    assert latency(samples, "api_latency") == (LatencySamples(()), LatencySamples(()))
    problems = samples.metrics["api_latency"].problems
    assert any(p.startswith("baseline: Prometheus: Prometheus refused the query (HTTP 422, execution): query timed out") for p in problems)
    assert any(p.startswith("canary: Prometheus: no series matched") for p in problems)
    # The canary's empty total is no data (not "0 of 0"); the baseline's counts stand
    assert rate(samples, "api_errors") == (RateSamples(0, 50), RateSamples(0, 0))
    assert any(p.startswith("canary: Prometheus total: no series matched") for p in samples.metrics["api_errors"].problems)


def test_prometheus_metrics_need_the_targets_canary_prometheus_section(tmp_path: Path) -> None:
    path = tmp_path / "target.yaml"
    path.write_text("name: t\nbase_url: https://localhost:1\ncanary: {baseline_url: 'https://localhost:2'}\n", encoding="utf-8")
    collector = CanaryCollector(load_target(path), gates(PROM_METRICS, interval_s=0.2, step_s=0.1))
    collector.open(5.0)
    started = time.monotonic()
    samples = collector.collect(1, 0.2, budget_s=5.0)
    assert time.monotonic() - started < 0.2  # nothing to wait for: nothing can be collected
    for name in ("api_latency", "api_errors"):
        assert samples.metrics[name].problems == ("the target has no canary.prometheus section (url and both selectors)",)


def test_a_target_without_a_canary_section_collects_nothing_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "target.yaml"
    path.write_text("name: t\nbase_url: https://localhost:1\n", encoding="utf-8")
    collector = CanaryCollector(load_target(path), gates(ALL_PROBES + PROM_METRICS, step_s=0.1))
    collector.open(5.0)
    samples = collector.collect(1, 0.2, budget_s=5.0)
    assert {name: m.problems for name, m in samples.metrics.items()} == {
        name: ("the target has no canary section (key: canary): neither side is known",)
        for name in ("http_latency", "http_errors", "sync_latency", "api_latency", "api_errors")
    }


# --------------------------------------------------------------------------- pure mappings


def sample(path: str, status: int | None, ms: float | None, failure: str | None = None) -> slo.Sample:
    return slo.Sample(path, 0.0, status, ms, failure)


def window(*samples: slo.Sample) -> slo.SloObservation:
    return slo.SloObservation("side", tuple(samples), 1.0, 1.0)


def test_http_samples_count_5xx_and_unanswered_as_errors_and_leave_4xx_out() -> None:
    observation = window(
        sample("/a", 200, 5.0),
        sample("/a", 302, 7.0),
        sample("/a", 503, 9.0),
        sample("/a", None, math.inf, "no complete answer within 2 s"),
        sample("/a", None, None, "cannot connect: refused"),
        sample("/a", 429, 1.0),
        *[sample("/b", 200, 3.0) for _ in range(30)],
        sample("/b", 404, 2.0),
    )
    side = http_samples("canary", observation)
    assert side.latency == LatencySamples((5.0, 7.0, *[3.0] * 30))
    assert side.rate == RateSamples(events=3, trials=35)
    assert any("1 of 37 requests throttled (429)" in p for p in side.rate_problems)
    assert any("1 of 37 requests answered 4xx" in p for p in side.latency_problems)
    assert any("2 of 37 requests got no answer (e.g. no complete answer within 2 s)" in p for p in side.rate_problems)


def test_http_samples_of_a_side_with_a_path_it_cannot_judge_are_empty() -> None:
    # /b answers 4xx on 2 of 10: more than 5 %, so a broken path could hide behind /a
    observation = window(
        *[sample("/a", 200, 5.0) for _ in range(10)], *[sample("/b", 200, 5.0) for _ in range(8)], *[sample("/b", 401, 1.0)] * 2
    )
    side = http_samples("baseline", observation)
    assert side.latency == LatencySamples(()) and side.rate == RateSamples(0, 0)
    assert any(p.startswith("baseline: /b: 2 of 10 answers were 4xx, over 5%") for p in side.latency_problems)


def test_http_samples_of_a_side_that_only_fails_are_error_data_not_a_path_problem() -> None:
    side = http_samples("canary", window(*[sample("/a", 500, 3.0)] * 4))
    assert side.rate == RateSamples(4, 4) and side.latency == LatencySamples(())
    assert side.latency_problems == ("canary: no latency sample: all 4 judged requests were errors (500 x4)",)


def trips(*received_ms: float | None) -> sync_probe.LatencyObservation:
    client = sync_probe.ClientLog(0, "primary")
    round_trips = tuple(
        sync_probe.RoundTrip(f"n{i}", 10.0 + i, 10.0 + i, None if ms is None else 10.0 + i + ms / 1000) for i, ms in enumerate(received_ms)
    )
    return sync_probe.LatencyObservation("wss://x", client, sync_probe.ClientLog(1, "second"), round_trips, len(round_trips), 100.0, 1000.0)


def test_sync_samples_keep_delivered_round_trips_and_count_the_lost() -> None:
    values, problems = sync_samples("canary", trips(12.0, None, 30.0, 1500.0))
    assert values.values == pytest.approx((12.0, 30.0)) and values.dropped == 2
    assert problems == ["canary: 2 of 4 sync round trips lost (not at the receiver within 1000 ms)"]


def test_sync_samples_of_a_connection_lost_mid_probe_are_empty() -> None:
    observation = trips(12.0, 13.0)
    closed = sync_probe.LatencyObservation(
        observation.url,
        observation.sender,
        sync_probe.ClientLog(1, "second", closed="closed by the server with 1008"),
        observation.round_trips,
        2,
        100.0,
        1000.0,
    )
    values, problems = sync_samples("baseline", closed)
    assert values == LatencySamples(()) and "1008" in problems[0]


def test_prometheus_mappings() -> None:
    answer = PromRange("http://p", "q", T0, T0 + 1, 0.5, values=(0.1, math.nan, -1.0, math.inf, 0.2))
    assert prometheus_latency("canary", answer)[0] == LatencySamples((0.1, 0.2), dropped=3)
    assert prometheus_latency("canary", PromRange("http://p", "q", T0, T0 + 1, 0.5, problem="boom"))[0] == LatencySamples(())
    total, errors = PromReading("http://p", "t", 99.6), PromReading("http://p", "e", 100.2)
    assert prometheus_rate("baseline", errors, total) == (RateSamples(100, 100), [])  # never more errors than requests
    assert prometheus_rate("baseline", None, PromReading("http://p", "t", None, "no series"))[0] == RateSamples(0, 0)
    assert prometheus_rate("baseline", PromReading("http://p", "e", None, "refused"), total)[0] == RateSamples(0, 0)


def test_parse_range_and_durations() -> None:
    body = json.dumps(matrix("1", "NaN", "+Inf")).encode()
    values = parse_range(200, body)
    assert values[0] == 1.0 and math.isnan(values[1]) and values[2] == math.inf
    with pytest.raises(ProbeError, match="2 series instead of one"):
        doc = matrix("1")
        doc["data"]["result"] *= 2
        parse_range(200, json.dumps(doc).encode())
    with pytest.raises(ProbeError, match="expected a range vector"):
        parse_range(200, json.dumps(vector("1")).encode())
    with pytest.raises(ProbeError, match="cut at"):
        parse_range(200, body[:10], truncated=True)
    assert [duration(s) for s in (5, 60, 2.5, 0.1)] == ["5s", "60s", "2500ms", "100ms"]
    with pytest.raises(ValueError):
        duration(0.0001)
    assert (
        render("x{$selector}[$step] $interval $window $other", selector='a="b"', step="5s", interval="60s")
        == 'x{a="b"}[5s] 60s $window $other'
    )
