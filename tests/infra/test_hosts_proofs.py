"""Fixture proofs of the host checks, through the gate itself.

Each proof writes a small target (``hosts: ["local://"]``, an ``infra`` section) and a policy in
tmp_path and runs ``releasegate run --stage pre-deploy --only infra.host.<x>`` in-process: the
same CLI, plugin, check file, testinfra session and judge a pipeline runs. Only the fixture
differs between the healthy run and the broken one (a process's limit, a listener's address, a
key's mode, ...). ``base_url`` points at a closed port: ``--only`` keeps every other check, and
so every HTTP probe, out of the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from releasegate.cli import main
from releasegate.probes import hosts

LOCAL = "local://"


# --------------------------------------------------------------------------- helpers


def gate(
    folder: Path,
    check_id: str,
    *,
    infra: dict[str, Any] | None,
    thresholds: dict[str, Any] | None = None,
    severity: dict[str, str] | None = None,
    host_specs: list[str] | None = None,
) -> tuple[int, list[dict[str, Any]]]:
    """Run the pre-deploy stage for one check against a target written into ``folder``; (exit code, its rows)."""
    folder.mkdir(parents=True)
    target: dict[str, Any] = {"name": "hosts-proof", "base_url": "http://127.0.0.1:9"}
    if host_specs is None or host_specs:
        target["hosts"] = host_specs or [LOCAL]
    if infra is not None:
        target["infra"] = infra
    policy: dict[str, Any] = {"probe": {"timeout_s": 5, "retry": {"timeout_s": 0}}, "thresholds": {"infra": thresholds or {}}}
    if severity:
        policy["severity"] = severity
    (folder / "target.yaml").write_text(yaml.safe_dump(target), encoding="utf-8")
    (folder / "gates.yaml").write_text(yaml.safe_dump(policy), encoding="utf-8")
    report = folder / "report"
    argv = ["run", "--stage", "pre-deploy", "--target", str(folder / "target.yaml"), "--gates", str(folder / "gates.yaml")]
    code = main([*argv, "--only", check_id, "--report-dir", str(report)])
    verdict = json.loads((report / "verdict.json").read_text(encoding="utf-8"))
    assert verdict["exit_code"] == code
    rows: list[dict[str, Any]] = verdict["checks"]
    assert all(row["id"].startswith(check_id) for row in rows), "only the selected checks ran"
    return code, rows


def gate_one(folder: Path, check_id: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    code, rows = gate(folder, check_id, **kwargs)
    assert len(rows) == 1, rows
    if rows[0]["outcome"] != "skipped":
        assert rows[0]["evidence"]["subject"] == LOCAL
    return code, rows[0]


def unique_name(prefix: str) -> str:
    """A process name of at most 15 characters, unique across xdist workers."""
    return f"{prefix}{uuid.uuid4().hex}"[: hosts.COMM_LENGTH]


@contextlib.contextmanager
def named_process(folder: Path, name: str, *, nofile: int | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A long-running process whose name (comm) is exactly ``name``, with an open-file soft limit
    of ``nofile`` (its hard limit left as is)."""
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / name
    if not link.exists():
        link.symlink_to(sys.executable)  # comm is the base name of the path exec'd
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))

    process = subprocess.Popen([str(link), "-I", "-S", "-c", "import time; time.sleep(600)"], preexec_fn=limit)  # noqa: PLW1509
    try:
        comm = Path(f"/proc/{process.pid}/comm")
        deadline = time.monotonic() + 10
        while comm.read_text(encoding="utf-8").strip() != name[: hosts.COMM_LENGTH]:
            assert time.monotonic() < deadline, "the named process did not start"
            time.sleep(0.01)
        yield process
    finally:
        process.kill()
        process.wait()


def high_nofile() -> int:
    """The highest soft limit a child may take: the hard limit (20000 on the development machine)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 65_536 if hard == resource.RLIM_INFINITY else int(hard)


def fake_command(folder: Path, name: str, body: str) -> str:
    """A folder holding an executable ``name`` running ``body``, to put first on PATH."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    path.chmod(0o755)
    return str(folder)


def write_cert(folder: Path, *, not_before: datetime, not_after: datetime, key_mode: int) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "api.hosts-proof.test")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "tls.crt", folder / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    key_path.chmod(key_mode)
    return cert_path, key_path


