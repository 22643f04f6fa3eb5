"""The Prometheus half of the SLO checks against a real Prometheus scraping the reference.

Real component (Debian package ``prometheus``): started by the test on a free loopback port with a
temporary config that scrapes the healthy and the error-burst reference deployments over https
every second (one job each, so the target's ``prometheus.selector`` picks one). The gate then runs
the PromQL from gates.yaml: healthy passes; error-burst fails slo.error_rate with the Prometheus
figure in its evidence. Skipped locally without the binary, a failure under RELEASEGATE_REQUIRE_REAL=1.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import prometheus_server
import pytest
from prometheus_server import RunningPrometheus, ScrapeJob, running_prometheus
from slo_reference import SLO_PLAN, Reference

from real import require_binary
from releasegate.cli import main
from releasegate.config import PrometheusQueries, SloProbeSettings, SloThresholds
from releasegate.probes import slo
from releasegate.probes.http import HttpSettings, ssl_context
from releasegate.probes.prometheus import render

pytestmark = pytest.mark.real

WINDOW = "30s"
# The shipped query: `or vector(0)` makes "no 5xx series" (a healthy service) a zero rate.
ERROR_RATE = SloThresholds().prometheus.error_rate
GATES = f"""\
probe: {{timeout_s: 5, retry: {{timeout_s: 0}}}}
thresholds:
  slo:
    max_error_rate: 0.01
    p95_ms: 200
    prometheus:
      window: {WINDOW}
      error_rate: '{ERROR_RATE}'
"""


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory, healthy: Reference, error_burst: Reference) -> Iterator[RunningPrometheus]:
    binary = require_binary("prometheus")
    jobs = [ScrapeJob(ref.name, ref.host_port, ref.service.ca_path) for ref in (healthy, error_burst)]
    with running_prometheus(binary, jobs, tmp_path_factory.mktemp("prometheus")) as server:
        # Given traffic on both services that Prometheus has scraped (rate() needs two scrapes of it)
        plan = SloProbeSettings(paths=["/api/v1/me"], requests=20, window_s=1.0)
        slo.probe([_endpoint(healthy), _endpoint(error_burst)], plan)
        burst = render(ERROR_RATE, selector='job="error-burst"', window=WINDOW)
        server.wait_until(burst, lambda value: value > 0.01, timeout_s=20, what="the error-burst 5xx rate")
        yield server


def _endpoint(ref: Reference) -> slo.Endpoint:
    settings = HttpSettings(timeout_s=5, max_body_bytes=1 << 20, verify=ssl_context(ref.service.ca_path))
    return slo.Endpoint(ref.name, ref.service.base_url, settings, ref.token)


def gate(tmp_path: Path, target: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    gates = tmp_path / "gates.yaml"
    gates.write_text(GATES, encoding="utf-8")
    report = tmp_path / "report"
    code = main(
        ["run", "--stage", "post-deploy", "--target", str(target), "--gates", str(gates), "--report-dir", str(report), "--only", "slo"]
    )
    verdict: dict[str, Any] = json.loads((report / "verdict.json").read_text(encoding="utf-8"))
    assert verdict["exit_code"] == code
    return verdict, {row["id"]: row for row in verdict["checks"]}


def prometheus_key(server: RunningPrometheus, job: str) -> str:
    return f"{{url: '{server.url}', selector: 'job=\"{job}\"'}}"


def test_healthy_passes_with_the_prometheus_figures_beside_the_probes(
    tmp_path: Path, prometheus: RunningPrometheus, healthy: Reference
) -> None:
    target = healthy.write_target(tmp_path, slo=SLO_PLAN, prometheus=prometheus_key(prometheus, "healthy"))
    verdict, rows = gate(tmp_path, target)
    assert verdict["decision"] == "promote", verdict["reasons"]
    error_rate, latency = rows["slo.error_rate"], rows["slo.latency"]
    # The PromQL ran with the target's selector and gates.yaml's window
    assert (
        'job="healthy"' in error_rate["evidence"]["prometheus"]["query"] and f"[{WINDOW}]" in error_rate["evidence"]["prometheus"]["query"]
    )
    assert error_rate["evidence"]["prometheus"]["value"] == 0.0
    # The shipped latency query (histogram_quantile), converted to ms and marked as an estimate
    assert latency["evidence"]["prometheus"]["query"] == render(
        PrometheusQueries().latency_p95_seconds, selector='job="healthy"', window=WINDOW
    )
    assert 0 < latency["evidence"]["prometheus"]["p95_ms"] < 200
    assert "interpolates" in latency["evidence"]["prometheus"]["note"]


def test_error_burst_fails_the_error_rate_with_the_prometheus_figure_in_evidence(
    tmp_path: Path, prometheus: RunningPrometheus, error_burst: Reference
) -> None:
    target = error_burst.write_target(tmp_path, slo=SLO_PLAN, prometheus=prometheus_key(prometheus, "error-burst"))
    verdict, rows = gate(tmp_path, target)
    error_rate = rows["slo.error_rate"]
    assert error_rate["outcome"] == "failed"
    seen_by_prometheus = error_rate["evidence"]["prometheus"]["value"]
    assert 0.01 < seen_by_prometheus <= 0.5
    assert "Prometheus error rate" in error_rate["summary"]
    assert rows["slo.latency"]["outcome"] == "passed"
    assert verdict["decision"] == "rollback"


def test_a_port_taken_before_prometheus_binds_it_is_retried_once_on_another(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given free_port() hands out a port that another process takes before Prometheus binds it
    binary = require_binary("prometheus")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = iter([taken.getsockname()[1], prometheus_server.free_port()])
        monkeypatch.setattr(prometheus_server, "free_port", lambda: next(ports))
        # Then the second start, on another port, is the one that runs
        with running_prometheus(binary, [], tmp_path / "retry") as server:
            assert server.url != f"http://127.0.0.1:{taken.getsockname()[1]}"
            assert server.query("vector(1)")["status"] == "success"
