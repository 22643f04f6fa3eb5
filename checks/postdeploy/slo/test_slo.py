"""Post-deploy SLOs: is the new release answering without errors, and fast enough?

One probing window (the target's ``slo`` plan: paced GETs, open loop) serves both checks: it
runs once per gate run, at the first SLO check, and is kept in the run's stash, so the service
is not probed twice and both checks judge the same requests. With ``prometheus`` in the target,
each check also judges its PromQL query from gates.yaml; with ``--baseline``, both compare
against the earlier verdict or against the baseline deployment probed in the same window.

The plan lives in the target and the policy in gates.yaml, so what cannot be checked when either
file is loaded is checked here, before a request is sent: a plan with fewer requests than the
policy's min_samples (every window would be inconclusive), and a window that does not fit in
what is left of the run's deadline. The probe itself is bounded by that remaining deadline.
"""

from __future__ import annotations

import time

import pytest

from releasegate._exceptions import ProbeError
from releasegate.baseline import Baseline
from releasegate.config import Gates, LoadedTarget, SloProbeSettings
from releasegate.plugin import CheckRecorder, gate_run
from releasegate.probes import slo
from releasegate.results import Finding

_WINDOW = pytest.StashKey["slo.SloMeasurement | ProbeError"]()


def _plan(check: CheckRecorder, target: LoadedTarget, policy: Gates) -> SloProbeSettings:
    """The target's probe plan; skip without one, error when it cannot give the policy enough samples."""
    plan = target.target.slo
    if plan is None:
        pytest.skip("the target names no SLO probe plan (key: slo)")
    minimum = policy.min_samples_of(check.id)
    if minimum is not None and plan.requests < minimum:
        reason = f"the target's slo.requests ({plan.requests}) is below the policy's min_samples for {check.id} ({minimum})"
        fix = f"raise slo.requests in the target to at least {minimum} (or lower min_samples in gates.yaml)"
        check.conclude(Finding("error", f"{reason}: every window would be inconclusive; {fix}", observed=reason, expected=fix))
    return plan


def _window(
    check: CheckRecorder, config: pytest.Config, plan: SloProbeSettings, target: LoadedTarget, policy: Gates, baseline: Baseline | None
) -> slo.SloMeasurement:
    """The run's probing window: measured by the first SLO check, reused by the second."""
    if _WINDOW not in config.stash:
        run = gate_run(config)
        remaining = None if run is None else run.deadline - time.monotonic()
        # The last requests of the window may take one probe timeout to answer.
        needed = plan.window_s + policy.probe.timeout_s
        try:
            if remaining is not None and needed > remaining:
                raise ProbeError(
                    f"slo.window_s ({plan.window_s:g} s) plus one probe timeout ({policy.probe.timeout_s:g} s) does not fit in "
                    f"what is left of the run's deadline ({max(remaining, 0.0):.1f} s): shorten slo.window_s in the target "
                    "or raise deadline_s in gates.yaml"
                )
            config.stash[_WINDOW] = slo.measure(target, policy, baseline, budget_s=remaining)
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
    plan = _plan(check, target, policy)
    window = _window(check, request.config, plan, target, policy, baseline)
    reading = slo.prometheus_reading(target, policy, "error_rate")
    check.conclude(slo.judge_error_rate(window.observation, policy.thresholds.slo, window.baseline, reading))


@pytest.mark.check("slo.latency")
def test_latency(
    check: CheckRecorder, request: pytest.FixtureRequest, target: LoadedTarget, policy: Gates, baseline: Baseline | None
) -> None:
    plan = _plan(check, target, policy)
    window = _window(check, request.config, plan, target, policy, baseline)
    reading = slo.prometheus_reading(target, policy, "latency_p95_seconds")
    check.conclude(slo.judge_latency(window.observation, policy.thresholds.slo, window.baseline, reading))