def disk_percent(path: Path) -> float:
    """What df reports for the mount holding ``path``: used / (used + available)."""
    stat = os.statvfs(path)
    used = (stat.f_blocks - stat.f_bfree) * stat.f_frsize
    available = stat.f_bavail * stat.f_frsize
    return 100.0 * used / (used + available)


# --------------------------------------------------------------------------- fixture proofs


def test_fixture_proof_low_nofile(tmp_path: Path) -> None:
    # Given a policy the machine can meet, and a service process named exactly `name`
    name = unique_name("rgnofile")
    policy = {"min_nofile": min(4096, high_nofile())}
    assert policy["min_nofile"] > 256

    # When it runs with a high soft limit, then with 256
    with named_process(tmp_path / "bin", name, nofile=high_nofile()) as healthy_process:
        healthy_code, healthy = gate_one(tmp_path / "healthy", "infra.host.nofile", infra={"process": name}, thresholds=policy)
    with named_process(tmp_path / "bin", name, nofile=256) as low_process:
        broken_code, broken = gate_one(tmp_path / "broken", "infra.host.nofile", infra={"process": name}, thresholds=policy)

    # Then the healthy one passes and the low one rolls the release back
    assert (healthy_code, healthy["outcome"]) == (0, "passed"), healthy["summary"]
    assert [p["pid"] for p in healthy["evidence"]["processes"]] == [healthy_process.pid]
    assert healthy["evidence"]["processes"][0]["soft"] == high_nofile()
    assert (broken_code, broken["outcome"]) == (1, "failed"), broken["summary"]
    assert f"pid {low_process.pid}: 256" in broken["summary"]


def test_fixture_proof_sysctl_below_policy(tmp_path: Path) -> None:
    # Given this kernel's real values
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text(encoding="utf-8"))
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text(encoding="utf-8").split())
    width = high - low + 1

    # When the policy asks for exactly them, then for one more
    met = {"net.core.somaxconn": f">={somaxconn}", "net.ipv4.ip_local_port_range": f">={width}"}
    above = {"net.core.somaxconn": f">={somaxconn + 1}", "net.ipv4.ip_local_port_range": f">={width + 1}"}
    healthy_code, healthy = gate_one(tmp_path / "healthy", "infra.host.sysctl", infra={}, thresholds={"sysctl": met})
    broken_code, broken = gate_one(tmp_path / "broken", "infra.host.sysctl", infra={}, thresholds={"sysctl": above})

    # Then the same kernel passes the first and fails the second, the range by its width
    assert (healthy_code, healthy["outcome"]) == (0, "passed"), healthy["summary"]
    assert (broken_code, broken["outcome"]) == (1, "failed")
    assert f"net.core.somaxconn = {somaxconn}, policy >={somaxconn + 1}" in broken["summary"]
    assert f"net.ipv4.ip_local_port_range = {width} (width of {low}-{high})" in broken["summary"]


def test_fixture_proof_disk_over_limit(tmp_path: Path) -> None:
    # Given the real usage of the mount holding tmp_path
    usage = disk_percent(tmp_path)
    if not 0.5 < usage < 99:
        pytest.skip(f"the mount holding {tmp_path} is {usage:.1f}% used: no limit fits on both sides of it")
    infra = {"mounts": [str(tmp_path)]}

    # When the limit is well above it, then well below it (other tests write to the same mount)
    healthy_code, healthy = gate_one(
        tmp_path / "healthy", "infra.host.disk", infra=infra, thresholds={"max_disk_percent": (usage + 100) / 2}
    )
    broken_code, broken = gate_one(tmp_path / "broken", "infra.host.disk", infra=infra, thresholds={"max_disk_percent": usage / 2})

    # Then df through the host sees what statvfs sees, and the limit decides
    assert (healthy_code, healthy["outcome"]) == (0, "passed"), healthy["summary"]
    assert healthy["evidence"]["mounts"][0]["percent"] == pytest.approx(usage, abs=0.5)
    assert (broken_code, broken["outcome"]) == (1, "failed")
    assert f"(holding {tmp_path}) is" in broken["summary"]


