"""Post-deploy health: is the new release alive, ready, healthy inside, and the right one?

Each check probes over the network only, retries while the deployment converges (gates.yaml
``probe.retry``), and concludes with one finding: passed, warned, failed or error.
"""

from __future__ import annotations

import pytest

from releasegate._exceptions import ProbeError
from releasegate.config import Gates, LoadedTarget
from releasegate.plugin import CheckRecorder
from releasegate.probes import health, http
from releasegate.probes.retry import until_passed
from releasegate.results import Finding


def _path(target: LoadedTarget, key: str) -> str:
    paths = target.target.health
    value = getattr(paths, key) if paths is not None else None
    if value is None:
        pytest.skip(f"the target names no health.{key} path")
    return str(value)


def _probe(url: str, settings: http.HttpSettings, judge) -> Finding:  # type: ignore[no-untyped-def]
    """One attempt: an unmeasurable answer is an error finding, never a pass."""
    try:
        observation = http.get(url, settings)
    except ProbeError as exc:
        return Finding("error", str(exc), observed=type(exc).__name__, evidence={"url": url})
    return judge(observation)


@pytest.mark.check("health.liveness")
def test_liveness(check: CheckRecorder, target: LoadedTarget, policy: Gates, http_settings: http.HttpSettings) -> None:
    url = target.target.base_url + _path(target, "liveness")
    budget = policy.thresholds.health.max_latency_ms
    check.conclude(
        until_passed(lambda: _probe(url, http_settings, lambda o: health.judge_endpoint(o, max_latency_ms=budget)), policy.probe.retry)
    )


@pytest.mark.check("health.readiness")
def test_readiness(check: CheckRecorder, target: LoadedTarget, policy: Gates, http_settings: http.HttpSettings) -> None:
    url = target.target.base_url + _path(target, "readiness")
    budget = policy.thresholds.health.max_latency_ms
    check.conclude(
        until_passed(lambda: _probe(url, http_settings, lambda o: health.judge_endpoint(o, max_latency_ms=budget)), policy.probe.retry)
    )


@pytest.mark.check("health.deep")
def test_deep(check: CheckRecorder, target: LoadedTarget, policy: Gates, http_settings: http.HttpSettings) -> None:
    url = target.target.base_url + _path(target, "deep")
    check.conclude(until_passed(lambda: _probe(url, http_settings, health.judge_deep), policy.probe.retry))


@pytest.mark.check("health.release_id")
def test_release_id(
    check: CheckRecorder, target: LoadedTarget, policy: Gates, http_settings: http.HttpSettings, expected_release: str | None
) -> None:
    if expected_release is None:
        pytest.skip("no expected release: set expected_release in the target or pass --expect-release")
    paths = target.target.health
    path = (paths.version or paths.deep) if paths is not None else None
    if path is None:
        pytest.skip("the target names neither health.version nor health.deep to read the release from")
    url = target.target.base_url + path
    check.conclude(
        until_passed(lambda: _probe(url, http_settings, lambda o: health.judge_release(o, expected_release)), policy.probe.retry)
    )
