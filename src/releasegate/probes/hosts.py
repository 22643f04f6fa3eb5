"""Hosts family: infra.host.* on every host of the target's ``hosts``, through pytest-testinfra.

Three layers, as elsewhere:

- :class:`HostSession` is the only I/O: one testinfra host (``local://``, ``ssh://user@h``,
  ``docker://c``, ``kubectl://pod?namespace=x``; config.HOST_BACKENDS) whose every command is
  bounded in time (``probe.timeout_s``: the client process group is killed, and the command
  also runs under the host's own ``timeout`` so nothing lingers inside a container) and in
  output (``probe.max_body_bytes``). The first command checks that the host answers at all;
  a host that does not is an error for every check on it, with the cause, found once.
- ``observe_*`` send a few fixed POSIX shell scripts through a session and return plain data
  (``/proc/<pid>/limits``, ``/proc/sys``, ``df -P``, ``ss -Htln``, ``stat``, the PEM text,
  ``timedatectl``/``chronyc``/``ntpstat``); nothing host-specific is installed on the host.
- ``parse_*`` and ``judge_*`` are pure: captured text in, a
  :class:`~releasegate.results.Finding` out. "Could not tell" is ``error`` with its cause,
  never ``passed``.
"""

from __future__ import annotations

import ipaddress
import operator
import os
import re
import selectors
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from releasegate._exceptions import ProbeError, ProbeTimeout
from releasegate.redact import mask_userinfo_passwords
from releasegate.results import Finding

# Backends whose commands go through BaseBackend.run_local (a local client process: sh, ssh,
# docker exec, kubectl exec, ...): there the client's process group is killed at the deadline.
# The others (paramiko, winrm, salt, ansible) are waited for in a thread instead.
_PROCESS_BACKENDS = frozenset({"local", "ssh", "safe-ssh", "docker", "podman", "kubectl", "lxc", "openshift", "chroot"})
# The kernel keeps 15 characters of a process name (TASK_COMM_LEN - 1).
COMM_LENGTH = 15
# At most this many processes of one name are read (their limits, their argv[0]).
MAX_PROCESSES = 256
# Evidence lists are cut here: evidence is bounded like every other output.
MAX_EVIDENCE_ITEMS = 50
# After the client exits, how long its pipes may stay open (a daemonised ssh ControlPersist
# master inherits them on some OpenSSH versions) before reading stops.
_PIPE_GRACE_S = 1.0
_REACHABLE = "releasegate-host-ok"
# The client is killed this long after the host's own `timeout` should have ended the command.
_CLIENT_GRACE_S = 1.0


# --------------------------------------------------------------------------- host sessions (I/O)


@dataclass(frozen=True)
class CommandOutput:
    """One command's exit status and output (bytes, bounded)."""

    rc: int
    stdout: bytes
    stderr: bytes

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    @property
    def error_text(self) -> str:
        return _last_line(self.stderr.decode("utf-8", "replace")) or _last_line(self.text) or f"exit status {self.rc}"


def host_label(spec: str) -> str:
    """The host spec as it may be shown: a password written into it (``user:pw@host``) is masked."""
    return mask_userinfo_passwords(spec if "://" in spec else f"paramiko://{spec}")


class HostSession:
    """One host of the target, reached through pytest-testinfra, every command bounded.

    The testinfra host is built on first use (a bad spec or a missing backend library is then
    an error of the checks on this host, not a crash of collection), outside testinfra's global
    ``get_host`` cache: this session's time bound is installed on its own backend.
    """

    def __init__(self, spec: str, *, timeout_s: float, max_output_bytes: int) -> None:
        self.spec = spec
        self.label = host_label(spec)
        self.timeout_s = timeout_s
        self.max_output_bytes = max_output_bytes
        self._host: Any = None
        self._unreachable: str | None = None

    def run(self, script: str) -> CommandOutput:
        """Run a POSIX shell script on the host; ProbeError when the host cannot be reached or it
        does not finish in time (then the host counts as unreachable for the rest of the run)."""
        self._ensure_reachable()
        return self._run(script)

    def close(self) -> None:
        backend = getattr(self._host, "backend", None)
        client = getattr(backend, "__dict__", {}).get("client") if backend is not None else None
        if client is not None:  # paramiko: an open SSH connection
            client.close()

    # ----------------------------------------------------------------- internals

    def _ensure_reachable(self) -> None:
        if self._unreachable is None and self._host is None:
            self._unreachable = self._connect()
        if self._unreachable is not None:
            raise ProbeError(f"{self.label}: {self._unreachable}", url=self.label)

    def _connect(self) -> str | None:
        """Open the host and see it answer; what is wrong otherwise (kept for the rest of the run)."""
        try:
            self._host = _testinfra_host(self.spec, self.timeout_s, self.max_output_bytes)
        except Exception as exc:  # noqa: BLE001 - testinfra raises RuntimeError/ValueError/ImportError for a bad spec
            return f"cannot open the host ({_cause(exc)})"
        try:
            answer = self._run(f"echo {_REACHABLE}")
        except ProbeError as exc:
            return self._unreachable or f"host unreachable ({str(exc).removeprefix(f'{self.label}: ')})"
        if answer.rc != 0 or _REACHABLE not in answer.text:
            return f"host unreachable ({answer.error_text})"
        return None

    def _run(self, script: str) -> CommandOutput:
        # C locale: stable words and numbers to parse. On a remote host its own `timeout` stops
        # the script, since killing the client does not (ssh without a pty, docker and kubectl
        # exec all leave the command running). On local:// the script is in the client's process
        # group, killed at the deadline; `timeout` would only move it out of that kill's reach.
        seconds = max(1, int(self.timeout_s))
        bound = "" if self._host.backend.NAME == "local" else f'command -v timeout >/dev/null 2>&1 && exec timeout {seconds} sh -c "$1"; '
        wrapper = f'LC_ALL=C; export LC_ALL; {bound}exec sh -c "$1"'
        command = f"sh -c {shlex.quote(wrapper)} releasegate {shlex.quote(script)}"
        host = self._host
        try:
            if host.backend.NAME in _PROCESS_BACKENDS:
                result = host.run(command)
            else:
                result = _in_thread(lambda: host.run(command), self.timeout_s + _CLIENT_GRACE_S, on_timeout=self.close)
        except ProbeTimeout as exc:
            # A host that let one command hang is not waited for again in this run.
            self._unreachable = f"host unresponsive ({exc})"
            raise ProbeTimeout(f"{self.label}: {exc}", url=self.label) from None
        except ProbeError as exc:
            raise ProbeError(f"{self.label}: {exc}", url=self.label) from None
        except Exception as exc:  # noqa: BLE001 - e.g. ssh exiting 255 (connection failed) is a RuntimeError
            self._unreachable = f"host unreachable ({_cause(exc)})"
            raise ProbeError(f"{self.label}: {self._unreachable}", url=self.label) from None
        output = CommandOutput(rc=int(result.rc), stdout=bytes(result.stdout_bytes), stderr=bytes(result.stderr_bytes))
        if bound and output.rc == 124:  # coreutils timeout: the host's own bound fired first
            self._unreachable = f"host unresponsive (a command did not finish within {seconds} s)"
            raise ProbeTimeout(f"{self.label}: a command did not finish within {seconds} s", url=self.label)
        return output


