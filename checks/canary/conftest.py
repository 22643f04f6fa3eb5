"""The canary stage's shared run: baseline vs canary is collected and judged once per gate run.

``canary_outcome`` runs :func:`releasegate.canary.run.run_stage` the first time a canary check
asks (canary.judge, or a canary.metric.<name> selected alone) and hands every later check the same
:class:`~releasegate.canary.run.StageOutcome`, kept in the run's stash like the SLO window
(checks/postdeploy/slo): both sides are probed once, and every check judges the same samples. A
target that cannot serve the policy's metrics (no canary section, no baseline_url, ...) is not
probed at all: the outcome is its setup problems, which every check reports as an error.

Progress (one line per look) goes to stderr while the check's own output is captured.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest

from releasegate.canary.run import StageOutcome, run_stage
from releasegate.plugin import GateRun, gate_run

_OUTCOME = pytest.StashKey[StageOutcome]()


@pytest.fixture
def canary_outcome(request: pytest.FixtureRequest) -> StageOutcome:
    """The gate run's one canary run (or why it could not start), run by the first check that asks."""
    config = request.config
    run = gate_run(config)
    if run is None:
        raise pytest.UsageError("the canary checks need the gate on: pass --stage canary and --target")
    if _OUTCOME not in config.stash:
        config.stash[_OUTCOME] = run_stage(
            run.target, run.gates.gates, report_dir=run.report_dir, deadline=run.deadline, progress=_progress(config, run)
        )
    return config.stash[_OUTCOME]


def _progress(config: pytest.Config, run: GateRun) -> Callable[[str], None]:
    capture = config.pluginmanager.get_plugin("capturemanager")

    def show(line: str) -> None:
        text = run.redactor.text(line)
        # Live: the check's own output is captured until it ends, progress must reach the terminal now.
        if capture is not None:
            with capture.global_and_fixture_disabled():
                print(text, file=sys.stderr, flush=True)
        else:
            print(text, file=sys.stderr, flush=True)

    return show
