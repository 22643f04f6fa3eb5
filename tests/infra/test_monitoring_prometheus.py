"""Fixture proofs of the monitoring checks against a real Prometheus, through the gate itself.

Real component (Debian package ``prometheus``; skipped locally without it, a failure under
RELEASEGATE_REQUIRE_REAL=1). One Prometheus per module (per xdist worker), on a free loopback
port, with a config written here: scrape jobs and, for the rules, a ``rule_files``
entry, which tests/slo/prometheus_server.py's config does not have. It reuses that harness's
start, readiness wait and stop. Scraped are a live reference deployment's ``/metrics`` (https,
its own CA) and a loopback port that is bound but not listening (connection refused).

The gate runs ``releasegate run --stage pre-deploy --only infra.monitoring.<x>`` in-process
against a target naming that Prometheus: same CLI, plugin, check file, probe and judge.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from real import require_binary
from releasegate.cli import main
from releasegate.reference import server
from releasegate.reference.settings import ServiceSettings
from slo.prometheus_server import RunningPrometheus, start_ready, stop

pytestmark = pytest.mark.real

ALERTS = ("HighErrorRate", "LatencySLOBreach", "CertificateExpiringSoon")
RULES = {
    "HighErrorRate": 'sum(rate(http_requests_total{status=~"5.."}[1m])) / sum(rate(http_requests_total[1m])) > 0.01',
    "LatencySLOBreach": "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket[1m]))) > 0.2",
    # Stands in for a certificate exporter's metric (the reference has none): never fires.
    "CertificateExpiringSoon": 'absent(up{job="reference"})',
}
TIMEOUT_S = 20.0


def write_rules(path: Path, rules: dict[str, str]) -> None:
    groups = [{"name": "releasegate", "rules": [{"alert": name, "expr": expr, "for": "1m"} for name, expr in rules.items()]}]
    path.write_text(yaml.safe_dump({"groups": groups}), encoding="utf-8")


@dataclass(frozen=True)
class Prometheus:
    running: RunningPrometheus
    process: subprocess.Popen[bytes]
    rules_path: Path

    def write_rules(self, rules: dict[str, str]) -> None:
        write_rules(self.rules_path, rules)

    def reload(self) -> None:
        self.process.send_signal(signal.SIGHUP)

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(self.running.url + path, timeout=5) as answer:  # noqa: S310 - loopback http
            return json.load(answer)["data"]

    def wait_for(self, what: str, predicate: Any) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"Prometheus: {what} not seen within {TIMEOUT_S:g} s; log:\n{self.running.log()}")
            time.sleep(0.1)

    def target_health(self) -> dict[str, str]:
        return {t["scrapePool"]: t["health"] for t in self.api("/api/v1/targets?state=active")["activeTargets"]}

    def alert_names(self) -> set[str]:
        return set(self.alert_health())

    def alert_health(self) -> dict[str, str]:
        return {rule["name"]: rule["health"] for group in self.api("/api/v1/rules?type=alert")["groups"] for rule in group["rules"]}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[server.RunningService]:
    with server.start(ServiceSettings(data_dir=tmp_path_factory.mktemp("reference"))) as service:
        yield service


@pytest.fixture(scope="module")
def closed_port() -> Iterator[int]:
    """A loopback port bound but never listening: connecting is refused, and no one else can take it meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def config(reference: server.RunningService, closed_port: int) -> str:
    document = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": ["rules.yml"],
        "scrape_configs": [
            {
                "job_name": "reference",
                "scheme": "https",
                "tls_config": {"ca_file": str(reference.ca_path), "server_name": "localhost"},
                "static_configs": [{"targets": [reference.base_url.removeprefix("https://")]}],
            },
            {"job_name": "closed", "static_configs": [{"targets": [f"127.0.0.1:{closed_port}"]}]},
        ],
    }
    return yaml.safe_dump(document)


@contextmanager
def prometheus(workdir: Path, reference: server.RunningService, closed_port: int) -> Iterator[Prometheus]:
    """A Prometheus scraping both jobs with all ALERTS loaded; both jobs scraped once before it is yielded."""
    binary = require_binary("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "prometheus.yml"
    path.write_text(config(reference, closed_port), encoding="utf-8")
    write_rules(workdir / "rules.yml", RULES)
    running, process = start_ready(binary, path, workdir)
    live = Prometheus(running, process, workdir / "rules.yml")
    try:
        live.wait_for("both jobs scraped", lambda: live.target_health() == {"reference": "up", "closed": "down"})
        live.wait_for("the alert rules", lambda: live.alert_names() == set(ALERTS))
        yield live
    finally:
        stop(process)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, reference: server.RunningService, closed_port: int) -> Iterator[Prometheus]:
    # Prometheus applies scrape targets about 5 s after it starts: one start per module, not per test.
    with prometheus(tmp_path_factory.mktemp("prometheus"), reference, closed_port) as started:
        yield started


@pytest.fixture
def rules(live: Prometheus) -> Iterator[Prometheus]:
    """The module's Prometheus, for a test that changes its rules file: put back afterwards."""
    yield live
    live.write_rules(RULES)
    live.reload()
    live.wait_for("the rules restored", lambda: live.alert_health() == dict.fromkeys(ALERTS, "ok"))


