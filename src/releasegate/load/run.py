"""``python -m releasegate.load.run``: one load profile under Locust in library mode.

This module is the only place that imports Locust, and it only ever runs as its own process:
``import locust`` monkey-patches the whole interpreter with gevent, which the gate's pytest
process must never suffer. The gate (:mod:`releasegate.load.runner`) starts it with a hard
timeout and reads back ``results.json``; it talks to the gate through lines on stdout that
start with ``@releasegate `` followed by one JSON object (progress, waiting, done).

Three roles:

- **local** (default): an ``Environment`` with the locustfile's user classes and its
  ``ProfileShape``, a local runner, ``init`` fired by hand, ``start_shape()``. When ``tick()``
  returns None Locust calls ``stop()``, not ``quit()`` (``parsed_options.headless`` is unset in
  library mode), so ``runner.greenlet`` would never finish: the run joins the *shape* greenlet.
- **master** (``--workers N`` / ``--expect-workers M``): a master runner, N local worker
  processes (this module with ``--worker``), at most ``--expect-workers-max-wait`` seconds for
  M workers to connect. Workers forward their raw samples in batches with a custom message
  (``rg_samples``, once a second and once more when they stop); the master waits for every
  worker's last batch before it summarises.
- **worker** (``--worker --master-host H``): a worker runner connected to a master, here or on
  another machine. It refuses to start users against a host its own target does not allow.

Every request event becomes a raw sample (:class:`~releasegate.load.results.SampleBook`); the
generator's CPU is read once a second per process (psutil); ``abort_on_fail`` thresholds are
evaluated every second once their ``delay_abort_eval_s`` has passed. Artifacts go to ``--out``:
Locust's HTML report, its CSV stats, ``samples.csv``, ``latency.png`` and ``results.json``;
every file is scrubbed of the target's secrets before the process exits.

Exit codes: 0 results written (whatever they say), 3 configuration problem or refused host,
2 a worker that never reached its master, 4 anything unexpected.
"""

from __future__ import annotations

import argparse
import csv
import html
import importlib.util
import json
import logging
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import gevent  # type: ignore[import-untyped]
import locust
import psutil  # type: ignore[import-untyped]
from locust import User
from locust.env import Environment
from locust.html import get_html_report
from locust.rpc import Message
from locust.runners import MasterRunner, Runner, WorkerRunner
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV, StatsCSVFileWriter, stats_history

from releasegate._exceptions import ConfigError, Problem
from releasegate.config import LoadedTarget, load_gates, load_target
from releasegate.load.profiles import CLOSED_USER_CLASSES, LoadProfile, load_profile
from releasegate.load.results import CpuReading, LoadSummary, SampleBook, abort_reason
from releasegate.load.safety import allowed, refuse_unless_allowed
from releasegate.load.thresholds import Threshold, merge
from releasegate.redact import Redactor

PROTOCOL_PREFIX = "@releasegate "
RESULTS_SCHEMA = "releasegate.load-results/v1"
SAMPLES_MESSAGE = "rg_samples"
PROGRESS_INTERVAL_S = 2.0
# A worker sends at most this many raw samples per batch; the rest of the second is counted only.
BATCH_CAP = 50_000
# After the shape ends: how long the master waits for every worker's last batch.
FINAL_BATCH_WAIT_S = 10.0
# The shape ends itself at the bound (RELEASEGATE_MAX_DURATION_S); past it plus this, the run is cut.
BOUND_GRACE_S = 5.0

log = logging.getLogger("releasegate.load.run")