def _testinfra_host(spec: str, timeout_s: float, max_output_bytes: int) -> Any:
    import testinfra.backend  # type: ignore[import-untyped]  # no py.typed; imported late: ~30 modules
    import testinfra.host  # type: ignore[import-untyped]

    backend = testinfra.backend.get_backend(spec)
    host = testinfra.host.Host(backend)
    backend.set_host(host)
    if backend.NAME in _PROCESS_BACKENDS:
        grace = 0.0 if backend.NAME == "local" else _CLIENT_GRACE_S  # local: no host-side `timeout` to wait for
        backend.run_local = _bounded_run_local(backend, timeout_s + grace, max_output_bytes)
    return host


def _bounded_run_local(backend: Any, timeout_s: float, cap: int) -> Callable[..., Any]:
    """A replacement for BaseBackend.run_local: same command, bounded in time and output."""
    from testinfra.backend.base import CommandResult  # type: ignore[import-untyped]

    def run_local(command: str, *args: str) -> Any:
        encoded = backend.encode(backend.quote(command, *args))
        rc, stdout, stderr = run_bounded(encoded, timeout_s=timeout_s, max_output_bytes=cap)
        # Not backend.result(): it logs the local command line at debug level, and an ssh one
        # built from a spec with a password carries it (sshpass -p).
        return CommandResult(backend=backend, exit_status=rc, command=encoded, _stdout=stdout, _stderr=stderr)

    return run_local


