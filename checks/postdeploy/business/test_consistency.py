"""Post-deploy: a write through the API is visible everywhere the target reads it back.

The target's ``consistency.write`` driver writes a unique marker; every ``consistency.reads``
entry is then polled until it shows the marker or gates.yaml's
``thresholds.data_consistency.window_s`` has passed, all within the gate run's deadline.
"""

from __future__ import annotations

import time

import pytest

from releasegate.config import Gates, LoadedTarget
from releasegate.plugin import CheckRecorder, gate_run
from releasegate.probes import consistency
from releasegate.probes.http import HttpSettings
from releasegate.scenarios import runner
from releasegate.scenarios.loader import ScenarioSuite


@pytest.mark.check("business.data_consistency")
def test_data_consistency(
    check: CheckRecorder, target: LoadedTarget, policy: Gates, http_settings: HttpSettings, request: pytest.FixtureRequest
) -> None:
    settings = target.target.consistency
    if settings is None:
        pytest.skip("the target names no consistency write and reads (key: consistency)")
    suite: ScenarioSuite = request.getfixturevalue("scenario_suite")
    thresholds = policy.thresholds.data_consistency
    # The write driver's own budget, then the window, then one more request timeout for the last poll;
    # never past the run's deadline (the probe then judges what it saw until there).
    budget = runner.scenario_budget_s(suite.drivers[settings.write].scenario) + thresholds.window_s + 2 * policy.probe.timeout_s
    end = time.monotonic() + budget
    run = gate_run(request.config)
    if run is not None:
        end = min(end, run.deadline)
    measurement = consistency.measure(
        target, suite, settings, http_settings, window_s=thresholds.window_s, interval_s=thresholds.poll_interval_ms / 1000, end=end
    )
    # The probe stops itself at `end`; the grace is for closing connections, the backstop for a hang.
    limit = max(0.0, end - time.monotonic()) + runner.CLOSE_GRACE_S
    check.conclude(check.measure(lambda: consistency.blocking(measurement, timeout_s=limit, what="the consistency probe")))
