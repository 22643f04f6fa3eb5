"""Pre-deploy monitoring: the Prometheus watching the deployment scrapes every expected job, and
the alerting rules gates.yaml names are loaded and evaluate.

Through the target's ``prometheus.url`` (its trust anchors, never its token). Without
``prometheus`` in the target, or with an empty list in gates.yaml, the check skips naming the key.
"""

from __future__ import annotations

import ssl
from functools import partial

import pytest

from releasegate.config import Gates, LoadedTarget, PrometheusSettings
from releasegate.plugin import CheckRecorder
from releasegate.probes import monitoring
from releasegate.probes.http import HttpSettings, ssl_context


def _prometheus(target: LoadedTarget) -> PrometheusSettings:
    server = target.target.prometheus
    if server is None:
        pytest.skip("the target names no Prometheus (key: prometheus)")
    return server


def _settings(target: LoadedTarget, policy: Gates, server: PrometheusSettings) -> HttpSettings:
    verify: ssl.SSLContext | bool = ssl_context(target.ca_bundle) if server.url.startswith("https:") else True
    return HttpSettings(timeout_s=policy.probe.timeout_s, max_body_bytes=policy.probe.max_body_bytes, verify=verify)


@pytest.mark.check("infra.monitoring.targets")
def test_scrape_targets(check: CheckRecorder, target: LoadedTarget, policy: Gates) -> None:
    server = _prometheus(target)
    jobs = policy.thresholds.monitoring.jobs
    if not jobs:
        pytest.skip("gates.yaml names no scrape jobs (key: thresholds.monitoring.jobs)")
    settings = _settings(target, policy, server)
    found = {job: check.measure(partial(monitoring.read_targets, server.url, job, settings)) for job in jobs}
    check.conclude(monitoring.judge_targets(jobs, found, server=server.url))


@pytest.mark.check("infra.monitoring.alert_rules")
def test_alert_rules(check: CheckRecorder, target: LoadedTarget, policy: Gates) -> None:
    server = _prometheus(target)
    names = policy.thresholds.monitoring.alert_rules
    if not names:
        pytest.skip("gates.yaml names no alert rules (key: thresholds.monitoring.alert_rules)")
    settings = _settings(target, policy, server)
    rules = check.measure(lambda: monitoring.read_alert_rules(server.url, settings))
    check.conclude(monitoring.judge_alert_rules(names, rules, server=server.url))
