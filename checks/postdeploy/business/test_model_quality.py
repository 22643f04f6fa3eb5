"""Post-deploy: the assistant still answers the golden prompts well enough.

Every case of ``<scenarios>/golden/*.yaml`` is sent through its set's driver and the reply
graded by the case's checks; the pass rate must reach gates.yaml
``thresholds.model_quality.min_pass_rate`` and, with ``--baseline``, fall at most
``max_drop_points`` behind the baseline's. No prompt is sent past the gate run's deadline.
"""

from __future__ import annotations

import pytest

from releasegate.baseline import Baseline
from releasegate.config import Gates, LoadedTarget
from releasegate.plugin import CheckRecorder, gate_run
from releasegate.probes import golden
from releasegate.probes.http import HttpSettings
from releasegate.scenarios.loader import ScenarioSuite


@pytest.mark.check("business.model_quality")
def test_model_quality(
    check: CheckRecorder,
    target: LoadedTarget,
    policy: Gates,
    http_settings: HttpSettings,
    baseline: Baseline | None,
    scenario_suite: ScenarioSuite,
    request: pytest.FixtureRequest,
) -> None:
    if not scenario_suite.golden:
        pytest.skip(f"no golden prompt sets in {scenario_suite.folder / 'golden'}")
    run = gate_run(request.config)
    deadline = run.deadline if run is not None else None
    check.conclude(check.measure(lambda: golden.measure(scenario_suite, target, http_settings, policy, baseline, deadline=deadline)))
