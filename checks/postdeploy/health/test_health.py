"""Post-deploy health: is the new release alive, ready, healthy inside, and the right one?

Each check probes over the network only, retries while the deployment converges (gates.yaml
``probe.retry``), and concludes with one finding: passed, warned, failed or error.
"""

from __future__ import annotations

import pytest

from releasegate.config import Gates, LoadedTarget
from releasegate.plugin import CheckRecorder
from releasegate.probes import health
from releasegate.probes.http import HttpSettings, judged_get


def _url(target: LoadedTarget, *keys: str) -> str:
    """base_url + the first health path the target names among ``keys``; skip when it names none."""
    paths = target.target.health
    for key in keys:
        path = getattr(paths, key) if paths is not None else None
        if path is not None:
            return target.target.base_url + str(path)
    pytest.skip(f"the target names no {' or '.join('health.' + k for k in keys)} path")


@pytest.mark.check("health.liveness")
def test_liveness(check: CheckRecorder, target: LoadedTarget, policy: Gates, http_settings: HttpSettings) -> None:
    budget = policy.thresholds.health.max_latency_ms
    judge = lambda answer: health.judge_endpoint(answer, max_latency_ms=budget)  # noqa: E731
    check.conclude(judged_get(_url(target, "liveness"), http_settings, judge, retry=policy.probe.retry))


@pytest.mark.check("health.readiness")
def test_readiness(check: CheckRecorder, target: LoadedTarget, policy: Gates, http_settings: HttpSettings) -> None:
    budget = policy.thresholds.health.max_latency_ms
    judge = lambda answer: health.judge_endpoint(answer, max_latency_ms=budget)  # noqa: E731
    check.conclude(judged_get(_url(target, "readiness"), http_settings, judge, retry=policy.probe.retry))


@pytest.mark.check("health.deep")
def test_deep(check: CheckRecorder, target: LoadedTarget, policy: Gates, http_settings: HttpSettings) -> None:
    check.conclude(judged_get(_url(target, "deep"), http_settings, health.judge_deep, retry=policy.probe.retry))


@pytest.mark.check("health.release_id")
def test_release_id(
    check: CheckRecorder, target: LoadedTarget, policy: Gates, http_settings: HttpSettings, expected_release: str | None
) -> None:
    if expected_release is None:
        pytest.skip("no expected release: set expected_release in the target or pass --expect-release")
    url = _url(target, "version", "deep")
    judge = lambda answer: health.judge_release(answer, expected_release)  # noqa: E731
    check.conclude(judged_get(url, http_settings, judge, retry=policy.probe.retry))
