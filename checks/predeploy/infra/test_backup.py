"""Pre-deploy backups: the newest backup of every source is fresh, intact, and restores in time.

One item per source of the target's ``backups`` (the item id is the source's name); without
``backups`` each check runs once and skips, naming the key. Each check finds the newest file
itself (cheap: a listing), so a backup rotated between two checks is judged as it is then.
The integrity check and the drill are bounded by the RTO (``thresholds.backup.rto_s``) and by
what is left of the run's deadline, whichever comes first; a drill stopped by the deadline
before the RTO could not judge (error), one stopped at the RTO failed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

from releasegate._exceptions import ProbeError
from releasegate.config import BackupSource, Gates, LoadedTarget
from releasegate.plugin import CheckRecorder, gate_run
from releasegate.probes import backup
from releasegate.redact import Redactor
from releasegate.results import Finding

T = TypeVar("T")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backup_source" not in metafunc.fixturenames:
        return
    run = gate_run(metafunc.config)
    sources = run.target.target.backups if run is not None else []
    if sources:  # otherwise the backup_source fixture below skips the one item
        metafunc.parametrize("backup_source", [pytest.param(source, id=source.name) for source in sources])


@pytest.fixture
def backup_source() -> BackupSource:
    """Only reached when the target names no backups (otherwise each check is parametrized)."""
    pytest.skip("the target names no backups (key: backups)")


@pytest.fixture
def budget_s(request: pytest.FixtureRequest, policy: Gates) -> float:
    """Seconds the integrity check or the drill may take: the RTO, or less if the run's deadline is nearer."""
    rto_s = policy.thresholds.backup.rto_s
    run = gate_run(request.config)
    if run is None:
        return rto_s
    return max(0.0, min(rto_s, run.deadline - time.monotonic()))


def _measure(check: CheckRecorder, source: BackupSource, probe: Callable[[], T]) -> T:
    """``check.measure``, with the source's name in front of the cause."""

    def named() -> T:
        try:
            return probe()
        except ProbeError as exc:
            if str(exc).startswith(f"{source.name}: "):
                raise
            raise ProbeError(f"{source.name}: {exc}", url=exc.url) from None

    return check.measure(named)


@pytest.mark.check("infra.backup.freshness")
def test_backup_freshness(backup_source: BackupSource, check: CheckRecorder, target: LoadedTarget, policy: Gates) -> None:
    found = _measure(check, backup_source, lambda: backup.locate(backup_source, target.path.parent))
    check.conclude(backup.judge_freshness(backup_source, found, now=time.time(), rpo_hours=policy.thresholds.backup.rpo_hours))


@pytest.mark.check("infra.backup.integrity")
def test_backup_integrity(backup_source: BackupSource, check: CheckRecorder, target: LoadedTarget, budget_s: float) -> None:
    found = _measure(check, backup_source, lambda: backup.locate(backup_source, target.path.parent))
    observation: backup.IntegrityObservation | None = None
    if isinstance(found, backup.BackupFile):
        path = found.path
        if backup_source.kind == "sqlite":
            observation = _measure(check, backup_source, lambda: backup.integrity_sqlite(path, budget_s=budget_s))
        else:
            bin_dir = backup_source.restore_server.bin_dir if backup_source.restore_server else None
            observation = _measure(check, backup_source, lambda: backup.integrity_postgres(path, bin_dir=bin_dir, budget_s=budget_s))
    check.conclude(backup.judge_integrity(backup_source, found, observation))


@pytest.mark.check("infra.backup.restore_drill")
def test_backup_restore_drill(
    backup_source: BackupSource,
    check: CheckRecorder,
    target: LoadedTarget,
    policy: Gates,
    budget_s: float,
    redactor: Redactor,
) -> None:
    key = f"backups[{target.target.backups.index(backup_source)}]"
    queries = policy.thresholds.backup.sanity_queries
    server = backup_source.restore_server
    if backup_source.kind == "postgres" and server is None:
        check.conclude(
            Finding(
                "error",
                f"{backup_source.name}: a PostgreSQL dump needs a server to restore into, and {key}.restore_server is not set",
                observed="no restore_server",
                expected=f"{key}.restore_server: {{host, port, user, password_env}} of a scratch PostgreSQL",
                evidence={"source": backup_source.name, "kind": backup_source.kind},
            )
        )
        return
    password: str | None = None
    if backup_source.kind == "postgres" and server is not None and server.password_env:
        password = target.secret(server.password_env)
        if not password:
            check.conclude(
                Finding(
                    "error",
                    f"{backup_source.name}: environment variable {server.password_env} ({key}.restore_server.password_env) "
                    "is not set or empty",
                    observed="no password",
                    expected=f"export {server.password_env}=... before running the gate",
                    evidence={"source": backup_source.name, "kind": backup_source.kind},
                )
            )
            return
        redactor.add(server.password_env, password)  # the tools never print it; redacted anyway if one ever did
    found = _measure(check, backup_source, lambda: backup.locate(backup_source, target.path.parent))
    observation: backup.DrillObservation | None = None
    if isinstance(found, backup.BackupFile):
        path = found.path
        if backup_source.kind == "sqlite":
            observation = _measure(check, backup_source, lambda: backup.drill_sqlite(path, queries, budget_s=budget_s))
        elif server is not None:
            restore_server, admin_timeout_s = server, policy.probe.timeout_s
            observation = _measure(
                check,
                backup_source,
                lambda: backup.drill_postgres(
                    path, restore_server, queries, password=password, budget_s=budget_s, admin_timeout_s=admin_timeout_s
                ),
            )
    check.conclude(backup.judge_drill(backup_source, found, observation, queries, rto_s=policy.thresholds.backup.rto_s))
