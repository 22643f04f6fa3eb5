"""Post-deploy business: do the critical workflows work, step by step, the way users go through them?

    business.scenario.<name>   one check per workflow file <scenarios>/<name>.yaml

Each workflow runs once against the deployment (HTTP and WebSocket steps, each with its own
timeout, the whole run bounded by the sum of the step timeouts and by the gate's deadline) and
concludes passed, failed (a wrong answer, a missing event) or error (no answer at all). On a
non-pass the evidence names the failing step, its request and response (bounded, no credentials)
and every step's duration. No retry: a workflow creates data, and re-running until it passes
would only hide a flaky release; health checks already waited for the deployment to converge.

The items are generated from the run's scenario folder; with none (the target has no
``scenarios`` key) the module is skipped at collection and contributes no check.
"""

from __future__ import annotations

import time

import pytest

from releasegate import registry
from releasegate.config import LoadedTarget
from releasegate.plugin import CheckRecorder, gate_run
from releasegate.probes.http import HttpSettings
from releasegate.scenarios import ScenarioSuite, runner


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "workflow" not in metafunc.fixturenames:
        return
    run = gate_run(metafunc.config)
    suite = run.scenarios if run is not None else None
    if suite is None or not suite.workflows:
        # Zero items rather than one placeholder: every gate item must carry a registered check id.
        pytest.skip("the target names no scenarios folder, or it holds no workflows (key: scenarios)")
    names = sorted(suite.workflows)
    metafunc.parametrize("workflow", [pytest.param(name, id=name, marks=pytest.mark.check(registry.scenario_id(name))) for name in names])


def test_scenario(
    workflow: str,
    check: CheckRecorder,
    target: LoadedTarget,
    http_settings: HttpSettings,
    scenario_suite: ScenarioSuite,
    request: pytest.FixtureRequest,
) -> None:
    scenario = scenario_suite.workflows[workflow]
    budget = runner.scenario_budget_s(scenario.scenario)
    run = gate_run(request.config)
    if run is not None:
        budget = min(budget, max(0.0, run.deadline - time.monotonic()))
    ctx = runner.context_for(target, http_settings)
    outcome = check.measure(lambda: runner.run_blocking(scenario, ctx, deadline_s=budget))
    check.conclude(outcome.finding())