def test_fixture_proof_service_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = unique_name("rgsvc")
    infra = {"services": [name]}
    if Path("/run/systemd/system").is_dir():
        # A systemd machine: the check asks systemctl, so the fixture answers for it (a test must
        # not install units). Elsewhere (containers, this development machine) a real process.
        def answering(active: str) -> contextlib.AbstractContextManager[object]:
            body = f'case "$1" in is-active) echo {active};; is-enabled) echo enabled;; esac'
            monkeypatch.setenv("PATH", f"{fake_command(tmp_path / active, 'systemctl', body)}{os.pathsep}{os.environ['PATH']}")
            return contextlib.nullcontext()

        healthy_fixture, broken_fixture = (lambda: answering("active")), (lambda: answering("inactive"))
    else:
        healthy_fixture, broken_fixture = (lambda: named_process(tmp_path / "bin", name)), contextlib.nullcontext

    # Given the service running, then not running
    with healthy_fixture():
        healthy_code, healthy = gate_one(tmp_path / "healthy", "infra.host.services", infra=infra)
    with broken_fixture():
        broken_code, broken = gate_one(tmp_path / "broken", "infra.host.services", infra=infra)

    # Then it passes while it runs and rolls back when it does not
    assert (healthy_code, healthy["outcome"]) == (0, "passed"), healthy["summary"]
    assert (broken_code, broken["outcome"]) == (1, "failed")
    assert name in broken["summary"]


def test_fixture_proof_db_port_public(tmp_path: Path) -> None:
    # Given a database port declared private, bound to loopback, then to all interfaces
    def listening_on(address: str, folder: str) -> tuple[int, dict[str, Any], int]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
            listener.bind((address, 0))
            listener.listen(1)  # never accepts: only its binding is looked at
            port = listener.getsockname()[1]
            code, row = gate_one(tmp_path / folder, "infra.host.ports", infra={"listening": [port], "private_ports": [port]})
        return code, row, port

    healthy_code, healthy, _ = listening_on("127.0.0.1", "healthy")
    broken_code, broken, port = listening_on("0.0.0.0", "broken")

    # Then loopback passes, and all interfaces rolls the release back
    assert (healthy_code, healthy["outcome"]) == (0, "passed"), healthy["summary"]
    assert (broken_code, broken["outcome"]) == (1, "failed")
    assert f"0.0.0.0:{port}" in broken["summary"]


