"""load.<profile>: the profile holds gates.yaml's load thresholds (one check per profile).

One item per profile the stage runs: the target's ``load.profiles``, plus a profile that
``--only load.<name>`` names (which is how ``releasegate load --profile NAME`` runs any profile).
The load itself runs once per profile (the ``load_runs`` fixture, shared with infra.capacity);
this check judges it: thresholds, min_requests, a saturated generator, an aborted run.
"""

from __future__ import annotations

import pytest

from releasegate import registry
from releasegate._exceptions import ConfigError
from releasegate.config import Gates, LoadedTarget
from releasegate.load.gate import LoadRuns, profiles_of
from releasegate.load.runner import judge_run
from releasegate.plugin import CheckRecorder
from releasegate.results import Finding

# The profile a target runs when it has no load section: its check then skips, with the reason.
_WITHOUT_LOAD_SECTION = "smoke"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "load_profile" not in metafunc.fixturenames:
        return
    names = profiles_of(metafunc.config) or [_WITHOUT_LOAD_SECTION]
    metafunc.parametrize("load_profile", [pytest.param(name, marks=pytest.mark.check(registry.load_id(name)), id=name) for name in names])


def test_load_profile(load_profile: str, check: CheckRecorder, target: LoadedTarget, policy: Gates, load_runs: LoadRuns) -> None:
    if target.target.load is None:
        pytest.skip("the target has no load section (key: load)")
    try:
        run = load_runs.get(load_profile)
    except ConfigError as exc:
        check.conclude(Finding("error", f"{load_profile}: {exc}", observed="not started"))
        return
    load_runs.attach(run)
    check.conclude(judge_run(run, policy.load))
