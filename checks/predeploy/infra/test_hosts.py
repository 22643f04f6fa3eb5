"""Pre-deploy host checks (infra.host.*), once per host of the target's ``hosts``.

Each check reads the host through its bounded testinfra session (conftest.py) and hands plain
data to a judge in releasegate.probes.hosts. A host that cannot be reached is ``error`` for
every check on it, with the cause; a key the check needs that the target does not name skips
it, naming the key (sysctl and time sync need no target key: they run on every host).
"""

from __future__ import annotations

import pytest

from releasegate.config import Gates, InfraTargetSettings
from releasegate.plugin import CheckRecorder
from releasegate.probes import hosts
from releasegate.probes.hosts import HostSession


@pytest.mark.check("infra.host.nofile")
def test_nofile(check: CheckRecorder, infra: InfraTargetSettings, host_session: HostSession, policy: Gates) -> None:
    process = infra.process or pytest.skip("the target names no service process (key: infra.process)")
    table = check.measure(lambda: hosts.observe_processes(host_session, process, limits=True))
    check.conclude(hosts.judge_nofile(host_session.label, table, min_nofile=policy.thresholds.infra.min_nofile))


@pytest.mark.check("infra.host.sysctl")
def test_sysctl(check: CheckRecorder, host_session: HostSession, policy: Gates) -> None:
    conditions = policy.thresholds.infra.sysctl or pytest.skip("the policy names no kernel settings (key: thresholds.infra.sysctl)")
    readings = check.measure(lambda: hosts.observe_sysctl(host_session, list(conditions)))
    check.conclude(hosts.judge_sysctl(host_session.label, readings, conditions))


@pytest.mark.check("infra.host.disk")
def test_disk(check: CheckRecorder, infra: InfraTargetSettings, host_session: HostSession, policy: Gates) -> None:
    mounts = infra.mounts or pytest.skip("the target names no data or log paths (key: infra.mounts)")
    usages = check.measure(lambda: hosts.observe_disk(host_session, mounts))
    check.conclude(hosts.judge_disk(host_session.label, usages, max_percent=policy.thresholds.infra.max_disk_percent))


@pytest.mark.check("infra.host.services")
def test_services(check: CheckRecorder, infra: InfraTargetSettings, host_session: HostSession) -> None:
    services = infra.services or pytest.skip("the target names no services (key: infra.services)")
    observation = check.measure(lambda: hosts.observe_services(host_session, services))
    check.conclude(hosts.judge_services(host_session.label, observation))


@pytest.mark.check("infra.host.ports")
def test_ports(check: CheckRecorder, infra: InfraTargetSettings, host_session: HostSession) -> None:
    if not infra.listening and not infra.private_ports and infra.public_ports is None:
        pytest.skip("the target names no ports (keys: infra.listening, infra.private_ports, infra.public_ports)")
    table = check.measure(lambda: hosts.observe_listeners(host_session))
    check.conclude(
        hosts.judge_ports(
            host_session.label, table, listening=infra.listening, private_ports=infra.private_ports, public_ports=infra.public_ports
        )
    )


@pytest.mark.check("infra.host.cert_files")
def test_cert_files(check: CheckRecorder, infra: InfraTargetSettings, host_session: HostSession, policy: Gates) -> None:
    files = infra.cert_files or pytest.skip("the target names no certificate files (key: infra.cert_files)")
    readings = check.measure(lambda: hosts.observe_cert_files(host_session, [(f.cert, f.key) for f in files]))
    thresholds = policy.thresholds.infra
    check.conclude(
        hosts.judge_cert_files(
            host_session.label, readings, max_key_mode=thresholds.max_key_mode, min_days=thresholds.cert_min_days, now=hosts.utc_now()
        )
    )


@pytest.mark.check("infra.host.time_sync")
def test_time_sync(check: CheckRecorder, host_session: HostSession) -> None:
    answers = check.measure(lambda: hosts.observe_time_sync(host_session))
    check.conclude(hosts.judge_time_sync(host_session.label, answers))