def test_fixture_proof_key_world_readable(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    policy = {"max_key_mode": "0640", "cert_min_days": 14}

    def run(folder: str, *, key_mode: int, not_after: datetime) -> tuple[int, dict[str, Any]]:
        cert, key = write_cert(tmp_path / folder / "tls", not_before=now - timedelta(days=1), not_after=not_after, key_mode=key_mode)
        return gate_one(
            tmp_path / folder / "gate",
            "infra.host.cert_files",
            infra={"cert_files": [{"cert": str(cert), "key": str(key)}]},
            thresholds=policy,
        )

    # Given a certificate valid for 90 days with its key 0600, then the key 0644, then an expired certificate
    healthy_code, healthy = run("healthy", key_mode=0o600, not_after=now + timedelta(days=90))
    readable_code, readable = run("readable", key_mode=0o644, not_after=now + timedelta(days=90))
    expired_code, expired = run("expired", key_mode=0o600, not_after=now - timedelta(days=1))

    # Then only the first passes
    assert (healthy_code, healthy["outcome"]) == (0, "passed"), healthy["summary"]
    assert (readable_code, readable["outcome"]) == (1, "failed")
    assert "has mode 0644, wider than 0640" in readable["summary"]
    assert (expired_code, expired["outcome"]) == (1, "failed")
    assert "expired on" in expired["summary"]


def test_fixture_proof_clock_unsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # infra.host.time_sync is a warning by default; the policy makes it blocking so that the
    # decision itself shows the difference (a warning alone can neither pass nor roll back).
    blocking = {"infra.host.time_sync": "blocking"}

    def with_timedatectl(answer: str) -> tuple[int, dict[str, Any]]:
        folder = fake_command(tmp_path / answer / "bin", "timedatectl", f"echo {answer}")
        monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
        return gate_one(tmp_path / answer / "gate", "infra.host.time_sync", infra={}, severity=blocking)

    # Given a host whose timedatectl says it is synchronised, then that it is not
    healthy_code, healthy = with_timedatectl("yes")
    broken_code, broken = with_timedatectl("no")

    assert (healthy_code, healthy["outcome"]) == (0, "passed"), healthy["summary"]
    assert (broken_code, broken["outcome"]) == (1, "failed")
    assert broken["summary"] == "local://: clock not synchronised (timedatectl: NTPSynchronized=no)"


# --------------------------------------------------------------------------- the same path, other cases


def test_a_missing_kernel_setting_is_an_error_for_itself_and_the_rest_is_still_judged(tmp_path: Path) -> None:
    conditions = {"net.core.somaxconn": ">=1", "net.ipv4.no_such_setting": ">=1"}

    code, row = gate_one(tmp_path / "gate", "infra.host.sysctl", infra={}, thresholds={"sysctl": conditions})

    assert (code, row["outcome"]) == (2, "error")
    assert "net.ipv4.no_such_setting: no such setting on this host" in row["summary"]
    assert [s["outcome"] for s in row["evidence"]["settings"]] == ["passed", "error"]


def test_a_missing_mount_path_fails_with_its_cause(tmp_path: Path) -> None:
    code, row = gate_one(tmp_path / "gate", "infra.host.disk", infra={"mounts": [str(tmp_path / "absent")]})

    assert (code, row["outcome"]) == (1, "failed")
    assert f"{tmp_path / 'absent'} does not exist" in row["summary"]


def test_one_item_per_host_and_an_unreachable_host_is_an_error_of_its_own_item(tmp_path: Path) -> None:
    unreachable = "ssh://nobody@127.0.0.1:1?timeout=2"

    code, rows = gate(
        tmp_path / "gate",
        "infra.host.sysctl",
        infra={},
        thresholds={"sysctl": {"net.core.somaxconn": ">=1"}},
        host_specs=[LOCAL, unreachable],
    )

    assert {row["evidence"]["subject"]: row["outcome"] for row in rows} == {LOCAL: "passed", unreachable: "error"}
    assert code == 2  # a blocking check that could not judge holds the release
    assert "host unreachable" in next(row["summary"] for row in rows if row["outcome"] == "error")


def test_a_target_without_hosts_skips_every_host_check_naming_the_key(tmp_path: Path) -> None:
    code, rows = gate(tmp_path / "gate", "infra.host", infra={}, host_specs=[])

    expected = sorted((c, "skipped", "the target names no hosts (key: hosts)") for c in HOST_CHECKS)
    assert sorted((row["id"], row["outcome"], row["summary"]) for row in rows) == expected
    assert code == 2  # nothing judged: the gate cannot pass


def test_hosts_without_an_infra_section_still_get_the_checks_that_need_no_key(tmp_path: Path) -> None:
    code, rows = gate(tmp_path / "gate", "infra.host", infra=None, host_specs=[LOCAL])

    outcomes = {row["id"]: (row["outcome"], row["summary"]) for row in rows}
    # sysctl and time sync judge the host against the policy alone: they run (whatever they find here)
    assert {c for c, (outcome, _) in outcomes.items() if outcome != "skipped"} == {"infra.host.sysctl", "infra.host.time_sync"}
    # the others need to know what to look at
    for check in set(HOST_CHECKS) - {"infra.host.sysctl", "infra.host.time_sync"}:
        assert outcomes[check] == ("skipped", "the target has no infra section (key: infra)")
    assert code in (0, 1, 2)


HOST_CHECKS = [f"infra.host.{name}" for name in ("nofile", "sysctl", "disk", "services", "ports", "cert_files", "time_sync")]


def test_a_process_name_longer_than_the_kernel_keeps_is_matched_whole(tmp_path: Path) -> None:
    name = "rg-" + uuid.uuid4().hex[:17]  # 20 characters; the kernel keeps 15
    session = hosts.HostSession(LOCAL, timeout_s=5, max_output_bytes=1_048_576)

    with named_process(tmp_path / "bin", name) as process:
        found = hosts.observe_processes(session, name, limits=True)
        other = hosts.observe_processes(session, name[:15] + "zzzzz")

    assert [p.pid for p in found.processes] == [process.pid]
    assert found.processes[0].limits_read
    assert other.processes == ()