def run_bounded(command: bytes | Sequence[str], *, timeout_s: float, max_output_bytes: int) -> tuple[int, bytes, bytes]:
    """Run a local command (bytes: through /bin/sh) in its own process group.

    At the deadline the whole group is killed (ProbeTimeout); output beyond the cap is drained
    and dropped, and the call then raises ProbeError rather than hand back a cut-off answer.
    """
    shell = isinstance(command, bytes)
    process = subprocess.Popen(  # noqa: S602 - the scripts are this module's own, their arguments quoted
        command,
        shell=shell,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert process.stdout is not None and process.stderr is not None
    deadline = time.monotonic() + timeout_s
    out_fd, err_fd = process.stdout.fileno(), process.stderr.fileno()
    buffers: dict[int, bytearray] = {out_fd: bytearray(), err_fd: bytearray()}
    over = False
    exited_at: float | None = None
    try:
        with selectors.DefaultSelector() as selector:
            for fd in buffers:
                selector.register(fd, selectors.EVENT_READ)
            while selector.get_map():
                now = time.monotonic()
                if now >= deadline:
                    break
                if process.poll() is not None:
                    exited_at = exited_at or now
                    if now - exited_at > _PIPE_GRACE_S:
                        break
                for key, _ in selector.select(timeout=min(0.1, deadline - now)):
                    fd = int(key.fd)
                    chunk = os.read(fd, 65_536)
                    if not chunk:
                        selector.unregister(fd)
                        continue
                    buffer = buffers[fd]
                    room = max(0, max_output_bytes - len(buffer))
                    over = over or len(chunk) > room
                    buffer += chunk[:room]
        try:
            rc = process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise ProbeTimeout(f"a command did not finish within {timeout_s:g} s") from None
    finally:
        _kill_group(process)
        process.stdout.close()
        process.stderr.close()
    if over:
        raise ProbeError(f"a command printed more than {max_output_bytes} bytes; refusing to judge cut-off output")
    return rc, bytes(buffers[out_fd]), bytes(buffers[err_fd])


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


def _in_thread(call: Callable[[], Any], timeout_s: float, *, on_timeout: Callable[[], None]) -> Any:
    """``call()`` for backends without a local client process (paramiko): waited for at most
    ``timeout_s``; past it the connection is closed, which ends the blocked read."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=target, name="releasegate-host", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        on_timeout()
        raise ProbeTimeout(f"a command did not finish within {timeout_s:g} s")
    if "error" in box:
        raise box["error"]
    return box["result"]


def _cause(exc: BaseException) -> str:
    """One line for a backend failure, never a command line (an ssh one may carry a password)."""
    argument = exc.args[0] if exc.args else None
    stderr = getattr(argument, "stderr", None)  # testinfra's ssh backend raises RuntimeError(CommandResult)
    if isinstance(stderr, str) and stderr.strip():
        return _last_line(stderr)
    if stderr is not None:
        return f"connection failed (exit status {getattr(argument, 'rc', '?')})"
    return _last_line(str(exc)) or type(exc).__name__


# --------------------------------------------------------------------------- shared helpers (pure)

Op = Literal["<", "<=", ">", ">=", "=="]
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
}
_CONDITION = re.compile(r"^\s*(<=|>=|==|<|>)\s*(-?[0-9]+(?:\.[0-9]+)?)\s*$")


def parse_condition(text: str) -> tuple[Op, float]:
    """``">=4096"`` -> (">=", 4096.0); ValueError for anything else."""
    match = _CONDITION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a condition such as '>=4096'")
    op: Op = match.group(1)  # type: ignore[assignment]  # the pattern admits only the five operators
    return op, float(match.group(2))


def holds(condition: str, value: float) -> bool:
    op, bound = parse_condition(condition)
    return _OPS[op](value, bound)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _number(value: float) -> str:
    return f"{value:g}" if value != int(value) else str(int(value))


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _cut(items: Sequence[Any]) -> list[Any]:
    return list(items[:MAX_EVIDENCE_ITEMS])


def _combine(host: str, failures: list[str], errors: list[str], passed: str) -> tuple[Literal["passed", "failed", "error"], str]:
    """Every violation first, then what could not be judged; a pass only when there is neither."""
    if failures:
        extra = f"; also could not judge: {_listed(errors)}" if errors else ""
        return "failed", f"{host}: {_listed(failures)}{extra}"
    if errors:
        return "error", f"{host}: could not judge: {_listed(errors)}"
    return "passed", f"{host}: {passed}"


def _listed(problems: list[str], shown: int = 5) -> str:
    """A summary is one line: the first few problems, then how many more (all are in the evidence)."""
    more = f"; and {len(problems) - shown} more" if len(problems) > shown else ""
    return "; ".join(problems[:shown]) + more


# --------------------------------------------------------------------------- processes and nofile


@dataclass(frozen=True)
class ProcessInfo:
    """One process of the wanted name: its argv[0] and its open-file limits (None: unlimited)."""

    pid: int
    argv0: str = ""
    soft_nofile: int | None = None
    hard_nofile: int | None = None
    limits_read: bool = False


@dataclass(frozen=True)
class ProcessTable:
    """The processes named ``name`` on a host (exact name, as ``pgrep -x`` matches it)."""

    name: str
    processes: tuple[ProcessInfo, ...]
    more: bool = False  # more than MAX_PROCESSES matched; only the first were read


def process_script(name: str, *, limits: bool) -> str:
    """Lists /proc/<pid> whose comm is ``name`` (cut to 15 characters, as the kernel keeps it):
    ``@@ pid``, the argv[0] line, and with ``limits`` the /proc/<pid>/limits text after ``@@limits``."""
    comm = name[:COMM_LENGTH]
    lines = [
        f"n={shlex.quote(comm)}; i=0",
        "for d in /proc/[0-9]*; do",
        '  { IFS= read -r c < "$d/comm"; } 2>/dev/null || continue',
        '  [ "$c" = "$n" ] || continue',
        "  i=$((i + 1))",
        f'  if [ "$i" -gt {MAX_PROCESSES} ]; then echo "@@more"; break; fi',
        '  echo "@@ ${d#/proc/}"',
        '  tr "\\000" "\\n" < "$d/cmdline" 2>/dev/null | head -n 1',
    ]
    if limits:
        lines += ['  echo "@@limits"', '  cat "$d/limits" 2>/dev/null']
    # A process that ended while being read is just not listed whole: not a failed listing.
    lines += ["done", "exit 0"]
    return "\n".join(lines) + "\n"


def parse_limits(text: str) -> dict[str, tuple[int | None, int | None]]:
    """``/proc/<pid>/limits`` -> {"Max open files": (soft, hard)}, None meaning unlimited."""
    limits: dict[str, tuple[int | None, int | None]] = {}
    for line in text.splitlines():
        match = re.match(r"^(Max [a-z ]+?)\s{2,}(\S+)\s+(\S+)(?:\s+\S+)?\s*$", line)
        if match is None:
            continue
        soft, hard = (_limit_value(value) for value in match.group(2, 3))
        if soft is not False and hard is not False:
            limits[match.group(1)] = (soft, hard)
    return limits


def _limit_value(text: str) -> int | None | Literal[False]:
    if text == "unlimited":
        return None
    return int(text) if text.isdigit() else False


def matches_name(name: str, argv0: str) -> bool:
    """Whether a process whose comm already matched ``name[:15]`` is exactly ``name``.

    Names of up to 15 characters are decided by comm alone; longer ones (cut by the kernel)
    also need argv[0]'s base name to be the whole name.
    """
    if len(name) <= COMM_LENGTH:
        return True
    # argv[0] as exec'd ("/opt/bin/name"), or rewritten by the process ("name: worker").
    return name in (os.path.basename(argv0), os.path.basename(argv0.split(" ", 1)[0]))


def parse_process_table(name: str, text: str) -> ProcessTable:
    """Output of :func:`process_script` -> the processes that are exactly ``name``."""
    found: list[ProcessInfo] = []
    more = False
    pid: int | None = None
    argv0: str | None = None
    limit_lines: list[str] | None = None

    def flush() -> None:
        if pid is None or not matches_name(name, argv0 or ""):
            return
        if limit_lines is None:
            found.append(ProcessInfo(pid=pid, argv0=argv0 or ""))
            return
        soft, hard = parse_limits("\n".join(limit_lines)).get("Max open files", (None, None))
        read = "Max open files" in parse_limits("\n".join(limit_lines))
        found.append(ProcessInfo(pid=pid, argv0=argv0 or "", soft_nofile=soft, hard_nofile=hard, limits_read=read))

    for line in text.splitlines():
        if line == "@@more":
            more = True
        elif line.startswith("@@ ") and line[3:].strip().isdigit():
            flush()
            pid, argv0, limit_lines = int(line[3:].strip()), None, None
        elif line == "@@limits":
            limit_lines = []
        elif limit_lines is not None:
            limit_lines.append(line)
        elif pid is not None and argv0 is None:
            argv0 = line
    flush()
    return ProcessTable(name=name, processes=tuple(found), more=more)


def observe_processes(session: HostSession, name: str, *, limits: bool = False) -> ProcessTable:
    output = session.run(process_script(name, limits=limits))
    if output.rc != 0:
        raise ProbeError(f"{session.label}: could not list processes: {output.error_text}", url=session.label)
    return parse_process_table(name, output.text)


def judge_nofile(host: str, table: ProcessTable, *, min_nofile: int) -> Finding:
    """infra.host.nofile: every process named ``table.name`` has a soft open-file limit >= ``min_nofile``."""
    expected = f"soft open-file limit >= {min_nofile} for every '{table.name}' process"
    rows = [
        {"pid": p.pid, "soft": _limit_text(p.soft_nofile), "hard": _limit_text(p.hard_nofile)} for p in table.processes if p.limits_read
    ]
    evidence: dict[str, Any] = {"host": host, "process": table.name, "processes": _cut(rows), "more_than_read": table.more}
    if not table.processes:
        return Finding(
            "error",
            f"{host}: no process named '{table.name}' is running (or visible to the gate's user): its open-file limit cannot be read",
            observed="no such process",
            expected=expected,
            evidence=evidence,
        )
    unread = [p.pid for p in table.processes if not p.limits_read]
    low = [p for p in table.processes if p.limits_read and p.soft_nofile is not None and p.soft_nofile < min_nofile]
    failures = []
    if low:
        shown = ", ".join(f"pid {p.pid}: {p.soft_nofile}" for p in low[:5]) + (", ..." if len(low) > 5 else "")
        failures.append(
            f"{len(low)} of {len(table.processes)} '{table.name}' processes have a soft open-file limit below {min_nofile} ({shown})"
        )
    errors = [f"/proc/<pid>/limits unreadable for pid {', '.join(map(str, unread[:5]))}"] if unread else []
    read = [p for p in table.processes if p.limits_read]
    finite = [p.soft_nofile for p in read if p.soft_nofile is not None]
    lowest = str(min(finite)) if finite else "unlimited"
    observed = f"lowest soft limit {lowest}" if read else "limits unread"
    named = f"1 '{table.name}' process" if len(table.processes) == 1 else f"{len(table.processes)} '{table.name}' processes"
    passed = f"{named}, lowest soft open-file limit {lowest} >= {min_nofile}"
    outcome, summary = _combine(host, failures, errors, passed)
    return Finding(outcome, summary, observed=observed, expected=expected, evidence=evidence)


def _limit_text(value: int | None) -> int | str:
    return "unlimited" if value is None else value


# --------------------------------------------------------------------------- sysctl

_SYSCTL_NAME = re.compile(r"^[A-Za-z0-9_-]+(?:[./][A-Za-z0-9_-]+)*$")


@dataclass(frozen=True)
class SysctlReading:
    """One kernel setting as read from /proc/sys: its raw text, or why there is none."""

    name: str
    raw: str | None
    problem: str | None = None


def sysctl_script(names: Iterable[str]) -> str:
    """``@@ name`` then the value for each readable setting; ``@@missing name`` / ``@@unreadable name``."""
    lines = []
    for name in names:
        # sysctl(8) takes either separator; with slashes a dot may be part of a name (eth0.100).
        path = "/proc/sys/" + (name if "/" in name else name.replace(".", "/"))
        quoted, file = shlex.quote(name), shlex.quote(path)
        lines.append(
            f"if [ ! -e {file} ]; then echo '@@missing '{quoted}; "
            f"elif [ ! -r {file} ]; then echo '@@unreadable '{quoted}; "
            f"else echo '@@ '{quoted}; head -c 4096 {file}; echo; fi"
        )
    return "\n".join(lines) + "\n"


def parse_sysctl(names: Sequence[str], text: str) -> dict[str, SysctlReading]:
    """Output of :func:`sysctl_script` -> a reading per name (a name absent from it: not read)."""
    values: dict[str, list[str]] = {}
    problems: dict[str, str] = {}
    current: str | None = None
    for line in text.splitlines():
        if line.startswith("@@missing "):
            problems[line[10:]], current = "no such setting on this host", None
        elif line.startswith("@@unreadable "):
            problems[line[13:]], current = "not readable", None
        elif line.startswith("@@ "):
            current = line[3:]
            values[current] = []
        elif current is not None and line.strip():
            values[current].append(line.strip())
    readings: dict[str, SysctlReading] = {}
    for name in names:
        if name in values:
            readings[name] = SysctlReading(name, " ".join(" ".join(values[name]).split()))
        else:
            readings[name] = SysctlReading(name, None, problems.get(name, "not read"))
    return readings


def sysctl_measure(raw: str) -> tuple[float, str]:
    """The number a condition compares: the value itself, or for a range ("32768 60999") its
    width, the count of values in it. ValueError for anything else."""
    fields = raw.split()
    if len(fields) == 1 and re.fullmatch(r"-?[0-9]+", fields[0]):
        return float(fields[0]), "value"
    if len(fields) == 2 and all(re.fullmatch(r"-?[0-9]+", f) for f in fields):
        low, high = int(fields[0]), int(fields[1])
        return float(high - low + 1), f"width of {low}-{high}"
    raise ValueError(f"{raw!r} is neither a number nor a range of two numbers")


def observe_sysctl(session: HostSession, names: Sequence[str]) -> dict[str, SysctlReading]:
    valid = [n for n in names if _SYSCTL_NAME.match(n)]
    readings = {n: SysctlReading(n, None, "not a kernel setting name") for n in names if n not in valid}
    if valid:
        output = session.run(sysctl_script(valid))
        if output.rc != 0:
            raise ProbeError(f"{session.label}: could not read /proc/sys: {output.error_text}", url=session.label)
        readings.update(parse_sysctl(valid, output.text))
    return {n: readings[n] for n in names}


def judge_sysctl(host: str, readings: Mapping[str, SysctlReading], conditions: Mapping[str, str]) -> Finding:
    """infra.host.sysctl: every setting meets its condition; one that cannot be read is an error
    for that setting, and the others are still judged."""
    failures: list[str] = []
    errors: list[str] = []
    rows: list[dict[str, Any]] = []
    for name, condition in conditions.items():
        reading = readings.get(name) or SysctlReading(name, None, "not read")
        row: dict[str, Any] = {"name": name, "condition": condition, "raw": reading.raw}
        if reading.raw is None:
            errors.append(f"{name}: {reading.problem}")
            row["outcome"] = "error"
        else:
            try:
                measured, what = sysctl_measure(reading.raw)
                ok = holds(condition, measured)
            except ValueError as exc:
                errors.append(f"{name}: {exc}")
                row["outcome"] = "error"
            else:
                row.update(measured=measured, measured_as=what, outcome="passed" if ok else "failed")
                if not ok:
                    shown = _number(measured) if what == "value" else f"{_number(measured)} ({what})"
                    failures.append(f"{name} = {shown}, policy {condition.strip()}")
        rows.append(row)
    outcome, summary = _combine(
        host, failures, errors, f"{_count(len(conditions), 'kernel setting', 'kernel settings')} as the policy wants"
    )
    observed = {r["name"]: r["raw"] for r in rows}
    return Finding(outcome, summary, observed=observed, expected=dict(conditions), evidence={"host": host, "settings": rows})


# --------------------------------------------------------------------------- disk


@dataclass(frozen=True)
class DiskUsage:
    """df -P -k for one path: its mount and usage, or why there is none."""

    path: str
    mount: str | None = None
    filesystem: str | None = None
    size_kb: int | None = None
    used_kb: int | None = None
    available_kb: int | None = None
    missing: bool = False
    problem: str | None = None

    @property
    def percent(self) -> float | None:
        """Used share of what non-root users can have (used / (used + available)), as df's Capacity."""
        if self.used_kb is None or self.available_kb is None or self.used_kb + self.available_kb == 0:
            return None
        return 100.0 * self.used_kb / (self.used_kb + self.available_kb)


def disk_script(path: str) -> str:
    quoted = shlex.quote(path)
    return f"[ -e {quoted} ] || exit 3\ndf -P -k -- {quoted}\n"


def parse_df(path: str, text: str) -> DiskUsage:
    """``df -P -k -- path`` -> its usage (POSIX format: one header line, one line per file system)."""
    lines = [line for line in text.splitlines() if line.strip()]
    data = [line for line in lines if not line.startswith("Filesystem")]
    if len(data) != 1:
        return DiskUsage(path, problem=f"df printed {len(data)} data lines, expected 1")
    fields = data[0].split(None, 5)
    if len(fields) != 6 or not all(f.isdigit() for f in fields[1:4]) or not fields[4].endswith("%"):
        return DiskUsage(path, problem=f"unexpected df line: {data[0][:120]!r}")
    return DiskUsage(
        path, mount=fields[5], filesystem=fields[0], size_kb=int(fields[1]), used_kb=int(fields[2]), available_kb=int(fields[3])
    )


def observe_disk(session: HostSession, paths: Sequence[str]) -> list[DiskUsage]:
    usages: list[DiskUsage] = []
    for path in paths:
        output = session.run(disk_script(path))
        if output.rc == 3:
            usages.append(DiskUsage(path, missing=True))
        elif output.rc != 0:
            usages.append(DiskUsage(path, problem=f"df failed: {output.error_text}"))
        else:
            usages.append(parse_df(path, output.text))
    return usages


def judge_disk(host: str, usages: Sequence[DiskUsage], *, max_percent: float) -> Finding:
    """infra.host.disk: the mount holding each path is used below ``max_percent``; a path that
    does not exist fails (a data or log folder the service needs is not there)."""
    failures: list[str] = []
    errors: list[str] = []
    rows: list[dict[str, Any]] = []
    for usage in usages:
        percent = usage.percent
        rows.append(
            {
                "path": usage.path,
                "mount": usage.mount,
                "filesystem": usage.filesystem,
                "percent": None if percent is None else round(percent, 2),
            }
            | ({"size_kb": usage.size_kb, "used_kb": usage.used_kb, "available_kb": usage.available_kb} if usage.mount else {})
        )
        if usage.missing:
            failures.append(f"{usage.path} does not exist")
        elif usage.problem is not None or percent is None:
            errors.append(f"{usage.path}: {usage.problem or 'no usage figure (a file system of size 0)'}")
        elif percent >= max_percent:
            failures.append(f"{usage.mount} (holding {usage.path}) is {percent:.1f}% used, limit {_number(max_percent)}%")
    mounts = sorted({u.mount for u in usages if u.mount})
    worst = max((u.percent for u in usages if u.percent is not None), default=None)
    outcome, summary = _combine(
        host,
        failures,
        errors,
        f"{_count(len(mounts), 'mount', 'mounts')} below {_number(max_percent)}% used (highest {worst:.1f}%)"
        if worst is not None
        else "no mount",
    )
    observed = {r["path"]: (None if r["percent"] is None else f"{r['percent']:.1f}%") for r in rows}
    return Finding(outcome, summary, observed=observed, expected=f"< {_number(max_percent)}% used", evidence={"host": host, "mounts": rows})


# --------------------------------------------------------------------------- services


# `systemctl is-enabled` states that bring the unit back after a reboot (static units are
# started by whatever needs them; indirect/generated/alias ones by another unit or generator).
_ENABLED_STATES = frozenset({"enabled", "enabled-runtime", "static", "indirect", "generated", "alias"})
_RUNNING_STATES = frozenset({"active", "reloading"})


@dataclass(frozen=True)
class ServiceState:
    name: str
    active: str | None = None  # systemctl is-active's word
    enabled: str | None = None  # systemctl is-enabled's word (or its error line)
    pids: tuple[int, ...] = ()  # without a service manager: processes of exactly this name


@dataclass(frozen=True)
class ServicesObservation:
    manager: Literal["systemd", "none"]
    states: tuple[ServiceState, ...] = field(default_factory=tuple)


SYSTEMD_SCRIPT = "[ -d /run/systemd/system ] && echo systemd || echo none\n"


def systemd_script(name: str) -> str:
    quoted = shlex.quote(name)
    return (
        f"printf 'active='; systemctl is-active -- {quoted} 2>&1 | head -n 1\n"
        f"printf 'enabled='; systemctl is-enabled -- {quoted} 2>&1 | head -n 1\n"
    )


def parse_systemd_state(name: str, text: str) -> ServiceState:
    words: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key in ("active", "enabled"):
            words[key] = value.strip()
    return ServiceState(name, active=words.get("active") or None, enabled=words.get("enabled") or None)


def observe_services(session: HostSession, names: Sequence[str]) -> ServicesObservation:
    manager = session.run(SYSTEMD_SCRIPT).text.strip()
    if manager == "systemd":
        states = [parse_systemd_state(name, session.run(systemd_script(name)).text) for name in names]
        return ServicesObservation("systemd", tuple(states))
    tables = [observe_processes(session, name) for name in names]
    return ServicesObservation("none", tuple(ServiceState(t.name, pids=tuple(p.pid for p in t.processes)) for t in tables))


def _systemctl_word(text: str | None) -> bool:
    """systemctl answers with one word (active, inactive, enabled, masked, ...); anything else
    is an error message (no systemctl, no bus)."""
    return text is not None and re.fullmatch(r"[a-z-]+", text) is not None


def judge_services(host: str, observation: ServicesObservation) -> Finding:
    """infra.host.services: each service running, and enabled where systemd manages services;
    with no service manager, a running process of exactly that name."""
    failures: list[str] = []
    errors: list[str] = []
    rows: list[dict[str, Any]] = []
    for state in observation.states:
        if observation.manager == "none":
            rows.append({"name": state.name, "pids": list(state.pids[:10])})
            if not state.pids:
                failures.append(f"{state.name}: no process of that name is running")
            continue
        rows.append({"name": state.name, "active": state.active, "enabled": state.enabled})
        if state.enabled is not None and (state.enabled.startswith("Failed to get unit file state") or state.enabled == "not-found"):
            failures.append(f"{state.name}: no such unit ({state.enabled})")
            continue
        if not _systemctl_word(state.active) or not _systemctl_word(state.enabled):
            errors.append(f"{state.name}: systemctl gave no state ({state.active or state.enabled or 'no output'})")
            continue
        assert state.active is not None and state.enabled is not None
        if state.active not in _RUNNING_STATES:
            failures.append(f"{state.name} is {state.active}, not running")
        if state.enabled not in _ENABLED_STATES:
            failures.append(f"{state.name} is {state.enabled}, not enabled (it would not come back after a reboot)")
    what = "running and enabled (systemd)" if observation.manager == "systemd" else "running (no service manager: by process name)"
    outcome, summary = _combine(host, failures, errors, f"{_count(len(observation.states), 'service', 'services')} {what}")
    observed = {
        r["name"]: (r.get("active"), r.get("enabled")) if observation.manager == "systemd" else f"{len(r['pids'])} processes" for r in rows
    }
    expected = "running and enabled" if observation.manager == "systemd" else "a running process of that exact name"
    return Finding(
        outcome, summary, observed=observed, expected=expected, evidence={"host": host, "manager": observation.manager, "services": rows}
    )


# --------------------------------------------------------------------------- ports

AddressKind = Literal["loopback", "private", "wildcard", "public"]
# RFC 1918, unique local (RFC 4193) and link-local: reachable only inside a site or a link.
_PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "fc00::/7", "fe80::/10")
)


