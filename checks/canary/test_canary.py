"""The canary stage: baseline vs canary, judged statistically (docs/canary.md).

canary.judge is the decision (blocking): promote -> passed, rollback -> failed, hold -> error
with the reason. canary.metric.<name>, one per metric of gates.yaml ``canary.metrics`` (warning),
explains one metric at the deciding look: passed, failed, or error (no data, or still undecided
when the run ended). All of them judge the same run (the ``canary_outcome`` fixture), and a
target that cannot serve the policy errors before anything is probed, naming the key to add.
The run's artifacts (samples.json, canary.txt, a PNG per latency metric) go to Allure.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from releasegate import registry
from releasegate.canary.run import StageOutcome, judge_finding, metric_finding, setup_finding
from releasegate.config import CanaryPolicy, Gates
from releasegate.plugin import CheckRecorder, gate_run
from releasegate.report.allure import attach_file


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "canary_metric" not in metafunc.fixturenames:
        return
    run = gate_run(metafunc.config)
    policy = run.gates.gates.canary if run is not None else CanaryPolicy()
    metafunc.parametrize(
        "canary_metric",
        [pytest.param(m.name, marks=pytest.mark.check(registry.canary_metric_id(m.name)), id=m.name) for m in policy.metrics],
    )


def attach(paths: tuple[Path, ...], label: str) -> None:
    for path in paths:
        if path.is_file():
            attach_file(path, f"{label}: {path.name}")


@pytest.mark.check("canary.judge")
def test_canary_judge(check: CheckRecorder, policy: Gates, canary_outcome: StageOutcome) -> None:
    run = canary_outcome.run
    if run is None:
        check.conclude(setup_finding(canary_outcome.problems))
        return
    attach(run.artifacts, "canary")
    check.conclude(judge_finding(run, policy.canary))


def test_canary_metric(canary_metric: str, check: CheckRecorder, policy: Gates, canary_outcome: StageOutcome) -> None:
    run = canary_outcome.run
    if run is None:
        check.conclude(setup_finding(canary_outcome.problems, canary_metric))
        return
    if canary_metric in run.plots:
        attach((run.plots[canary_metric],), canary_metric)
    metric = next(m for m in policy.canary.metrics if m.name == canary_metric)
    check.conclude(metric_finding(run, metric))
