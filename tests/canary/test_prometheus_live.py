"""The canary stage against a real Prometheus scraping a baseline and canaries on loopback.

Real component (Debian package ``prometheus``, started by tests/slo/prometheus_server.py on a free
loopback port, scraping every second): one healthy baseline and three canaries, each its own
reference service with its own job label: ``slow`` (fault slow-api, +300 ms per API answer),
``twin`` (healthy: the A/A case) and ``idle`` (healthy, but no traffic reaches it). The test
itself sends the traffic (the same GETs to the baseline and to whichever canary should get any,
interleaved), so the only thing that differs between the sides is the release.

First the collector alone: the range query (latency per step) and the instant counts answer for
both sides, and a side without traffic has no data. Then the stage end to end through
``releasegate run --stage canary`` with a policy whose metrics all come from Prometheus: slow-api
rolls back, A/A promotes, and a canary that receives no traffic holds (no data is neither a pass
nor a fail). Skipped locally without the binary, a failure under RELEASEGATE_REQUIRE_REAL=1.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_collect import TOKEN_ENV, Fleet, latency, rate, running_fleet

from real import require_binary
from releasegate.canary.collect import CanaryCollector
from releasegate.canary.model import LatencySamples, RateSamples
from releasegate.cli import main
from releasegate.config import Gates, LoadedTarget, SloProbeSettings, load_target
from releasegate.probes import slo
from releasegate.probes.http import HttpSettings, ssl_context
from releasegate.reference.settings import ServiceSettings
from slo.prometheus_server import RunningPrometheus, ScrapeJob, running_prometheus

pytestmark = pytest.mark.real

INTERVAL_S = 4.0
# Prometheus scrapes every second; rate() needs two scrapes inside its window, so a step (and the
# window of each point, [$step]) of two seconds: two points per side per interval, none shared.
STEP_S = 2.0
API = 'route=~"/api/.*"'  # not /metrics: Prometheus' own scrapes are traffic the reference counts too
LATENCY_QUERY = (
    f"sum(rate(http_request_duration_seconds_sum{{{API},$selector}}[$step]))"
    f" / sum(rate(http_request_duration_seconds_count{{{API},$selector}}[$step]))"
)
ERRORS_QUERY = f'sum(increase(http_requests_total{{{API},status=~"5..",$selector}}[$interval]))'
TOTAL_QUERY = f"sum(increase(http_requests_total{{{API},$selector}}[$interval]))"
# Three looks; alpha 0.05 shared evenly (0.0167 a look): with two points a side per interval, four
# canary points above four baseline points (exact Mann-Whitney p = 1/70) roll back at the second
# look (or, if a point is missing, at the third). The latency must also be over twice the baseline's
# (slow-api's is ~200x): an A/A pair whose points happen to fall on one side cannot get there.
POLICY: dict[str, Any] = {
    "interval_s": INTERVAL_S,
    "max_intervals": 3,
    "alpha": 0.05,
    "looks": "bonferroni",
    "step_s": STEP_S,
    "metrics": [
        {
            "name": "api_latency",
            "kind": "latency",
            "source": "prometheus",
            "query": LATENCY_QUERY,
            "direction": "increase",
            "allowed_increase": 2.0,
            "critical": True,
            "weight": 50,
            "min_samples": 4,
        },
        {
            "name": "api_errors",
            "kind": "rate",
            "source": "prometheus",
            "errors_query": ERRORS_QUERY,
            "total_query": TOTAL_QUERY,
            "direction": "increase",
            "allowed_increase": 2.0,
            "critical": True,
            "weight": 50,
            "min_samples": 20,
        },
    ],
}
# The test's own traffic: 8 GETs per side per second, under the reference's per-user limit (20/s).
TRAFFIC = SloProbeSettings(paths=["/api/v1/me", "/api/v1/conversations"], requests=8, window_s=1.0)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    folder = tmp_path_factory.mktemp("fleet")
    sides = {
        "baseline": ServiceSettings(data_dir=folder / "baseline"),
        "slow": ServiceSettings(data_dir=folder / "slow", faults=frozenset({"slow-api"})),
        "twin": ServiceSettings(data_dir=folder / "twin"),
        "idle": ServiceSettings(data_dir=folder / "idle"),
    }
    with running_fleet(folder, sides) as running:
        yield running


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory, fleet: Fleet) -> Iterator[RunningPrometheus]:
    binary = require_binary("prometheus")
    jobs = [ScrapeJob(name, service.base_url.removeprefix("https://"), service.ca_path) for name, service in fleet.services.items()]
    with running_prometheus(binary, jobs, tmp_path_factory.mktemp("prometheus")) as server:
        yield server


@pytest.fixture(scope="module")
def traffic(fleet: Fleet, prometheus: RunningPrometheus) -> Iterator[None]:
    """The baseline, slow and twin get traffic for the whole module; idle never does."""
    with sending(fleet, ["baseline", "slow", "twin"], prometheus):
        yield


@contextmanager
def sending(fleet: Fleet, sides: Sequence[str], prometheus: RunningPrometheus) -> Iterator[None]:
    """GETs to ``sides`` (interleaved, open loop) until the block ends; yields once Prometheus has seen them."""
    token = os.environ[TOKEN_ENV]
    settings = HttpSettings(timeout_s=5, max_body_bytes=1 << 20, verify=ssl_context(fleet.ca_bundle))
    endpoints = [slo.Endpoint(side, fleet.services[side].base_url, settings, token) for side in sides]
    stop = threading.Event()
    failures: list[BaseException] = []

    def send() -> None:
        while not stop.is_set():  # bounded: each round is one 1 s window, and the block ends
            try:
                slo.probe(endpoints, TRAFFIC, budget_s=10)
            except BaseException as exc:  # noqa: BLE001 - reported by the test, not lost in a thread
                failures.append(exc)
                return

    thread = threading.Thread(target=send, name="canary-test-traffic", daemon=True)
    thread.start()
    try:
        for side in sides:
            query = f'sum(rate(http_requests_total{{{API},job="{side}"}}[{STEP_S:g}s]))'
            prometheus.wait_until(query, lambda value: value > 0, timeout_s=20, what=f"traffic to {side}")
        yield
    finally:
        stop.set()
        thread.join(timeout=15)
    assert not failures, failures


def write_target(folder: Path, fleet: Fleet, prometheus: RunningPrometheus, canary: str) -> Path:
    section = {
        "baseline_url": fleet.services["baseline"].base_url,
        "canary_url": fleet.services[canary].base_url,
        "prometheus": {"url": prometheus.url, "baseline_selector": 'job="baseline"', "canary_selector": f'job="{canary}"'},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "target.yaml"
    path.write_text(
        f"name: canary-{canary}\n"
        f"base_url: {fleet.services[canary].base_url}\n"
        f"tls: {{ca_bundle: {fleet.ca_bundle}}}\n"
        f"auth: {{token_env: {TOKEN_ENV}}}\n"
        f"canary: {json.dumps(section)}\n",
        encoding="utf-8",
    )
    return path


def policy() -> Gates:
    return Gates.model_validate({"probe": {"timeout_s": 5, "retry": {"timeout_s": 0}}, "canary": POLICY})


# --------------------------------------------------------------------------- the collector


def collect_once(loaded: LoadedTarget) -> tuple[tuple[LatencySamples, LatencySamples], tuple[RateSamples, RateSamples], list[str]]:
    collector = CanaryCollector(loaded, policy())
    collector.open(10)
    samples = collector.collect(1, INTERVAL_S, budget_s=30)
    collector.close()
    problems = [p for m in samples.metrics.values() for p in m.problems]
    return latency(samples, "api_latency"), rate(samples, "api_errors"), problems


def test_range_and_instant_queries_answer_for_both_sides(
    tmp_path: Path, fleet: Fleet, prometheus: RunningPrometheus, traffic: None
) -> None:
    # Given traffic to the baseline and the slow-api canary, scraped by Prometheus
    loaded = load_target(write_target(tmp_path, fleet, prometheus, "slow"))
    # When one interval is collected from Prometheus alone
    (base_latency, slow_latency), (base_rate, slow_rate), problems = collect_once(loaded)
    print(
        f"Prometheus points per interval: baseline {base_latency.n} (dropped {base_latency.dropped}), canary {slow_latency.n}; "
        f"mean latency per step (s): baseline {[round(v, 4) for v in base_latency.values]}, "
        f"slow-api {[round(v, 4) for v in slow_latency.values]}; requests: baseline {base_rate}, canary {slow_rate}"
    )
    # Then each side has its latency points (one per step of the interval), far apart
    assert 1 <= base_latency.n <= INTERVAL_S / STEP_S and 1 <= slow_latency.n <= INTERVAL_S / STEP_S, problems
    assert max(base_latency.values) < 0.1 < 0.25 < min(slow_latency.values)
    # And its request counts over the interval (about 8 a second), with no error
    for side in (base_rate, slow_rate):
        assert side.events == 0 and 15 <= side.trials <= 60, problems


def test_a_side_without_traffic_has_no_data(tmp_path: Path, fleet: Fleet, prometheus: RunningPrometheus, traffic: None) -> None:
    # Given traffic to the baseline; the idle canary is scraped but nobody calls its API
    loaded = load_target(write_target(tmp_path, fleet, prometheus, "idle"))
    (base_latency, idle_latency), (base_rate, idle_rate), problems = collect_once(loaded)
    # Then the baseline has data and the idle canary has none: no series, not zeros
    assert base_latency.n >= 1 and base_rate.trials > 0
    assert idle_latency == LatencySamples(()) and idle_rate == RateSamples(0, 0)
    assert any(p.startswith("canary: Prometheus: no series matched") for p in problems)
    assert any(p.startswith("canary: Prometheus total: no series matched") for p in problems)


# --------------------------------------------------------------------------- the stage, end to end


def run_stage(folder: Path, target: Path) -> tuple[int, dict[str, Any]]:
    gates = folder / "gates.yaml"
    gates.write_text(yaml.safe_dump({"probe": {"timeout_s": 5, "retry": {"timeout_s": 0}}, "canary": POLICY}), encoding="utf-8")
    report = folder / "report"
    code = main(["run", "--stage", "canary", "--target", str(target), "--gates", str(gates), "--report-dir", str(report)])
    verdict: dict[str, Any] = json.loads((report / "verdict.json").read_text(encoding="utf-8"))
    assert verdict["exit_code"] == code
    assert list(report.rglob("samples.json")), "every canary run saves its samples"
    print(f"{target.parent.name}: exit {code}, {verdict['decision']}: {verdict['reasons']}")
    return code, verdict


def test_slow_api_canary_is_rolled_back(tmp_path: Path, fleet: Fleet, prometheus: RunningPrometheus, traffic: None) -> None:
    code, verdict = run_stage(tmp_path, write_target(tmp_path, fleet, prometheus, "slow"))
    assert (code, verdict["decision"]) == (1, "rollback"), verdict["reasons"]
    assert any("api_latency" in reason for reason in verdict["reasons"])


def test_a_canary_like_its_baseline_is_promoted(tmp_path: Path, fleet: Fleet, prometheus: RunningPrometheus, traffic: None) -> None:
    code, verdict = run_stage(tmp_path, write_target(tmp_path, fleet, prometheus, "twin"))
    assert (code, verdict["decision"]) == (0, "promote"), verdict["reasons"]


def test_a_canary_that_receives_no_traffic_holds(tmp_path: Path, fleet: Fleet, prometheus: RunningPrometheus, traffic: None) -> None:
    # Given the baseline's traffic, and none at all for the canary
    code, verdict = run_stage(tmp_path, write_target(tmp_path, fleet, prometheus, "idle"))
    # No data is neither a pass nor a fail: a human decides
    assert (code, verdict["decision"]) == (2, "hold"), verdict["reasons"]