@dataclass(frozen=True)
class Listener:
    """A listening TCP socket: the address it is bound to (as printed, without brackets or
    ``%interface``) and its port."""

    address: str
    port: int

    @property
    def kind(self) -> AddressKind:
        return classify_address(self.address)

    def __str__(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"


@dataclass(frozen=True)
class ListenerTable:
    source: Literal["ss", "proc"]
    listeners: tuple[Listener, ...]
    unparsed: tuple[str, ...] = ()


def classify_address(address: str) -> AddressKind:
    """Where a socket bound to ``address`` can be reached from."""
    if address in ("*", "0.0.0.0", "::", ""):
        return "wildcard"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "public"  # unreadable: assume the worst
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:
        return "wildcard"
    if ip.is_loopback:
        return "loopback"
    if any(ip in network for network in _PRIVATE_NETWORKS):
        return "private"
    return "public"


# Without ss, /proc/net/tcp lists every socket of the host: on a busy server tens of thousands of
# lines, far over the output cap. The host keeps only the listening ones (state 0A) itself, with
# nothing but sh's read (a slim image may lack grep and awk).
LISTENERS_SCRIPT = (
    "if command -v ss >/dev/null 2>&1; then echo '@@ss'; ss -Htln 2>/dev/null || ss -tln\n"
    "else echo '@@proc'; [ -r /proc/net/tcp ] || { echo 'cannot read /proc/net/tcp' >&2; exit 1; }\n"
    '  for table in /proc/net/tcp /proc/net/tcp6; do [ -r "$table" ] || continue\n'
    '    while read -r sl local remote st rest; do if [ "$st" = 0A ]; then echo "$sl $local $remote $st"; fi; done < "$table"\n'
    "  done; fi\n"
)


def parse_ss(text: str) -> ListenerTable:
    """``ss -Htln`` (or ``ss -tln`` with its header) -> listeners.

    ``LISTEN 0 4096 127.0.0.53%lo:53 0.0.0.0:*``, ``[::]:22``, ``*:80``, ``[fe80::1]%eth0:22``.
    """
    listeners: list[Listener] = []
    unparsed: list[str] = []
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0] == "State":
            continue
        if fields[0] == "LISTEN" and len(fields) >= 5:
            local = fields[3]
        elif fields[0].isdigit() and len(fields) >= 4:  # an ss that leaves out the State column
            local = fields[2]
        else:
            unparsed.append(line[:200])
            continue
        listener = _parse_local(local)
        if listener is None:
            unparsed.append(line[:200])
        else:
            listeners.append(listener)
    return ListenerTable("ss", tuple(listeners), tuple(unparsed))


