"""The monitoring judges and parsers, pure: Prometheus API answers (as Prometheus 2.x writes them) in, one Finding out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from releasegate._exceptions import ProbeError
from releasegate.probes import monitoring
from releasegate.probes.monitoring import AlertRule, ScrapeTarget

SERVER = "http://prometheus.test:9090"


def api(data: Any, *, status: str = "success") -> bytes:
    return json.dumps({"status": status, "data": data}).encode()


def active(job: str, instance: str, health: str, last_error: str = "") -> dict[str, Any]:
    return {
        "discoveredLabels": {"__address__": instance, "job": job},
        "labels": {"instance": instance, "job": job},
        "scrapePool": job,
        "scrapeUrl": f"https://{instance}/metrics",
        "globalUrl": f"https://{instance}/metrics",
        "lastError": last_error,
        "lastScrape": "2026-11-26T10:00:00.5Z",
        "lastScrapeDuration": 0.003,
        "health": health,
        "scrapeInterval": "1s",
        "scrapeTimeout": "1s",
    }


def target(job: str, instance: str, health: str, last_error: str = "") -> ScrapeTarget:
    return ScrapeTarget(job, job, instance, f"https://{instance}/metrics", health, last_error, "2026-11-26T10:00:00.5Z")


def test_targets_are_parsed_from_the_active_list() -> None:
    body = api(
        {"activeTargets": [active("api", "app1:443", "up"), active("api", "app2:443", "down", "connection refused")], "droppedTargets": []}
    )
    found = monitoring.parse_targets(200, body)
    assert [(t.job, t.instance, t.health, t.last_error) for t in found] == [
        ("api", "app1:443", "up", ""),
        ("api", "app2:443", "down", "connection refused"),
    ]


def test_every_job_up_passes() -> None:
    found = {"api": [target("api", "app1:443", "up"), target("api", "app2:443", "up")], "worker": [target("worker", "w1:9100", "up")]}
    finding = monitoring.judge_targets(["api", "worker"], found, server=SERVER)
    assert (finding.outcome, finding.summary) == ("passed", "2 jobs, 3 targets, all up")
    assert finding.observed == {"api": "2/2 up", "worker": "1/1 up"}


def test_a_down_target_fails_with_its_last_error() -> None:
    found = {"api": [target("api", "app1:443", "up"), target("api", "app2:443", "down", 'Get "https://app2/metrics": connection refused')]}
    finding = monitoring.judge_targets(["api"], found, server=SERVER)
    assert finding.outcome == "failed"
    assert finding.summary == 'api app2:443 down: Get "https://app2/metrics": connection refused'
    assert finding.evidence["jobs"]["api"]["down"] == 1 and finding.observed == {"api": "1/2 up"}


def test_a_job_without_targets_fails() -> None:
    finding = monitoring.judge_targets(["api", "db"], {"api": [target("api", "a:1", "up")]}, server=SERVER)
    assert (finding.outcome, finding.summary) == ("failed", "no active targets for job db (is it in scrape_configs?)")


def test_a_target_not_scraped_yet_cannot_be_judged() -> None:
    finding = monitoring.judge_targets(["api"], {"api": [target("api", "a:1", "up"), target("api", "b:1", "unknown")]}, server=SERVER)
    assert finding.outcome == "error" and finding.summary.startswith("not scraped yet (health unknown): api b:1")


def rule(name: str, *, health: str = "ok", state: str = "inactive", last_error: str = "", kind: str = "alerting") -> dict[str, Any]:
    return {
        "name": name,
        "query": "up == 0",
        "duration": 60,
        "labels": {"severity": "page"},
        "annotations": {},
        "alerts": [],
        "health": health,
        "lastError": last_error,
        "state": state,
        "type": kind,
        "lastEvaluation": "2026-11-26T10:00:00Z",
        "evaluationTime": 0.0001,
    }


def groups(*rules: dict[str, Any]) -> bytes:
    return api({"groups": [{"name": "slo", "file": "/etc/prometheus/rules/slo.yml", "rules": list(rules), "interval": 15}]})


def test_alert_rules_are_parsed_and_recording_rules_left_out() -> None:
    body = groups(rule("HighErrorRate", state="firing"), rule("job:errors:rate5m", kind="recording"))
    assert monitoring.parse_alert_rules(200, body) == [
        AlertRule("HighErrorRate", "slo", "/etc/prometheus/rules/slo.yml", "firing", "ok", "")
    ]


def test_loaded_rules_pass_and_report_their_state() -> None:
    rules = monitoring.parse_alert_rules(200, groups(rule("HighErrorRate", state="firing"), rule("LatencySLOBreach")))
    finding = monitoring.judge_alert_rules(["HighErrorRate", "LatencySLOBreach"], rules, server=SERVER)
    assert (finding.outcome, finding.summary) == ("passed", "2 alert rules loaded; firing now: HighErrorRate")
    assert finding.observed == {"HighErrorRate": "firing/ok", "LatencySLOBreach": "inactive/ok"}


def test_a_missing_rule_fails() -> None:
    rules = monitoring.parse_alert_rules(200, groups(rule("HighErrorRate")))
    finding = monitoring.judge_alert_rules(["HighErrorRate", "CertificateExpiringSoon"], rules, server=SERVER)
    assert (finding.outcome, finding.summary) == ("failed", "not loaded: CertificateExpiringSoon")
    assert finding.observed["CertificateExpiringSoon"] == "not loaded"


def test_a_rule_that_fails_to_evaluate_fails() -> None:
    error = "vector contains metrics with the same labelset after applying alert labels"
    rules = monitoring.parse_alert_rules(200, groups(rule("HighErrorRate", health="err", last_error=error)))
    finding = monitoring.judge_alert_rules(["HighErrorRate"], rules, server=SERVER)
    assert finding.outcome == "failed"
    assert finding.summary == f"HighErrorRate (slo) fails to evaluate: {error}"


@pytest.mark.parametrize(
    ("body", "truncated", "cause"),
    [
        (b"<html>502 Bad Gateway</html>", False, "HTTP 502, not a Prometheus API answer (not JSON)"),
        (json.dumps({"status": "error", "errorType": "bad_data", "error": "invalid parameter"}).encode(), False, "Prometheus refused"),
        (api({"activeTargets": []}), True, "the answer was cut at"),
        (b"[1]", False, "HTTP 502, not a Prometheus API answer (a JSON list)"),
        (api({"nothing": 1}), False, "the targets answer has no activeTargets list"),
    ],
)
def test_an_answer_that_is_not_a_prometheus_one_cannot_be_judged(body: bytes, truncated: bool, cause: str) -> None:
    with pytest.raises(ProbeError) as raised:
        monitoring.parse_targets(502, body, truncated=truncated)
    assert str(raised.value).startswith(cause), str(raised.value)


def test_the_urls_ask_for_active_targets_of_one_job_and_alerting_rules() -> None:
    assert monitoring.targets_url(SERVER + "/", "api server") == f"{SERVER}/api/v1/targets?state=active&scrapePool=api+server"
    assert monitoring.rules_url(SERVER) == f"{SERVER}/api/v1/rules?type=alert"