def emit(event: str, **data: Any) -> None:
    """One protocol line for the gate (stdout); nothing else this process prints starts with the prefix."""
    sys.stdout.write(PROTOCOL_PREFIX + json.dumps({"event": event, **data}, default=str) + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------- setup


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m releasegate.load.run", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", required=True)
    parser.add_argument("--target", required=True, type=Path)
    parser.add_argument("--locustfile", required=True, type=Path)
    parser.add_argument("--profiles-dir", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--gates", type=Path, help="policy file (thresholds, abort_on_fail); default: no thresholds")
    parser.add_argument("--max-duration", type=float, required=True, help="bound of the load itself, seconds")
    parser.add_argument("--workers", type=int, default=0, help="local worker processes (0: one local runner)")
    parser.add_argument("--expect-workers", type=int, help="workers to wait for before starting (default: --workers)")
    parser.add_argument("--expect-workers-max-wait", type=float, default=60.0)
    parser.add_argument("--master-bind-host", default="127.0.0.1", help="interface the master listens on for workers")
    parser.add_argument("--master-port", type=int, default=0, help="master port (0: any free one, local workers only)")
    parser.add_argument("--worker", action="store_true", help="run as a worker of --master-host")
    parser.add_argument("--master-host", help="the master a worker connects to")
    parser.add_argument("--sample-cap", type=int, default=200_000)
    return parser


def _config_error(file: str, key: str, message: str, fix: str) -> ConfigError:
    return ConfigError([Problem(file, None, key, message, fix)])


def load_locustfile(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("locustfile", path)
    if spec is None or spec.loader is None:
        raise _config_error(str(path), "--locustfile", "cannot be imported", "name the suite's loadtests/locustfile.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["locustfile"] = module
    spec.loader.exec_module(module)
    return module


def user_classes_of(module: ModuleType) -> list[type[User]]:
    found = [
        value
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, User) and value is not User and not getattr(value, "abstract", False)
    ]
    return sorted(set(found), key=lambda c: c.__name__)


def watch_parent(parent: int) -> None:
    """End this process when the one that started it is gone: a run never outlives its gate."""
    while True:
        gevent.sleep(1.0)
        if os.getppid() != parent:
            log.error("the process that started this load run is gone: stopping")
            os._exit(2)


class CpuMeter:
    """One CPU reading a second for this process (percent of one core)."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.process.cpu_percent(None)  # the first call only sets the reference point
        self.readings: list[float] = []

    def read(self) -> float:
        value = float(self.process.cpu_percent(None))
        self.readings.append(value)
        return value


# --------------------------------------------------------------------------- the master / local run


class LoadRunProcess:
    """State of one local or master run."""

    def __init__(self, args: argparse.Namespace, target: LoadedTarget, profile: LoadProfile, thresholds: list[Threshold]) -> None:
        self.args = args
        self.target = target
        self.profile = profile
        self.thresholds = thresholds
        self.book = SampleBook(cap=args.sample_cap)
        self.has_sync_users = "SyncUser" in profile.user_classes
        self.cpu: dict[str, list[float]] = {}
        self.finals: set[str] = set()
        self.peak_users = 0
        self.peak_conversations = 0
        # Time-weighted users and conversations while the load runs (mean = seconds-weighted sum / time).
        self.user_seconds = 0.0
        self.conversation_seconds = 0.0
        self.measured_s = 0.0
        self.load_over = False
        self.started = 0.0
        self.started_at = datetime.now(UTC)
        self.aborted: str | None = None
        self.problem: str | None = None
        self.worker_processes: list[Any] = []
        self.connected_workers = 0
        self.env: Environment | None = None

    @property
    def distributed(self) -> bool:
        return self.args.workers > 0 or bool(self.args.expect_workers)

    def elapsed(self) -> float:
        return time.time() - self.started if self.started else 0.0

    def on_request(
        self,
        request_type: str,
        name: str,
        response_time: float | None,
        response_length: int = 0,
        exception: BaseException | None = None,
        start_time: float | None = None,
        **_: Any,
    ) -> None:
        rt = float(response_time or 0.0)
        self.book.add(start_time if start_time is not None else time.time() - rt / 1000, request_type, name, rt, exception is not None)

    def on_samples(self, environment: Environment, msg: Any, **_: Any) -> None:
        """A worker's batch: raw samples, counts past its batch cap, CPU readings, and whether it was the last."""
        data = msg.data or {}
        for sample in data.get("samples", []):
            t, request_type, name, rt, failed = sample
            self.book.add(float(t), str(request_type), str(name), float(rt), bool(failed))
        for request_type, name, requests, failures in data.get("overflow", []):
            self.book.add_counts(str(request_type), str(name), int(requests), int(failures))
        runner = environment.runner
        index = runner.get_worker_index(msg.node_id) if isinstance(runner, MasterRunner) else 0  # type: ignore[no-untyped-call]
        self.cpu.setdefault(f"worker {index}", []).extend(float(v) for v in data.get("cpu", []))
        if data.get("final"):
            self.finals.add(msg.node_id)

    def summary(self, duration_s: float) -> LoadSummary:
        runner = self.env.runner if self.env is not None else None
        warning = bool(runner is not None and (runner.cpu_warning_emitted or runner.worker_cpu_warning_emitted))
        return self.book.summary(
            duration_s=duration_s,
            peak_users=self.peak_users,
            concurrent_conversations=self.peak_conversations,
            mean_users=self.user_seconds / self.measured_s if self.measured_s > 0 else None,
            mean_conversations=self.conversation_seconds / self.measured_s if self.measured_s > 0 else None,
            cpu=CpuReading({k: list(v) for k, v in self.cpu.items()}),
            cpu_warning=warning,
            workers=self.connected_workers,
            aborted=self.aborted,
            problem=self.problem,
        )

    def monitor(self, runner: Runner, meter: CpuMeter, own: str) -> None:
        """Once a second: CPU, peak users, abort thresholds; every PROGRESS_INTERVAL_S a progress line."""
        last_progress = 0.0
        aborting = [t for t in self.thresholds if t.abort_on_fail]
        last_tick = time.monotonic()
        while True:
            gevent.sleep(1.0)
            now = time.monotonic()
            step, last_tick = now - last_tick, now
            self.cpu.setdefault(own, []).append(meter.read())
            counts = runner.reported_user_classes_count if isinstance(runner, MasterRunner) else runner.user_classes_count
            users = sum(counts.values())
            conversations = sum(n for c, n in counts.items() if c in CLOSED_USER_CLASSES)
            self.peak_users = max(self.peak_users, users)
            self.peak_conversations = max(self.peak_conversations, conversations)
            if not self.load_over:
                # The count now stands for the second that just passed (one reading a second).
                self.user_seconds += users * step
                self.conversation_seconds += conversations * step
                self.measured_s += step
            elapsed = self.elapsed()
            if aborting and self.aborted is None:
                # The latest samples only (results.WINDOW per kind): this runs every second in the hub.
                window = self.book.window_summary(duration_s=elapsed)
                reason = abort_reason(aborting, window, elapsed_s=elapsed, has_sync_users=self.has_sync_users)
                if reason is not None:
                    self.aborted = reason
                    emit("aborted", reason=reason, elapsed_s=round(elapsed, 1))
                    log.warning("abort_on_fail: %s; stopping the run", reason)
                    # End the shape, not the runner: the run's own flow then stops the runner
                    # once (two stop() calls at the same time would stop the same users twice).
                    if runner.shape_greenlet is not None:
                        runner.shape_greenlet.kill(block=False)
            if elapsed - last_progress >= PROGRESS_INTERVAL_S:
                last_progress = elapsed
                total = runner.stats.total
                p95 = total.get_current_response_time_percentile(0.95) if total.num_requests else None
                emit(
                    "progress",
                    elapsed_s=round(elapsed, 1),
                    planned_s=self.profile.total_duration_s,
                    users=sum(counts.values()),
                    requests=total.num_requests,
                    rps=round(total.current_rps, 1),
                    fail_ratio=round(total.fail_ratio, 4),
                    p95_ms=p95,
                    workers=runner.worker_count if isinstance(runner, MasterRunner) else 0,
                )

    def start_workers(self, port: int) -> None:
        for index in range(self.args.workers):
            log_file = (self.args.out / f"worker-{index}.log").open("ab")
            command = [
                sys.executable,
                "-m",
                "releasegate.load.run",
                "--worker",
                "--master-host",
                "127.0.0.1" if self.args.master_bind_host in ("*", "0.0.0.0", "127.0.0.1") else self.args.master_bind_host,
                "--master-port",
                str(port),
                "--profile",
                self.args.profile,
                "--target",
                str(self.args.target),
                "--locustfile",
                str(self.args.locustfile),
                "--profiles-dir",
                str(self.args.profiles_dir),
                "--out",
                str(self.args.out),
                "--max-duration",
                str(self.args.max_duration),
                "--expect-workers-max-wait",
                str(self.args.expect_workers_max_wait),
            ]
            # subprocess is gevent's here (monkey-patched): waiting on a worker never blocks the hub.
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log_file, stdin=subprocess.DEVNULL)
            log_file.close()
            self.worker_processes.append(process)

    def wait_for_workers(self, runner: MasterRunner, expected: int) -> bool:
        deadline = time.monotonic() + self.args.expect_workers_max_wait
        announced = -1
        while True:
            connected = len(runner.clients.ready)
            if connected != announced:
                emit("waiting_for_workers", connected=connected, expected=expected)
                announced = connected
            if connected >= expected:
                return True
            if time.monotonic() > deadline:
                return False
            if self.worker_processes and all(p.poll() is not None for p in self.worker_processes) and connected < expected:
                return False
            gevent.sleep(0.1)

    def run(self) -> int:
        args = self.args
        log.info("loading %s", args.locustfile)
        module = load_locustfile(args.locustfile)
        classes = user_classes_of(module)
        shape_class = getattr(module, "ProfileShape", None)
        if shape_class is None:
            raise _config_error(str(args.locustfile), "ProfileShape", "the locustfile defines no ProfileShape", "define one")
        env = Environment(
            user_classes=classes,
            shape_class=shape_class(),
            host=self.target.target.base_url,
            events=locust.events,
            locustfile=str(args.locustfile),
            stop_timeout=0.0,
        )
        self.env = env
        if self.distributed:
            runner: Runner = env.create_master_runner(master_bind_host=args.master_bind_host, master_bind_port=args.master_port)
            assert isinstance(runner, MasterRunner)
            runner.register_message(SAMPLES_MESSAGE, self.on_samples)
            own = "master"
        else:
            runner = env.create_local_runner()
            env.events.request.add_listener(self.on_request)  # type: ignore[no-untyped-call]
            own = "local"
        env.events.init.fire(environment=env, runner=runner, web_ui=None)  # type: ignore[no-untyped-call]
        meter = CpuMeter()
        csv_writer = StatsCSVFileWriter(env, PERCENTILES_TO_REPORT, str(args.out / "locust"), full_history=False)
        background = [gevent.spawn(stats_history, runner), gevent.spawn(csv_writer.stats_writer)]
        duration = 0.0
        try:
            if isinstance(runner, MasterRunner):
                port = runner.server.port
                emit("master", port=port, bind_host=args.master_bind_host)
                self.start_workers(port)
                expected = args.expect_workers or args.workers
                if not self.wait_for_workers(runner, expected):
                    connected = len(runner.clients.ready)
                    self.problem = (
                        f"only {connected} of {expected} load workers connected within {args.expect_workers_max_wait:g} s "
                        "(--expect-workers-max-wait): no load was sent"
                    )
                self.connected_workers = runner.worker_count
            if self.problem is None:
                background.append(gevent.spawn(self.monitor, runner, meter, own))
                self.started = time.time()
                emit("started", profile=self.profile.name, planned_s=self.profile.total_duration_s, bound_s=args.max_duration)
                runner.start_shape()
                shape = runner.shape_greenlet
                # The shape greenlet, not runner.greenlet: see the module docstring.
                if shape is not None:
                    shape.join(timeout=args.max_duration + BOUND_GRACE_S)
                    if not shape.dead:
                        self.problem = f"the run outlived its bound of {args.max_duration:g} s and was cut"
                        shape.kill(block=True)
                self.load_over = True
                runner.stop()
                duration = self.elapsed()
                self.problem = self.problem or self.ended_early(env, runner, duration)
                if isinstance(runner, MasterRunner):
                    self.wait_for_final_batches(runner)
            if isinstance(runner, MasterRunner):
                self.release_workers(runner)
        finally:
            for greenlet in background:
                greenlet.kill(block=True)
            csv_writer.close_files()
            runner.quit()
        self.write(env, runner, duration)
        self.stop_workers()
        return 0

    def ended_early(self, env: Environment, runner: Runner, duration: float) -> str | None:
        """Why a shape that is over did not run its course, or None: a shape greenlet also ends when
        Locust stops the run itself (the last worker gone), when tick() raised, or when a user quit
        the run; judged as finished, such a partial run could pass on the samples it had."""
        if self.aborted is not None:
            return None  # abort_on_fail stopped it on purpose; that verdict is a failure already
        if locust.log.unhandled_greenlet_exception:
            return "a Locust greenlet crashed during the run (see locust.log): the load was not what the profile says"
        if env.process_exit_code not in (None, 0):
            return f"a virtual user stopped the run (exit code {env.process_exit_code}; see locust.log)"
        if isinstance(runner, MasterRunner) and runner.worker_count < self.connected_workers:
            return f"{self.connected_workers - runner.worker_count} of {self.connected_workers} load workers went away during the run"
        planned = self.profile.total_duration_s
        if duration < planned - 2.0:
            return f"the run ended after {duration:.1f} s of the {planned:g} s planned: the profile did not run its course"
        return None

    def wait_for_final_batches(self, runner: MasterRunner) -> None:
        deadline = time.monotonic() + FINAL_BATCH_WAIT_S
        while time.monotonic() < deadline:
            waiting = set(runner.worker_indexes) - self.finals
            if not waiting:
                return
            # A worker Locust marked missing (no heartbeat: killed, crashed, cut off) sends nothing more.
            gone = waiting & {client.id for client in runner.clients.missing}
            if gone == waiting:
                log.warning("%d load workers went missing before their last batch", len(gone))
                self.problem = self.problem or f"{len(gone)} load workers went missing during the run: the run was not measured whole"
                return
            gevent.sleep(0.1)
        missing = len(set(runner.worker_indexes) - self.finals)
        log.warning("%d workers sent no last batch within %g s: their last second of samples is missing", missing, FINAL_BATCH_WAIT_S)
        # Samples are missing from the verdict: judging the rest could pass a run that was not measured whole.
        self.problem = self.problem or f"{missing} load workers' last samples never arrived: the run was not measured whole"

    def release_workers(self, runner: MasterRunner) -> None:
        """Send the workers home while still listening: each sends Locust its last stats report on
        the way out (runner.quit() alone stops listening after half a second)."""
        for client in list(runner.clients.all):
            runner.server.send_to_client(Message("quit", None, client.id))  # type: ignore[no-untyped-call]
        deadline = time.monotonic() + 10.0
        while self.worker_processes and time.monotonic() < deadline:
            if all(p.poll() is not None for p in self.worker_processes):
                break
            gevent.sleep(0.1)
        gevent.sleep(0.5 if not self.worker_processes else 0.2)

    def stop_workers(self) -> None:
        deadline = time.monotonic() + 10.0
        for process in self.worker_processes:
            while process.poll() is None and time.monotonic() < deadline:
                gevent.sleep(0.1)
            if process.poll() is None:
                process.kill()
                process.wait()

    # -- artifacts

    def write(self, env: Environment, runner: Runner, duration_s: float) -> None:
        out: Path = self.args.out
        log.info("writing results and reports to %s", out)
        summary = self.summary(duration_s)
        artifacts: list[str] = []
        artifacts += write_csv(env, out)
        artifacts.append(write_samples(self.book, self.started, out / "samples.csv"))
        try:
            (out / "report.html").write_text(get_html_report(env, show_download_link=False), encoding="utf-8")  # type: ignore[no-untyped-call]
            artifacts.append("report.html")
        except Exception:  # noqa: BLE001 - a report that cannot be rendered must not lose the results
            log.error("the HTML report could not be written:\n%s", traceback.format_exc())
        try:
            from releasegate.load import artifacts as charts

            charts.latency_png(self.book.samples, self.started, out / "latency.png", title=f"load profile {self.profile.name}")
            artifacts.append("latency.png")
        except Exception:  # noqa: BLE001 - same: the chart is for people, the results are for the gate
            log.error("the latency chart could not be drawn:\n%s", traceback.format_exc())
        user_counts = getattr(runner, "final_user_classes_count", None) or {}
        document = {
            "schema": RESULTS_SCHEMA,
            "profile": self.profile.name,
            "target": self.target.target.name,
            "host": env.host,
            "started_at": self.started_at.isoformat(),
            "finished_at": datetime.now(UTC).isoformat(),
            "locust_version": locust.__version__,
            "thresholds": [str(t) for t in self.thresholds],
            "user_classes": dict(user_counts),
            "artifacts": [*artifacts, "results.json"],
            "summary": summary.to_json(),
        }
        (out / "results.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        log.info("results and reports written")
        emit("done", results=str(out / "results.json"), requests=summary.requests, aborted=summary.aborted, problem=summary.problem)


def write_csv(env: Environment, out: Path) -> list[str]:
    """Locust's CSV stats, final (the writer greenlet rewrites them only once a second)."""
    stats_csv = StatsCSV(env, PERCENTILES_TO_REPORT)
    written: list[str] = []
    for suffix, method in (
        ("stats", stats_csv.requests_csv),
        ("failures", stats_csv.failures_csv),
        ("exceptions", stats_csv.exceptions_csv),
    ):
        name = f"locust_{suffix}.csv"
        with (out / name).open("w", newline="", encoding="utf-8") as handle:
            method(csv.writer(handle))
        written.append(name)
    if (out / "locust_stats_history.csv").is_file():
        written.append("locust_stats_history.csv")
    return written


def write_samples(book: SampleBook, started: float, path: Path) -> str:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["time_s", "type", "name", "response_time_ms", "failed"])
        for t, request_type, name, rt, failed in book.samples:
            writer.writerow([f"{t - started:.3f}", request_type, name, f"{rt:.3f}", int(failed)])
    return path.name


# --------------------------------------------------------------------------- the worker


class SampleForwarder:
    """Worker side: raw samples to the master in batches (custom message), CPU readings with them."""

    def __init__(self, runner: WorkerRunner, meter: CpuMeter) -> None:
        self.runner = runner
        self.meter = meter
        self.samples: list[list[Any]] = []
        self.overflow: dict[tuple[str, str], list[int]] = {}
        self.cpu: list[float] = []

    def on_request(
        self,
        request_type: str,
        name: str,
        response_time: float | None,
        response_length: int = 0,
        exception: BaseException | None = None,
        start_time: float | None = None,
        **_: Any,
    ) -> None:
        rt = float(response_time or 0.0)
        failed = exception is not None
        if len(self.samples) < BATCH_CAP:
            self.samples.append([start_time if start_time is not None else time.time() - rt / 1000, request_type, name, rt, failed])
        else:
            row = self.overflow.setdefault((request_type, name), [0, 0])
            row[0] += 1
            row[1] += int(failed)

    def flush(self, *, final: bool = False) -> None:
        data = {
            "samples": self.samples,
            "overflow": [[t, n, r, f] for (t, n), (r, f) in self.overflow.items()],
            "cpu": self.cpu,
            "final": final,
        }
        self.samples, self.overflow, self.cpu = [], {}, []
        try:
            self.runner.send_message(SAMPLES_MESSAGE, data)
        except Exception:  # noqa: BLE001 - a lost batch is logged; the master notices the missing final batch
            log.error("could not send samples to the master:\n%s", traceback.format_exc())

    def loop(self) -> None:
        while True:
            gevent.sleep(1.0)
            self.cpu.append(self.meter.read())
            self.flush()

    def on_test_stop(self, **_: Any) -> None:
        self.flush(final=True)


def run_worker(args: argparse.Namespace, target: LoadedTarget) -> int:
    allowed_hosts = target.target.load.allowed_hosts if target.target.load is not None else []
    module = load_locustfile(args.locustfile)
    env = Environment(user_classes=user_classes_of(module), events=locust.events, locustfile=str(args.locustfile), stop_timeout=0.0)
    try:
        with gevent.Timeout(args.expect_workers_max_wait):
            runner = env.create_worker_runner(args.master_host, args.master_port)
    except (gevent.Timeout, ConnectionError):
        print(
            f"releasegate load: no master answered at {args.master_host}:{args.master_port} within {args.expect_workers_max_wait:g} s",
            file=sys.stderr,
        )
        return 2
    guarded: Callable[..., None] = runner.start_worker

    def start_worker(user_classes_count: dict[str, int], **kwargs: Any) -> None:
        # The master names the host; this machine's target decides whether load may go there.
        host = env.host or target.target.base_url
        if not allowed(host, allowed_hosts):
            log.error("refusing load to %r: not loopback and not in this target's load.allowed_hosts; this worker quits", host)
            print(f"releasegate load: refused host {host!r} named by the master (exit 3)", file=sys.stderr, flush=True)
            os._exit(3)
        guarded(user_classes_count, **kwargs)

    runner.start_worker = start_worker  # type: ignore[method-assign]
    forwarder = SampleForwarder(runner, CpuMeter())
    env.events.request.add_listener(forwarder.on_request)  # type: ignore[no-untyped-call]
    env.events.test_stop.add_listener(forwarder.on_test_stop)  # type: ignore[no-untyped-call]
    env.events.init.fire(environment=env, runner=runner, web_ui=None)  # type: ignore[no-untyped-call]
    loop = gevent.spawn(forwarder.loop)
    # The master ends the run with "quit" (which kills the runner's greenlets); the bound is a backstop.
    runner.greenlet.join(timeout=args.max_duration + args.expect_workers_max_wait + 60.0)
    loop.kill(block=True)
    # The last stats report is queued in zmq's I/O thread; leaving at once could drop it.
    gevent.sleep(0.5)
    return 0


# --------------------------------------------------------------------------- entry


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    gevent.spawn(watch_parent, os.getppid())
    redactor = Redactor()
    target_secrets: list[str] = []
    try:
        target = load_target(args.target)
        for name, value in target.secrets():
            redactor.add(name, value)
            target_secrets.append(value)
        allowed_hosts = target.target.load.allowed_hosts if target.target.load is not None else []
        refuse_unless_allowed(target.target.base_url, allowed_hosts, target_file=str(args.target))
        if args.worker:
            if not args.master_host:
                raise _config_error("command line", "--master-host", "a worker needs its master", "pass --master-host HOST")
            return run_worker(args, target)
        args.out.mkdir(parents=True, exist_ok=True)
        profile = load_profile(args.profile, args.profiles_dir)
        policy = load_gates(args.gates).gates.load if args.gates else None
        thresholds = merge(policy.thresholds if policy else {}, profile.thresholds)
        code = LoadRunProcess(args, target, profile, thresholds).run()
    except ConfigError as exc:
        print(f"releasegate load: configuration error\n{redactor.text(str(exc))}", file=sys.stderr, flush=True)
        return 3
    finally:
        if not args.worker and args.out.is_dir():
            scrub(args.out, redactor, target_secrets)
    return code


def scrub(folder: Path, redactor: Redactor, secrets: list[str]) -> None:
    """Every file under ``folder`` without the target's secrets, fast.

    Only files that hold a whole secret (in any spelling the redactor knows) are rewritten
    here: the full fragment-matching scrub is slow on Locust's 1 MB HTML report, and the gate
    runs it over the whole report folder anyway when it writes the verdict.
    """
    spellings = [s.encode() for value in secrets for s in {value, json.dumps(value)[1:-1], html.escape(value)}]
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if any(spelling in data for spelling in spellings):
            text = data.decode("utf-8", errors="surrogateescape")
            path.write_bytes(redactor.text(text).encode("utf-8", errors="surrogateescape"))


if __name__ == "__main__":
    try:
        exit_code = main()
    except SystemExit:
        raise
    except BaseException:  # noqa: BLE001 - the gate reads the exit code and the log tail
        traceback.print_exc()
        exit_code = 4
    sys.stdout.flush()
    sys.stderr.flush()
    # os._exit: gevent's hub and zmq's context can otherwise hold the interpreter at shutdown.
    os._exit(exit_code)
