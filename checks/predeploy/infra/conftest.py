"""Shared by the infra checks: the target's hosts, one item per host, one bounded session per host.

A check that takes ``host_session`` runs once per entry of the target's ``hosts`` (the item id
is the host spec, with any password masked). Without ``hosts`` it runs once and skips, naming
the key. A check that reads the target's ``infra`` section (the ``infra`` fixture) skips without
one; sysctl and time sync read only the policy and the host, so they run on every host. The
sessions live for the whole run, so the seven host checks share one connection per host, and a
host found unreachable is reported as such by every check on it without being waited for again.

Not named ``host``: pytest-testinfra's plugin owns a ``host`` fixture parametrized by its own
``--hosts`` option, not by the target. The gate suite turns that plugin off (checks/pytest.ini:
``-p no:pytest11.testinfra``, so its options cannot clash with a user's); the ``host`` fixture
below makes a check that asks for it anyway fail loudly instead of judging this machine.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from releasegate.config import InfraTargetSettings, LoadedTarget
from releasegate.plugin import gate_run
from releasegate.probes.hosts import HostSession, host_label


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "host_spec" not in metafunc.fixturenames:
        return
    run = gate_run(metafunc.config)
    specs = run.target.target.hosts if run is not None else []
    if specs:  # otherwise the host_spec fixture below skips the one item
        metafunc.parametrize("host_spec", [pytest.param(spec, id=host_label(spec)) for spec in specs])


@pytest.fixture
def host_spec() -> str:
    """Only reached when the target names no hosts (otherwise each check is parametrized)."""
    pytest.skip("the target names no hosts (key: hosts)")


@pytest.fixture
def host() -> None:
    """Shadows pytest-testinfra's ``host`` here: that one follows testinfra's own ``--hosts``
    (default: this machine), not the target, so a check using it would judge the wrong host."""
    raise pytest.UsageError("infra checks take host_session (the target's hosts), not testinfra's host fixture")


@pytest.fixture
def infra(host_spec: str, target: LoadedTarget) -> InfraTargetSettings:
    """The target's infra section; the check skips without one."""
    settings = target.target.infra
    if settings is None:
        pytest.skip("the target has no infra section (key: infra)")
    return settings


class HostSessions:
    """One :class:`HostSession` per host spec for the whole run."""

    def __init__(self, *, timeout_s: float, max_output_bytes: int) -> None:
        self._timeout_s = timeout_s
        self._max_output_bytes = max_output_bytes
        self._sessions: dict[str, HostSession] = {}

    def get(self, spec: str) -> HostSession:
        if spec not in self._sessions:
            self._sessions[spec] = HostSession(spec, timeout_s=self._timeout_s, max_output_bytes=self._max_output_bytes)
        return self._sessions[spec]

    def close(self) -> None:
        for session in self._sessions.values():
            session.close()


@pytest.fixture(scope="session")
def host_sessions(request: pytest.FixtureRequest) -> Iterator[HostSessions]:
    run = gate_run(request.config)
    if run is None:
        raise pytest.UsageError("the infra checks need the gate on: pass --stage pre-deploy and --target")
    probe = run.gates.gates.probe
    # One host command is bounded like one HTTP request: probe.timeout_s, probe.max_body_bytes.
    sessions = HostSessions(timeout_s=probe.timeout_s, max_output_bytes=probe.max_body_bytes)
    yield sessions
    sessions.close()


@pytest.fixture
def host_session(host_spec: str, host_sessions: HostSessions) -> HostSession:
    """The bounded testinfra session of this item's host."""
    return host_sessions.get(host_spec)
