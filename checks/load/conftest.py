"""The load stage's shared fixture: each profile runs once per gate run (releasegate.load.gate).

``load_runs.get(profile)`` -> LoadRun, for load.<profile> and infra.capacity alike.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from releasegate.load.gate import LoadRuns
from releasegate.plugin import gate_run

SUITE = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def load_runs(request: pytest.FixtureRequest) -> LoadRuns:
    """The session's load runs (see releasegate.load.gate.LoadRuns)."""
    run = gate_run(request.config)
    if run is None:
        raise pytest.UsageError("the load checks need the gate on: pass --stage load and --target")
    return LoadRuns(request.config, run, SUITE)