def _parse_local(local: str) -> Listener | None:
    host, sep, port = local.rpartition(":")
    if not sep or not port.isdigit():
        return None
    if host.startswith("[") and "]" in host:  # [addr] or [addr]%iface
        host = host[1 : host.index("]")]
    host = host.split("%", 1)[0]  # 127.0.0.53%lo, fe80::1%eth0: bound to one interface
    return Listener(host, int(port))


def parse_proc_net_tcp(text: str) -> ListenerTable:
    """/proc/net/tcp and tcp6 (where ss is missing, e.g. in a slim container) -> listeners (state 0A)."""
    listeners: list[Listener] = []
    unparsed: list[str] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[0] == "sl":
            continue
        if fields[3] != "0A":
            continue
        address_hex, _, port_hex = fields[1].partition(":")
        try:
            raw = bytes.fromhex(address_hex)
            port = int(port_hex, 16)
        except ValueError:
            unparsed.append(line[:200])
            continue
        if len(raw) == 4:
            address = str(ipaddress.IPv4Address(raw[::-1]))
        elif len(raw) == 16:  # four host-order 32-bit words
            address = str(ipaddress.IPv6Address(b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))))
        else:
            unparsed.append(line[:200])
            continue
        listeners.append(Listener(address, port))
    return ListenerTable("proc", tuple(listeners), tuple(unparsed))


