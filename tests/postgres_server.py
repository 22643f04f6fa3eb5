"""A real PostgreSQL for the tests: a throw-away cluster on a free loopback port, removed after.

Debian's ``postgresql`` package (its binaries under /usr/lib/postgresql/<version>/bin; initdb and
pg_ctl are not on every PATH, so that folder is searched too). Each cluster gets:

- a short folder of its own under the system temp dir (not pytest's tmp_path: the server's
  unix socket path must stay under 107 bytes, and as root the folder must belong to the server's
  user, which cannot even traverse root's 0700 pytest folders);
- a random superuser password (scram-sha-256 on TCP, so the restore drill really needs
  PGPASSWORD), trust on its unix socket only, which lives in that private folder;
- ``listen_addresses=127.0.0.1`` and a free port (bind port 0, let it go, start there: another
  process may take it meanwhile, then it is started once more on another port);
- fsync off and small memory: test data, never a real server's.

**As root** initdb and the server refuse to run ("cannot be run as root"). They then run as
``nobody`` through ``runuser -u nobody --`` (util-linux, on every Debian; ``setpriv`` when runuser
is missing), in a folder chowned to nobody. That user exists everywhere and owns nothing, so no
account is created on the machine and nothing outside the temp folder is touched. Debian's own
``postgres`` account would do as well, but it owns the packaged clusters' files, and a test
must not be able to touch those. Clients (psql, pg_dump, pg_restore) run as the caller, over TCP.

Every step is bounded: initdb, start (pg_ctl -w -t), stop (fast, then immediate, then SIGKILL of
the postmaster), and every client call has a timeout. The folder is always removed.

Following tests/real.py: without the binaries a test skips, under RELEASEGATE_REQUIRE_REAL=1 it fails.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from real import REQUIRE_REAL

STARTUP_TIMEOUT_S = 30
STOP_TIMEOUT_S = 10
CLIENT_TIMEOUT_S = 60.0
START_ATTEMPTS = 2  # a second one only when the port was taken between free_port() and the bind
SUPERUSER = "postgres"
UNPRIVILEGED_USER = "nobody"
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "32MB",
    "max_connections": "30",
    "logging_collector": "off",
}


class PortTaken(RuntimeError):
    """The server exited because its port was taken between free_port() and its bind."""


def postgres_bin_dir() -> Path:
    """The folder of initdb, pg_ctl and postgres; skip locally without them, fail under RELEASEGATE_REQUIRE_REAL=1."""
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path is not None:
        candidates.append(Path(on_path).resolve().parent)
    # Newest version first: /usr/lib/postgresql/15/bin before .../13/bin.
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: _version_key(Path(p).parent.name), reverse=True)
    candidates += [Path(p) for p in versions]
    for folder in candidates:
        if all((folder / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres", "psql", "pg_dump", "pg_restore")):
            return folder
    message = "PostgreSQL server binaries (initdb, pg_ctl, postgres) are not installed (Debian package postgresql; .ci/run installs it)"
    if REQUIRE_REAL:
        pytest.fail(message + " and RELEASEGATE_REQUIRE_REAL=1")
    pytest.skip(message)


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


@dataclass(frozen=True)
class RunningPostgres:
    """A started cluster; clients connect over TCP as :data:`SUPERUSER` with :attr:`password`."""

    host: str
    port: int
    user: str
    password: str
    bin_dir: Path
    workdir: Path

    def env(self) -> dict[str, str]:
        """The environment for a client: the password by PGPASSWORD, never on a command line."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["PGPASSWORD"] = self.password
        env["PGCONNECT_TIMEOUT"] = "10"
        return env

    def connection_args(self, database: str = "postgres") -> list[str]:
        return ["--host", self.host, "--port", str(self.port), "--username", self.user, "--no-password", "--dbname", database]

    def psql(self, sql: str, *, database: str = "postgres", timeout_s: float = CLIENT_TIMEOUT_S) -> str:
        """Run ``sql`` (ON_ERROR_STOP); its unaligned, tuples-only output. RuntimeError on failure."""
        command = [str(self.bin_dir / "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", *self.connection_args(database), "-c", sql]
        return self._client(command, timeout_s).stdout

    def databases(self) -> set[str]:
        return set(self.psql("SELECT datname FROM pg_database").split())

    def create_database(self, name: str) -> None:
        self.psql(f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def dump(self, database: str, path: Path, *, timeout_s: float = CLIENT_TIMEOUT_S) -> Path:
        """pg_dump custom format (-Fc) of ``database`` into ``path``."""
        command = [str(self.bin_dir / "pg_dump"), "-Fc", "--file", str(path), *self.connection_args(database)]
        self._client(command, timeout_s)
        return path

    def log(self) -> str:
        path = self.workdir / "server.log"
        with contextlib.suppress(OSError):
            return path.read_text(errors="replace")[-3000:]
        return ""

    def _client(self, command: Sequence[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(command, env=self.env(), capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(command[0]).name} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
        return done


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_postgres(bin_dir: Path | None = None) -> Iterator[RunningPostgres]:
    """initdb a cluster, start it on a free loopback port, yield it; always stop it and remove its folder."""
    bin_dir = bin_dir or postgres_bin_dir()
    workdir = Path(tempfile.mkdtemp(prefix="rg-pg-"))
    try:
        owner = _server_owner()
        if owner is not None:
            os.chown(workdir, owner.pw_uid, owner.pw_gid)
        workdir.chmod(0o700)
        password = secrets.token_urlsafe(18)
        _initdb(bin_dir, workdir, password, owner)
        for attempt in range(1, START_ATTEMPTS + 1):
            server = RunningPostgres("127.0.0.1", free_port(), SUPERUSER, password, bin_dir, workdir)
            try:
                _start(server, owner)
                break
            except PortTaken:
                if attempt == START_ATTEMPTS:
                    raise
        try:
            yield server
        finally:
            _stop(server, owner)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _server_owner() -> pwd.struct_passwd | None:
    """The user the server runs as when we are root (PostgreSQL refuses root); None: ourselves."""
    if os.geteuid() != 0:
        return None
    return pwd.getpwnam(UNPRIVILEGED_USER)


def _as_owner(command: list[str], owner: pwd.struct_passwd | None) -> list[str]:
    if owner is None:
        return command
    runuser = shutil.which("runuser", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    if runuser is not None:
        return [runuser, "-u", owner.pw_name, "--", *command]
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise RuntimeError("running as root, and neither runuser nor setpriv is there to start PostgreSQL as an unprivileged user")
    return [setpriv, f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}", "--clear-groups", "--", *command]


def _run_as_owner(command: list[str], owner: pwd.struct_passwd | None, workdir: Path, timeout_s: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update({"LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"})
    return subprocess.run(
        _as_owner(command, owner),
        cwd=workdir,  # the server's user may not be allowed into the caller's working directory
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
    )


def _initdb(bin_dir: Path, workdir: Path, password: str, owner: pwd.struct_passwd | None) -> None:
    pwfile = workdir / "pwfile"
    pwfile.write_text(password + "\n", encoding="utf-8")
    pwfile.chmod(0o600)
    if owner is not None:
        os.chown(pwfile, owner.pw_uid, owner.pw_gid)
    (workdir / "socket").mkdir(mode=0o700)
    if owner is not None:
        os.chown(workdir / "socket", owner.pw_uid, owner.pw_gid)
    command = [
        str(bin_dir / "initdb"),
        "--pgdata",
        str(workdir / "data"),
        "--username",
        SUPERUSER,
        f"--pwfile={pwfile}",
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
        "--encoding=UTF8",
        "--no-locale",
        "--no-sync",
        "--no-instructions",
    ]
    try:
        done = _run_as_owner(command, owner, workdir, STARTUP_TIMEOUT_S)
    finally:
        pwfile.unlink(missing_ok=True)
    if done.returncode != 0:
        raise RuntimeError(f"initdb exited {done.returncode}: {(done.stdout + done.stderr).strip()[-2000:]}")


def _start(server: RunningPostgres, owner: pwd.struct_passwd | None) -> None:
    settings = {**SERVER_SETTINGS, "port": str(server.port), "unix_socket_directories": str(server.workdir / "socket")}
    options = " ".join(f"-c {name}={value}" for name, value in settings.items())
    log = server.workdir / "server.log"
    log.unlink(missing_ok=True)
    command = [
        str(server.bin_dir / "pg_ctl"),
        "--pgdata",
        str(server.workdir / "data"),
        "--log",
        str(log),
        "--options",
        options,
        "--wait",
        f"--timeout={STARTUP_TIMEOUT_S}",
        "start",
    ]
    done = _run_as_owner(command, owner, server.workdir, STARTUP_TIMEOUT_S + 5)
    if done.returncode == 0:
        return
    text = server.log()
    _stop(server, owner)
    if "Address already in use" in text or "could not bind" in text:
        raise PortTaken(f"PostgreSQL could not bind 127.0.0.1:{server.port}:\n{text}")
    raise RuntimeError(f"pg_ctl start exited {done.returncode}: {(done.stdout + done.stderr).strip()[-1000:]}\nlog:\n{text}")


def _stop(server: RunningPostgres, owner: pwd.struct_passwd | None) -> None:
    data = server.workdir / "data"
    if not (data / "postmaster.pid").exists():
        return
    for mode in ("fast", "immediate"):
        command = [str(server.bin_dir / "pg_ctl"), "--pgdata", str(data), "--mode", mode, "--wait", f"--timeout={STOP_TIMEOUT_S}", "stop"]
        with contextlib.suppress(subprocess.TimeoutExpired):
            if _run_as_owner(command, owner, server.workdir, STOP_TIMEOUT_S + 5).returncode == 0:
                return
    # pg_ctl could not stop it: the postmaster's pid is the first line of postmaster.pid.
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int((data / "postmaster.pid").read_text().splitlines()[0])
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
