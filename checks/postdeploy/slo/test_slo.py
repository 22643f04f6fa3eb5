"""Post-deploy SLOs: is the new release answering without errors, and fast enough?

One probing window (the target's ``slo`` plan: paced GETs, open loop) serves both checks: it
runs once per gate run, at the first SLO check, and is kept in the run's stash, so the service
is not probed twice and both checks judge the same requests. With ``prometheus`` in the target,
each check also judges its PromQL query from gates.yaml; with ``--baseline``, both compare
against the earlier verdict or against the baseline deployment probed in the same window.
"""

from __future__ import annotations

import pytest

from releasegate._exceptions import ProbeError
from releasegate.baseline import Baseline
from releasegate.config import Gates, LoadedTarget
from releasegate.plugin import CheckRecorder
from releasegate.probes import slo

_WINDOW = pytest.StashKey["slo.SloMeasurement | ProbeError"]()


def _window(
    check: CheckRecorder, config: pytest.Config, target: LoadedTarget, policy: Gates, baseline: Baseline | None
) -> slo.SloMeasurement:
    """The run's probing window: measured by the first SLO check, reused by the second."""
    if target.target.slo is None:
        pytest.skip("the target names no SLO probe plan (key: slo)")
    if _WINDOW not in config.stash:
        try:
            config.stash[_WINDOW] = slo.measure(target, policy, baseline)
        except ProbeError as exc:
            config.stash[_WINDOW] = exc  # the second check must not probe again just to fail the same way
    result = config.stash[_WINDOW]
    return check.measure(lambda: _raise_or_return(result))


def _raise_or_return(result: slo.SloMeasurement | ProbeError) -> slo.SloMeasurement:
    if isinstance(result, ProbeError):
        raise result
    return result


@pytest.mark.check("slo.error_rate")
def test_error_rate(
    check: CheckRecorder, request: pytest.FixtureRequest, target: LoadedTarget, policy: Gates, baseline: Baseline | None
) -> None:
    window = _window(check, request.config, target, policy, baseline)
    reading = slo.prometheus_reading(target, policy, "error_rate")
    check.conclude(slo.judge_error_rate(window.observation, policy.thresholds.slo, window.baseline, reading))


@pytest.mark.check("slo.latency")
def test_latency(
    check: CheckRecorder, request: pytest.FixtureRequest, target: LoadedTarget, policy: Gates, baseline: Baseline | None
) -> None:
    window = _window(check, request.config, target, policy, baseline)
    reading = slo.prometheus_reading(target, policy, "latency_p95_seconds")
    check.conclude(slo.judge_latency(window.observation, policy.thresholds.slo, window.baseline, reading))