def parse_listeners(text: str) -> ListenerTable:
    """Output of :data:`LISTENERS_SCRIPT` (``@@ss`` or ``@@proc`` first)."""
    head, _, rest = text.partition("\n")
    if head.strip() == "@@proc":
        return parse_proc_net_tcp(rest)
    if head.strip() == "@@ss":
        return parse_ss(rest)
    raise ValueError("neither ss output nor /proc/net/tcp")


def observe_listeners(session: HostSession) -> ListenerTable:
    output = session.run(LISTENERS_SCRIPT)
    try:
        table = parse_listeners(output.text)
    except ValueError:
        raise ProbeError(f"{session.label}: could not list listening sockets: {output.error_text}", url=session.label) from None
    if output.rc != 0 and not table.listeners:
        raise ProbeError(f"{session.label}: could not list listening sockets: {output.error_text}", url=session.label)
    return table


def judge_ports(
    host: str, table: ListenerTable, *, listening: Sequence[int], private_ports: Sequence[int], public_ports: Sequence[int] | None
) -> Finding:
    """infra.host.ports: expected ports listen; private ports are bound to loopback or private
    addresses only; with ``public_ports`` set, nothing else listens on a public or wildcard address."""
    failures: list[str] = []
    errors: list[str] = []
    ports = {listener.port for listener in table.listeners}
    missing = [p for p in listening if p not in ports]
    if missing:
        failures.append(f"not listening: {', '.join(map(str, missing))}")
    exposed = [str(s) for s in table.listeners if s.port in private_ports and s.kind in ("wildcard", "public")]
    if exposed:
        failures.append(f"private ports reachable beyond loopback and private networks: {', '.join(exposed[:10])}")
    unexpected: list[str] = []
    if public_ports is not None:
        allowed = set(public_ports) | set(private_ports)  # a private port on a public address already failed above
        unexpected = [str(s) for s in table.listeners if s.kind in ("wildcard", "public") and s.port not in allowed]
        if unexpected:
            failures.append(f"unexpected public listeners: {', '.join(unexpected[:10])}{', ...' if len(unexpected) > 10 else ''}")
    if table.unparsed and not table.listeners:
        errors.append(f"{len(table.unparsed)} lines of socket output could not be read")
    sockets = _count(len(table.listeners), "listening socket", "listening sockets")
    passed = f"{sockets}; {_count(len(listening), 'expected port', 'expected ports')} listening"
    if private_ports:
        passed += f", private ports {', '.join(map(str, private_ports))} on loopback/private addresses only"
    if public_ports is not None:
        passed += ", nothing unexpected on public addresses"
    outcome, summary = _combine(host, failures, errors, passed)
    observed = {"missing": missing, "exposed_private": exposed[:10], "unexpected_public": unexpected[:10]}
    expected = {
        "listening": list(listening),
        "private_ports": list(private_ports),
        "public_ports": None if public_ports is None else list(public_ports),
    }
    evidence = {
        "host": host,
        "source": table.source,
        "listeners": _cut([{"address": s.address, "port": s.port, "kind": s.kind} for s in table.listeners]),
        "listener_count": len(table.listeners),
        "unparsed": list(table.unparsed[:5]),
    }
    return Finding(outcome, summary, observed=observed, expected=expected, evidence=evidence)


