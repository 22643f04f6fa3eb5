"""The gate's side of a load run: start Locust in its own process, bound it, read its results.

The gate process never imports Locust (:mod:`releasegate.load.run` explains why). Here:

- :func:`run_profile` checks where the load would go (:mod:`releasegate.load.safety`: refused
  before anything starts), works out the run's bound, starts ``python -m releasegate.load.run``
  in a new session (so the whole group, workers included, can be ended at once), relays its
  progress lines, kills it on overrun or interruption, and reads ``results.json`` back as a
  :class:`~releasegate.load.results.LoadSummary`.
- :func:`judge_run` turns a :class:`LoadRun` into the check's finding.
- :func:`run_workers` is the worker role of ``releasegate load --master-host``: worker
  processes of a master on another machine.

Bounds: the load itself may last ``min(profile.max_duration_s, gates load.max_duration_s)`` and
no longer than the gate run's remaining deadline allows; the process gets that plus a grace for
start-up (workers connecting) and wind-down (reports). A profile that cannot fit is not started.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from releasegate._exceptions import ConfigError, Problem
from releasegate.config import LoadedTarget, LoadPolicy
from releasegate.load.profiles import LoadProfile
from releasegate.load.results import LoadSummary, judge
from releasegate.load.safety import refuse_unless_allowed
from releasegate.load.thresholds import Threshold, ThresholdError, merge
from releasegate.registry import LOAD_PREFIX, NAME_PATTERN
from releasegate.results import Finding

OPTIONS_ENV = "RELEASEGATE_LOAD_OPTIONS"
PROTOCOL_PREFIX = "@releasegate "  # as releasegate.load.run writes it
# Python + Locust + the locustfile take a second or two to start; the HTML report, the chart and
# the workers' last batches take a few more after the load.
STARTUP_GRACE_S = 20.0
WIND_DOWN_GRACE_S = 30.0
DEFAULT_EXPECT_WORKERS_MAX_WAIT_S = 60.0
LOG_TAIL_LINES = 12
KILL_WAIT_S = 5.0

ProgressCallback = Callable[[Mapping[str, Any]], None]
_OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "workers": (int,),
    "expect_workers": (int,),
    "expect_workers_max_wait_s": (int, float),
    "master_bind_host": (str,),
    "master_port": (int,),
}


@dataclass(frozen=True)
class LoadOptions:
    """How to generate the load: one process, local workers, or workers of a remote master.

    ``releasegate load`` passes them to the gate's load stage in the environment variable
    ``RELEASEGATE_LOAD_OPTIONS`` (JSON), which a plain ``releasegate run --stage load`` may set too.
    """

    workers: int | None = None  # None: the profile's own `workers`
    expect_workers: int | None = None  # None: as many as `workers`
    expect_workers_max_wait_s: float = DEFAULT_EXPECT_WORKERS_MAX_WAIT_S
    master_bind_host: str = "127.0.0.1"
    master_port: int = 0
    master_host: str | None = None  # worker role (`releasegate load --master-host`)

    def workers_for(self, profile: LoadProfile) -> int:
        return profile.workers if self.workers is None else self.workers

    def distributed(self, profile: LoadProfile) -> bool:
        return self.workers_for(profile) > 0 or bool(self.expect_workers)

    def to_env(self) -> str:
        return json.dumps(
            {
                "workers": self.workers,
                "expect_workers": self.expect_workers,
                "expect_workers_max_wait_s": self.expect_workers_max_wait_s,
                "master_bind_host": self.master_bind_host,
                "master_port": self.master_port,
            }
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LoadOptions:
        raw = (os.environ if environ is None else environ).get(OPTIONS_ENV)
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("a JSON object is needed")
            known: dict[str, Any] = {}
            for key, kind in _OPTION_TYPES.items():
                if data.get(key) is None:
                    continue
                value = data[key]
                if isinstance(value, bool) or not isinstance(value, kind):
                    raise ValueError(f"{key} must be a {' or '.join(k.__name__ for k in kind)}")
                known[key] = value
            options = cls(**known)
        except ValueError as exc:
            raise ConfigError(
                [Problem(OPTIONS_ENV, None, OPTIONS_ENV, f"not valid load options ({exc})", 'e.g. {"workers": 2}, or unset it')]
            ) from None
        problem = options.problem()
        if problem:
            raise ConfigError([Problem(OPTIONS_ENV, None, OPTIONS_ENV, problem, "fix the value or unset the variable")])
        return options

    def problem(self) -> str | None:
        """Why these options cannot work, or None."""
        if self.workers is not None and not 0 <= self.workers <= 256:
            return f"workers {self.workers}: use 0 to 256"
        if self.expect_workers is not None and not 1 <= self.expect_workers <= 4096:
            return f"expect_workers {self.expect_workers}: use 1 to 4096"
        if not 0 < self.expect_workers_max_wait_s <= 3600:
            return f"expect_workers_max_wait {self.expect_workers_max_wait_s:g}: use more than 0 and at most 3600 seconds"
        if not 0 <= self.master_port <= 65535:
            return f"master_port {self.master_port}: not a port"
        return None


@dataclass
class LoadRun:
    """One profile's run as the load stage's checks see it (``load_runs.get(profile)``).

    ``summary`` is None exactly when ``error`` says why the run measured nothing usable.
    ``before`` / ``after`` are infra.capacity's resource snapshots around the load (None when
    the target names no metrics source, or ``snapshot_error`` says why they could not be taken).
    """

    profile: LoadProfile
    report_dir: Path
    thresholds: list[Threshold] = field(default_factory=list)
    summary: LoadSummary | None = None
    error: str | None = None
    artifacts: tuple[Path, ...] = ()
    before: Any = None  # releasegate.load.capacity.ResourceSnapshot
    after: Any = None
    snapshot_error: str | None = None
    results: dict[str, Any] = field(default_factory=dict)  # results.json as written


def selected_profiles(configured: list[str], only: list[str]) -> list[str]:
    """The profiles the load stage runs: the target's ``load.profiles``, plus any profile an
    ``--only load.<name>`` names exactly (``releasegate load --profile NAME`` runs one of any name)."""
    names = list(configured)
    for pattern in only:
        if pattern.startswith(LOAD_PREFIX) and not any(ch in pattern for ch in "*?["):
            name = pattern[len(LOAD_PREFIX) :]
            if NAME_PATTERN.fullmatch(name) and name not in names:
                names.append(name)
    return names


def has_sync_users(profile: LoadProfile) -> bool:
    classes = set(profile.user_classes)
    for stage in profile.stages:
        classes.update(stage.user_classes or ())
    return "SyncUser" in classes


def thresholds_for(policy: LoadPolicy, profile: LoadProfile) -> list[Threshold]:
    return merge(policy.thresholds, profile.thresholds)


def judge_run(run: LoadRun, policy: LoadPolicy) -> Finding:
    """The load check's finding: an error when the run itself failed, else the thresholds' verdict."""
    if run.summary is None:
        return Finding(
            "error",
            f"{run.profile.name}: {run.error or 'the load run produced no results'}",
            observed="no results",
            evidence={"profile": run.profile.name, "report_dir": str(run.report_dir)},
        )
    finding = judge(
        run.summary,
        run.thresholds,
        profile=run.profile.name,
        min_requests=policy.min_requests,
        max_generator_cpu_percent=policy.max_generator_cpu_percent,
        has_sync_users=has_sync_users(run.profile),
    )
    finding.evidence["artifacts"] = [str(p) for p in run.artifacts]
    return finding


# --------------------------------------------------------------------------- the run


def bound_s(profile: LoadProfile, policy: LoadPolicy) -> float:
    return min(profile.max_duration_s, policy.max_duration_s)


def run_profile(
    loaded: LoadedTarget,
    policy: LoadPolicy,
    profile: LoadProfile,
    *,
    gates_path: Path | None,
    locustfile: Path,
    profiles_dir: Path,
    out_dir: Path,
    options: LoadOptions = LoadOptions(),
    time_left_s: float | None = None,
    progress: ProgressCallback | None = None,
) -> LoadRun:
    """Run ``profile`` against the target; refused hosts raise ConfigError before anything starts."""
    target = loaded.target
    refuse_unless_allowed(target.base_url, target.load.allowed_hosts if target.load else [], target_file=str(loaded.path))
    run = LoadRun(profile=profile, report_dir=out_dir)
    try:
        run.thresholds = thresholds_for(policy, profile)
    except ThresholdError as exc:
        run.error = f"a threshold cannot be read: {exc}"
        return run
    problem = options.problem()
    if problem:
        run.error = f"load options: {problem}"
        return run
    distributed = options.distributed(profile)
    grace = STARTUP_GRACE_S + WIND_DOWN_GRACE_S + (options.expect_workers_max_wait_s if distributed else 0.0)
    planned = profile.total_duration_s
    bound = bound_s(profile, policy)
    if planned > policy.max_duration_s:
        run.error = f"the profile runs {planned:g} s, longer than gates.yaml load.max_duration_s {policy.max_duration_s:g}: not started"
        return run
    if time_left_s is not None:
        if planned + grace > time_left_s:
            run.error = (
                f"the profile needs {planned:g} s plus up to {grace:g} s to start and report, but only {max(time_left_s, 0):.0f} s "
                "are left before the run's deadline (gates.yaml deadline_s): not started"
            )
            return run
        bound = min(bound, time_left_s - grace)
    out_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "releasegate.load.run", *_run_arguments(profile, loaded, locustfile, profiles_dir, out_dir, bound)]
    if gates_path is not None:
        command += ["--gates", str(gates_path)]
    if distributed:
        command += [
            "--workers",
            str(options.workers_for(profile)),
            "--expect-workers-max-wait",
            f"{options.expect_workers_max_wait_s:g}",
            "--master-bind-host",
            options.master_bind_host,
            "--master-port",
            str(options.master_port),
        ]
        if options.expect_workers:
            command += ["--expect-workers", str(options.expect_workers)]
    env = subprocess_env(loaded, profile.name, profiles_dir, bound)
    code, tail = _supervise(command, env, out_dir / "locust.log", timeout_s=bound + grace, progress=progress)
    run.artifacts = tuple(sorted(p for p in out_dir.iterdir() if p.is_file()))
    if code == "timeout":
        run.error = f"the load run did not finish within {bound + grace:g} s and was killed{_tail(tail)}"
        return run
    if code == 3:
        run.error = f"the load run refused to start (configuration){_tail(tail)}"
        return run
    if code != 0:
        run.error = f"the load run failed (exit {code}){_tail(tail)}"
        return run
    results_path = out_dir / "results.json"
    try:
        run.results = json.loads(results_path.read_text(encoding="utf-8"))
        run.summary = LoadSummary.from_json(run.results["summary"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        run.error = f"the load run left no readable results.json ({type(exc).__name__}: {exc}){_tail(tail)}"
    return run


def subprocess_env(loaded: LoadedTarget, profile: str, profiles_dir: Path, bound: float) -> dict[str, str]:
    """What the locustfile reads (loadtests/rg_settings.py), on top of this process's environment (the secrets)."""
    env = dict(os.environ)
    for name in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "RELEASEGATE_ALLOWED_HOSTS", "RELEASEGATE_WS_URL"):
        env.pop(name, None)  # the target decides where load goes, not a stray variable
    env.update(
        {
            "RELEASEGATE_TARGET": str(loaded.path),
            "RELEASEGATE_PROFILE": profile,
            "RELEASEGATE_PROFILES_DIR": str(profiles_dir),
            "RELEASEGATE_MAX_DURATION_S": f"{bound:g}",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _tail(lines: list[str]) -> str:
    return (": " + " | ".join(lines[-LOG_TAIL_LINES:])) if lines else ""


def _supervise(
    command: list[str], env: dict[str, str], log_path: Path, *, timeout_s: float, progress: ProgressCallback | None
) -> tuple[int | str, list[str]]:
    """Run ``command`` to its end or ``timeout_s``; (exit code or "timeout", last lines of its log)."""
    tail: collections.deque[str] = collections.deque(maxlen=200)
    with log_path.open("ab") as log_file, _process_group(command, env, log_file) as process:
        reader = threading.Thread(target=_read_protocol, args=(process, progress, tail), daemon=True)
        reader.start()
        try:
            code: int | str = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            code = "timeout"
        reader.join(timeout=2.0)
    return code, _log_tail(log_path) + list(tail)[-LOG_TAIL_LINES:]


@contextlib.contextmanager
def _process_group(command: list[str], env: dict[str, str], log_file: Any, *, read: bool = True) -> Iterator[subprocess.Popen[str]]:
    """The process in its own session; on the way out (overrun, Ctrl-C, SIGTERM) the whole group ends."""
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE if read else subprocess.DEVNULL,
        stderr=log_file,
        stdin=subprocess.DEVNULL,
        env=env,
        text=True,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            _end_group(process)
        else:
            _end_group(process, only_stragglers=True)
        if process.stdout is not None:
            process.stdout.close()


def _end_group(process: subprocess.Popen[str], *, only_stragglers: bool = False) -> None:
    """SIGTERM to the group, then SIGKILL: the workers a killed master leaves behind go too."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    if only_stragglers:
        return
    try:
        process.wait(timeout=KILL_WAIT_S)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


def _read_protocol(process: subprocess.Popen[str], progress: ProgressCallback | None, tail: collections.deque[str]) -> None:
    assert process.stdout is not None
    try:
        for line in process.stdout:
            _protocol_line(line.rstrip("\n"), progress, tail)
    except (OSError, ValueError):  # the pipe was closed under us: the process is gone
        return


def _protocol_line(line: str, progress: ProgressCallback | None, tail: collections.deque[str]) -> None:
    if not line.startswith(PROTOCOL_PREFIX):
        if line.strip():
            tail.append(line[:500])
        return
    try:
        event = json.loads(line[len(PROTOCOL_PREFIX) :])
    except ValueError:
        return
    if progress is not None and isinstance(event, dict):
        try:
            progress(event)
        except Exception:  # noqa: BLE001 - a broken progress display must not stop the run
            pass


def _log_tail(path: Path) -> list[str]:
    """The last meaningful lines of the run's log (errors first in mind: tracebacks end with the cause)."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 16_384))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return []
    lines = [line.strip()[:300] for line in text.splitlines() if line.strip()]
    return [line for line in lines if " INFO " not in line][-LOG_TAIL_LINES:]


def format_progress(profile: str, event: Mapping[str, Any]) -> str | None:
    """One human line for a protocol event, or None for events people need not see."""
    kind = event.get("event")
    if kind == "progress":
        p95 = event.get("p95_ms")
        p95_text = "-" if p95 is None else f"{float(p95):.0f} ms"
        workers = f", {event['workers']} workers" if event.get("workers") else ""
        return (
            f"load {profile}: {float(event.get('elapsed_s', 0)):5.1f}/{float(event.get('planned_s', 0)):g} s  "
            f"users {event.get('users', 0)}  {float(event.get('rps', 0)):.1f} req/s  "
            f"failed {float(event.get('fail_ratio', 0)):.1%}  p95 {p95_text}  ({event.get('requests', 0)} requests{workers})"
        )
    if kind == "started":
        return f"load {profile}: started ({float(event.get('planned_s', 0)):g} s planned, bound {float(event.get('bound_s', 0)):g} s)"
    if kind == "waiting_for_workers":
        return f"load {profile}: {event.get('connected')} of {event.get('expected')} workers connected"
    if kind == "master":
        return f"load {profile}: master listening on {event.get('bind_host')}:{event.get('port')}"
    if kind == "aborted":
        return f"load {profile}: ABORTED after {event.get('elapsed_s')} s: {event.get('reason')}"
    if kind == "done":
        return f"load {profile}: done, {event.get('requests')} requests; writing reports"
    return None


# --------------------------------------------------------------------------- the worker role


def run_workers(
    loaded: LoadedTarget,
    profile: LoadProfile,
    *,
    master_host: str,
    master_port: int,
    processes: int,
    locustfile: Path,
    profiles_dir: Path,
    out_dir: Path,
    max_wait_s: float,
    policy: LoadPolicy,
    say: Callable[[str], None] = print,
) -> int:
    """Worker processes of a remote master (`releasegate load --master-host`); exit 0, 2 or 3.

    0: the master ran its load and let the workers go; 3: this machine's target refuses the host
    (checked here before anything starts, and again by each worker against the host the master
    names); 2: no master answered within ``max_wait_s`` or a worker failed.
    """
    target = loaded.target
    refuse_unless_allowed(target.base_url, target.load.allowed_hosts if target.load else [], target_file=str(loaded.path))
    out_dir.mkdir(parents=True, exist_ok=True)
    bound = bound_s(profile, policy)
    env = subprocess_env(loaded, profile.name, profiles_dir, bound)
    command = [
        sys.executable,
        "-m",
        "releasegate.load.run",
        "--worker",
        "--master-host",
        master_host,
        "--master-port",
        str(master_port),
        *_run_arguments(profile, loaded, locustfile, profiles_dir, out_dir, bound),
        "--expect-workers-max-wait",
        f"{max_wait_s:g}",
    ]
    say(f"load {profile.name}: {processes} worker process(es) for the master at {master_host}:{master_port}")
    timeout = bound + max_wait_s + 60.0 + STARTUP_GRACE_S
    codes: list[int | str] = []
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        running = []
        for index in range(processes):
            log_file = stack.enter_context((out_dir / f"worker-{index}.log").open("ab"))
            running.append(stack.enter_context(_process_group(command, env, log_file, read=False)))
        for process in running:
            try:
                codes.append(process.wait(timeout=max(0.0, timeout - (time.monotonic() - started))))
            except subprocess.TimeoutExpired:
                codes.append("timeout")
    if 3 in codes:
        say(f"load {profile.name}: a worker refused the host its master named (see {out_dir}/worker-*.log)")
        return 3
    if all(code == 0 for code in codes):
        say(f"load {profile.name}: the master ended the run; workers done")
        return 0
    say(f"load {profile.name}: workers ended with {codes} (see {out_dir}/worker-*.log)")
    return 2


def _run_arguments(
    profile: LoadProfile, loaded: LoadedTarget, locustfile: Path, profiles_dir: Path, out_dir: Path, bound: float
) -> list[str]:
    """What every `python -m releasegate.load.run` needs, master, local or worker alike."""
    return [
        "--profile",
        profile.name,
        "--target",
        str(loaded.path),
        "--locustfile",
        str(locustfile),
        "--profiles-dir",
        str(profiles_dir),
        "--out",
        str(out_dir),
        "--max-duration",
        f"{bound:g}",
    ]
