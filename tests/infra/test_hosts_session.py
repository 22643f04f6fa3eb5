"""The host session: every command bounded in time and output, an unreachable host an error with its cause."""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import pytest

from releasegate._exceptions import ProbeError, ProbeTimeout
from releasegate.probes import hosts
from releasegate.probes.hosts import HostSession


def _session(spec: str = "local://", *, timeout_s: float = 5.0, max_output_bytes: int = 65_536) -> HostSession:
    return HostSession(spec, timeout_s=timeout_s, max_output_bytes=max_output_bytes)


def _fake_command(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    path.chmod(0o755)
    return folder


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie (killed, waiting for whoever adopted it to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_local_host_runs_scripts_in_the_c_locale() -> None:
    output = _session().run('echo "$LC_ALL"; exit 3')

    assert (output.rc, output.text) == (3, "C\n")


def test_a_command_past_its_deadline_is_killed_with_its_children(tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    started = time.monotonic()

    with pytest.raises(ProbeTimeout, match="did not finish within 0.5 s"):
        hosts.run_bounded(f"sleep 30 & echo $! > {marker}; wait".encode(), timeout_s=0.5, max_output_bytes=1000)

    assert time.monotonic() - started < 3
    child = int(marker.read_text(encoding="utf-8"))
    deadline = time.monotonic() + 2
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(child)


def test_a_local_script_past_its_deadline_is_killed_with_its_children(tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    session = _session(timeout_s=0.5)
    started = time.monotonic()

    with pytest.raises(ProbeTimeout, match="local://: a command did not finish within 0.5 s"):
        session.run(f"sleep 30 & echo $! > {marker}; wait")

    assert time.monotonic() - started < 2
    child = int(marker.read_text(encoding="utf-8"))
    deadline = time.monotonic() + 2
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(child)


def test_output_over_the_cap_is_refused_not_cut() -> None:
    with pytest.raises(ProbeError, match="more than 1000 bytes"):
        hosts.run_bounded(b"head -c 100000 /dev/zero", timeout_s=5, max_output_bytes=1000)


def test_a_session_over_the_output_cap_is_an_error() -> None:
    with pytest.raises(ProbeError, match="local://: a command printed more than 4096 bytes"):
        _session(max_output_bytes=4096).run("head -c 100000 /dev/zero")


def test_a_hanging_client_is_bounded_and_not_waited_for_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a `docker` that never answers (a wedged daemon, a hung `docker exec`)
    monkeypatch.setenv("PATH", f"{_fake_command(tmp_path / 'bin', 'docker', 'sleep 30')}{os.pathsep}{os.environ['PATH']}")
    session = _session("docker://api", timeout_s=1)
    started = time.monotonic()

    # When two checks ask it something
    with pytest.raises(ProbeError, match="docker://api: host unresponsive") as first:
        session.run("echo hi")
    after_first = time.monotonic() - started
    with pytest.raises(ProbeError, match="host unresponsive"):
        session.run("echo hi")

    # Then the first waits for its bound, the second not at all
    assert "did not finish within" in str(first.value)
    assert after_first < 5
    assert time.monotonic() - started - after_first < 0.5


def test_an_unreachable_ssh_host_is_an_error_with_its_cause() -> None:
    if shutil.which("ssh") is None:
        pytest.skip("no ssh client on this machine")
    session = _session("ssh://nobody@127.0.0.1:1?timeout=2")

    with pytest.raises(ProbeError, match=r"ssh://nobody@127.0.0.1:1\?timeout=2: host unreachable \(.*Connection refused"):
        session.run("true")


def test_a_password_in_the_spec_never_reaches_an_error_message() -> None:
    session = _session("ssh://deploy:s3cret-pass-1@127.0.0.1:1?timeout=2")

    with pytest.raises(ProbeError) as raised:
        session.run("true")

    assert "s3cret-pass-1" not in str(raised.value)
    assert str(raised.value).startswith("ssh://deploy:***@127.0.0.1:1?timeout=2: ")


def test_a_backend_that_cannot_be_opened_is_an_error() -> None:
    with pytest.raises(ProbeError, match="nope://x: cannot open the host"):
        _session("nope://x").run("true")


def test_paramiko_without_its_library_says_so() -> None:
    try:
        import paramiko  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("paramiko is installed here")
    with pytest.raises(ProbeError, match="cannot open the host .*paramiko"):
        _session("paramiko://deploy@127.0.0.1:1").run("true")


def test_a_call_without_a_client_process_is_waited_for_at_most_its_bound() -> None:
    closed: list[bool] = []

    with pytest.raises(ProbeTimeout):
        hosts._in_thread(lambda: time.sleep(5), 0.2, on_timeout=lambda: closed.append(True))

    assert closed == [True]


def test_a_host_that_answers_wrongly_is_unreachable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "PATH",
        f"{_fake_command(tmp_path / 'bin', 'kubectl', 'echo error: pod api-0 not found >&2; exit 1')}{os.pathsep}{os.environ['PATH']}",
    )

    with pytest.raises(ProbeError, match=r"kubectl://api-0\?namespace=prod: host unreachable \(error: pod api-0 not found\)"):
        _session("kubectl://api-0?namespace=prod").run("true")


def test_non_ascii_output_is_read_as_bytes() -> None:
    # testinfra would ask the host's python for its encoding to decode this; a slim container
    # has no python, and the session decodes the bytes itself.
    output = _session().run("printf 'caf\\303\\251\\n'")

    assert output.text == "café\n"


def slim_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PATH with nothing but sh and cat, as in a slim container image (no ss, grep or awk)."""
    slim = tmp_path / "bin"
    slim.mkdir()
    for tool in ("sh", "cat"):
        found = shutil.which(tool)
        assert found is not None
        (slim / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(slim))


def test_without_ss_the_listeners_come_from_proc_net_tcp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a host with a shell and cat but no ss (a slim container image)
    slim_path(tmp_path, monkeypatch)

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        table = hosts.observe_listeners(_session())

    assert table.source == "proc"
    assert hosts.Listener("127.0.0.1", port) in table.listeners


def test_without_ss_a_busy_host_with_many_connections_stays_under_the_output_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a slim host (no ss) with 400 open connections: /proc/net/tcp alone is far over 64 KiB
    slim_path(tmp_path, monkeypatch)
    opened: list[socket.socket] = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(512)
        port = listener.getsockname()[1]
        try:
            for _ in range(400):
                opened.append(socket.create_connection(("127.0.0.1", port), timeout=5))
                opened.append(listener.accept()[0])
            assert len(Path("/proc/net/tcp").read_text(encoding="ascii")) > 65_536
            # When the listeners are listed
            table = hosts.observe_listeners(_session(max_output_bytes=65_536))
        finally:
            for conn in opened:
                conn.close()
    # Then only listening sockets came back, and this one is among them
    assert table.source == "proc"
    assert hosts.Listener("127.0.0.1", port) in table.listeners