# --------------------------------------------------------------------------- certificate files


@dataclass(frozen=True)
class CertFileReading:
    """A certificate file and its key as read on a host."""

    cert: str
    pem: bytes | None = None  # None: not read (missing or problem)
    cert_missing: bool = False
    cert_problem: str | None = None
    key: str | None = None
    key_mode: int | None = None
    key_owner: str | None = None
    key_missing: bool = False
    key_problem: str | None = None


def read_file_script(path: str, cap: int) -> str:
    quoted = shlex.quote(path)
    return f"[ -e {quoted} ] || exit 3\n[ -r {quoted} ] || exit 4\nhead -c {cap} -- {quoted}\n"


def stat_script(path: str) -> str:
    quoted = shlex.quote(path)
    # -L: the mode of the key itself, not of a symlink to it (certbot's live/ -> archive/).
    return f"[ -e {quoted} ] || exit 3\nstat -L -c '%a %U:%G' -- {quoted}\n"


def parse_stat(text: str) -> tuple[int, str]:
    """``stat -L -c '%a %U:%G'`` -> (mode bits, owner)."""
    fields = text.split()
    if not fields or not re.fullmatch(r"[0-7]{1,4}", fields[0]):
        raise ValueError(f"unexpected stat output {text.strip()[:80]!r}")
    return int(fields[0], 8), (fields[1] if len(fields) > 1 else "")


def observe_cert_files(
    session: HostSession, files: Sequence[tuple[str, str | None]], *, max_cert_bytes: int = 262_144
) -> list[CertFileReading]:
    readings: list[CertFileReading] = []
    cap = min(max_cert_bytes, session.max_output_bytes)
    for cert, key in files:
        reading: dict[str, Any] = {"cert": cert, "key": key}
        output = session.run(read_file_script(cert, cap + 1))
        if output.rc == 3:
            reading["cert_missing"] = True
        elif output.rc == 4:
            reading["cert_problem"] = "not readable by the gate's user on the host"
        elif output.rc != 0:
            reading["cert_problem"] = f"could not be read: {output.error_text}"
        elif len(output.stdout) > cap:
            reading["cert_problem"] = f"larger than {cap} bytes: not a certificate file"
        else:
            reading["pem"] = output.stdout
        if key is not None:
            stat = session.run(stat_script(key))
            if stat.rc == 3:
                reading["key_missing"] = True
            elif stat.rc != 0:
                reading["key_problem"] = f"stat failed: {stat.error_text}"
            else:
                try:
                    reading["key_mode"], reading["key_owner"] = parse_stat(stat.text)
                except ValueError as exc:
                    reading["key_problem"] = str(exc)
        readings.append(CertFileReading(**reading))
    return readings


@dataclass(frozen=True)
class CertSummary:
    subject: str
    not_before: datetime
    not_after: datetime


def parse_pem_certificates(pem: bytes) -> list[CertSummary]:
    """Every X.509 certificate in a PEM file (a leaf, or a chain); ValueError when there is none."""
    from cryptography import x509

    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise ValueError(f"does not parse as PEM X.509 ({_last_line(str(exc)) or 'no certificate'})") from None
    return [
        CertSummary(subject=cert.subject.rfc4514_string()[:200], not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc)
        for cert in certificates
    ]


def mode_text(mode: int) -> str:
    return f"0{mode:o}" if mode < 0o1000 else f"{mode:o}"