def gate(folder: Path, check_id: str, prometheus_url: str, monitoring: dict[str, list[str]]) -> dict[str, Any]:
    """The row of ``check_id`` in a pre-deploy run against a target naming this Prometheus."""
    folder.mkdir(parents=True)
    (folder / "target.yaml").write_text(
        yaml.safe_dump({"name": "monitoring-proof", "base_url": "http://127.0.0.1:9", "prometheus": {"url": prometheus_url}}),
        encoding="utf-8",
    )
    policy = {"probe": {"timeout_s": 5, "retry": {"timeout_s": 0}}, "thresholds": {"monitoring": monitoring}}
    (folder / "gates.yaml").write_text(yaml.safe_dump(policy), encoding="utf-8")
    report = folder / "report"
    argv = ["run", "--stage", "pre-deploy", "--target", str(folder / "target.yaml"), "--gates", str(folder / "gates.yaml")]
    code = main([*argv, "--only", check_id, "--report-dir", str(report)])
    verdict = json.loads((report / "verdict.json").read_text(encoding="utf-8"))
    assert verdict["exit_code"] == code
    (row,) = verdict["checks"]
    assert row["id"] == check_id
    return dict(row, decision=verdict["decision"])


def test_fixture_proof_scrape_target_down(tmp_path: Path, live: Prometheus, closed_port: int) -> None:
    url = live.running.url
    # Given a job scraping the live reference /metrics: the check passes
    healthy = gate(tmp_path / "healthy", "infra.monitoring.targets", url, {"jobs": ["reference"]})
    # When the policy also expects the job whose target is a closed port: it fails, naming it
    broken = gate(tmp_path / "broken", "infra.monitoring.targets", url, {"jobs": ["reference", "closed"]})
    assert (healthy["outcome"], healthy["decision"]) == ("passed", "pass"), healthy["summary"]
    assert healthy["summary"] == "1 job, 1 target, all up"
    assert (broken["outcome"], broken["decision"]) == ("failed", "rollback")
    assert broken["summary"].startswith(f"closed 127.0.0.1:{closed_port} down: ") and "connection refused" in broken["summary"]
    assert broken["observed"] == {"reference": "1/1 up", "closed": "0/1 up"}
    assert broken["evidence"]["jobs"]["closed"]["targets"][0]["health"] == "down"


def test_fixture_proof_alert_rule_missing(tmp_path: Path, rules: Prometheus) -> None:
    policy = {"alert_rules": list(ALERTS)}
    url = rules.running.url
    # Given a rules file with every named alert: the check passes and reports each rule's state
    healthy = gate(tmp_path / "healthy", "infra.monitoring.alert_rules", url, policy)
    # When the rules file loses one and Prometheus reloads it: the same policy fails, naming it
    rules.write_rules({name: expr for name, expr in RULES.items() if name != "CertificateExpiringSoon"})
    rules.reload()
    rules.wait_for("the rule gone", lambda: "CertificateExpiringSoon" not in rules.alert_names())
    broken = gate(tmp_path / "broken", "infra.monitoring.alert_rules", url, policy)
    assert (healthy["outcome"], healthy["decision"]) == ("passed", "pass"), healthy["summary"]
    assert set(healthy["observed"]) == set(ALERTS)
    assert all(state.split("/")[1] in ("ok", "unknown") for state in healthy["observed"].values())
    assert (broken["outcome"], broken["decision"]) == ("failed", "rollback")
    assert broken["summary"] == "not loaded: CertificateExpiringSoon"


def test_a_rule_that_fails_to_evaluate_fails_the_check(tmp_path: Path, rules: Prometheus) -> None:
    # Given an alert whose result has two series that differ only by name (an evaluation error)
    rules.write_rules({**RULES, "HighErrorRate": '{job="reference", __name__=~"up|scrape_samples_scraped"}'})
    rules.reload()
    rules.wait_for("the rule's evaluation error", lambda: rules.alert_health().get("HighErrorRate") == "err")
    row = gate(tmp_path / "gate", "infra.monitoring.alert_rules", rules.running.url, {"alert_rules": list(ALERTS)})
    assert row["outcome"] == "failed"
    assert row["summary"].startswith("HighErrorRate (releasegate) fails to evaluate: ")
    assert row["evidence"]["rules"]["HighErrorRate"][0]["health"] == "err"


def test_without_prometheus_or_policy_the_checks_skip_naming_the_key(tmp_path: Path) -> None:
    for check_id, key in (("infra.monitoring.targets", "jobs"), ("infra.monitoring.alert_rules", "alert_rules")):
        folder = tmp_path / check_id
        folder.mkdir()
        (folder / "target.yaml").write_text("name: t\nbase_url: http://127.0.0.1:9\n", encoding="utf-8")
        report = folder / "report"
        main(["run", "--stage", "pre-deploy", "--target", str(folder / "target.yaml"), "--only", check_id, "--report-dir", str(report)])
        (row,) = json.loads((report / "verdict.json").read_text(encoding="utf-8"))["checks"]
        assert (row["outcome"], row["summary"]) == ("skipped", "the target names no Prometheus (key: prometheus)")
        row = gate(folder / "empty", check_id, "http://127.0.0.1:9", {key: []})
        assert (row["outcome"], row["summary"].split(" (key")[1]) == ("skipped", f": thresholds.monitoring.{key})")