def judge_cert_files(host: str, readings: Sequence[CertFileReading], *, max_key_mode: str, min_days: int, now: datetime) -> Finding:
    """infra.host.cert_files: every certificate present, PEM X.509, valid now and for at least
    ``min_days`` more; every key present with no permission bit outside ``max_key_mode``."""
    allowed = int(max_key_mode, 8)
    failures: list[str] = []
    errors: list[str] = []
    rows: list[dict[str, Any]] = []
    soonest: float | None = None
    for reading in readings:
        row: dict[str, Any] = {"cert": reading.cert, "key": reading.key}
        if reading.cert_missing:
            failures.append(f"{reading.cert} does not exist")
        elif reading.cert_problem is not None or reading.pem is None:
            errors.append(f"{reading.cert}: {reading.cert_problem or 'not read'}")
        else:
            try:
                certificates = parse_pem_certificates(reading.pem)
            except ValueError as exc:
                failures.append(f"{reading.cert} {exc}")
            else:
                row["certificates"] = [
                    {"subject": c.subject, "not_before": c.not_before.isoformat(), "not_after": c.not_after.isoformat()}
                    for c in certificates[:10]
                ]
                file_days = min((c.not_after - now).total_seconds() / 86_400 for c in certificates)
                row["days_left"] = round(file_days, 2)
                soonest = file_days if soonest is None else min(soonest, file_days)
                for cert in certificates:
                    days = (cert.not_after - now).total_seconds() / 86_400
                    if cert.not_after <= now:
                        failures.append(f"{reading.cert}: {cert.subject} expired on {cert.not_after.date().isoformat()}")
                    elif cert.not_before > now:
                        failures.append(f"{reading.cert}: {cert.subject} is not valid before {cert.not_before.isoformat()}")
                    elif days < min_days:
                        failures.append(f"{reading.cert}: {cert.subject} expires in {days:.1f} days, policy {min_days}")
        if reading.key is not None:
            row["key_mode"] = None if reading.key_mode is None else mode_text(reading.key_mode)
            row["key_owner"] = reading.key_owner
            if reading.key_missing:
                failures.append(f"key {reading.key} does not exist")
            elif reading.key_problem is not None or reading.key_mode is None:
                errors.append(f"key {reading.key}: {reading.key_problem or 'mode not read'}")
            elif reading.key_mode & ~allowed:
                failures.append(f"key {reading.key} has mode {mode_text(reading.key_mode)}, wider than {max_key_mode}")
        rows.append(row)
    keys = sum(1 for r in readings if r.key is not None)
    files = _count(len(readings), "certificate file", "certificate files")
    passed = (
        f"{files} valid for {soonest:.0f}+ days; {_count(keys, 'key', 'keys')} no wider than {max_key_mode}"
        if soonest is not None
        else "nothing to judge"
    )
    outcome, summary = _combine(host, failures, errors, passed)
    observed = {
        "days_left": None if soonest is None else round(soonest, 1),
        "keys": {r["key"]: r.get("key_mode") for r in rows if r["key"]},
    }
    expected = {"min_days": min_days, "max_key_mode": max_key_mode}
    return Finding(outcome, summary, observed=observed, expected=expected, evidence={"host": host, "files": rows})


def utc_now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- time sync


@dataclass(frozen=True)
class ToolAnswer:
    """What one clock tool said: ``synchronized`` True/False, or None when it could not tell."""

    tool: str
    synchronized: bool | None
    said: str


TIME_TOOLS: tuple[tuple[str, str], ...] = (
    ("timedatectl", "timedatectl show -p NTPSynchronized --value"),
    ("chronyc", "chronyc -n tracking"),
    ("ntpstat", "ntpstat"),
)


def parse_timedatectl(rc: int, stdout: str, stderr: str) -> ToolAnswer:
    word = stdout.strip()
    if rc == 0 and word in ("yes", "no"):
        return ToolAnswer("timedatectl", word == "yes", f"NTPSynchronized={word}")
    return ToolAnswer("timedatectl", None, _said(rc, stdout, stderr))


def parse_chronyc(rc: int, stdout: str, stderr: str) -> ToolAnswer:
    match = re.search(r"^Leap status\s*:\s*(.+?)\s*$", stdout, re.MULTILINE)
    if rc == 0 and match is not None:
        status = match.group(1)
        if status == "Not synchronised":
            return ToolAnswer("chronyc", False, "Leap status: Not synchronised")
        if status in ("Normal", "Insert second", "Delete second"):
            return ToolAnswer("chronyc", True, f"Leap status: {status}")
    return ToolAnswer("chronyc", None, _said(rc, stdout, stderr))


def parse_ntpstat(rc: int, stdout: str, stderr: str) -> ToolAnswer:
    # ntpstat: 0 synchronised, 1 not synchronised, 2 state indeterminate (no ntpd to ask).
    if rc == 0:
        return ToolAnswer("ntpstat", True, _last_line(stdout) or "synchronised")
    if rc == 1:
        return ToolAnswer("ntpstat", False, _last_line(stdout) or "unsynchronised")
    return ToolAnswer("ntpstat", None, _said(rc, stdout, stderr))


_TIME_PARSERS: dict[str, Callable[[int, str, str], ToolAnswer]] = {
    "timedatectl": parse_timedatectl,
    "chronyc": parse_chronyc,
    "ntpstat": parse_ntpstat,
}


def _said(rc: int, stdout: str, stderr: str) -> str:
    if rc == 127:
        return "not installed"
    return _last_line(stderr) or _last_line(stdout) or f"exit status {rc}"


def observe_time_sync(session: HostSession) -> list[ToolAnswer]:
    """Ask the clock tools in order until one can tell."""
    answers: list[ToolAnswer] = []
    for tool, command in TIME_TOOLS:
        output = session.run(command)
        answer = _TIME_PARSERS[tool](output.rc, output.text, output.stderr.decode("utf-8", "replace"))
        answers.append(answer)
        if answer.synchronized is not None:
            break
    return answers


def judge_time_sync(host: str, answers: Sequence[ToolAnswer]) -> Finding:
    """infra.host.time_sync: the first tool that can tell decides; none can -> error with what each said."""
    evidence = {"host": host, "answers": [{"tool": a.tool, "synchronized": a.synchronized, "said": a.said} for a in answers]}
    decided = next((a for a in answers if a.synchronized is not None), None)
    if decided is None:
        said = "; ".join(f"{a.tool}: {a.said}" for a in answers) or "no tool asked"
        return Finding(
            "error",
            f"{host}: cannot tell whether the clock is synchronised ({said})",
            observed="unknown",
            expected="synchronised",
            evidence=evidence,
        )
    if decided.synchronized:
        return Finding(
            "passed",
            f"{host}: clock synchronised ({decided.tool}: {decided.said})",
            observed="synchronised",
            expected="synchronised",
            evidence=evidence,
        )
    return Finding(
        "failed",
        f"{host}: clock not synchronised ({decided.tool}: {decided.said})",
        observed="not synchronised",
        expected="synchronised",
        evidence=evidence,
    )
