"""``releasegate serve``: the gate over HTTP, for Flagger webhooks and Argo Rollouts' Web metric provider.

Routes (docs/canary.md has the wiring and the sizing of timeouts):

    GET  /healthz                 the server itself (never runs the gate, needs no token)
    POST /flagger/<stage>         Flagger webhook: 200 only for pass/promote; rollback 412, hold 409
    POST /flagger/rollback        Flagger ``rollback`` hook: 200 when this server's last verdict for
                                  the canary (same name, namespace and checksum) was rollback
    GET|POST|PUT /argo/<stage>    Argo Rollouts Web provider: 200 with a JSON ``decision``; a
                                  successCondition on promote and a failureCondition on rollback
                                  leave hold Inconclusive

Every gate run is ``python -m releasegate run --stage S ...`` in a process group of its own,
one at a time (a request that cannot get the lock within ``lock_wait_s`` gets 503 with
Retry-After), killed at ``max_run_s`` or as soon as the client hangs up (a webhook that timed
out), and judged only by the ``verdict.json`` it wrote, cross-checked with its exit code.
Anything that goes wrong is a hold, never a success.

The pure part (:func:`interpret`, :func:`flagger_status`, :func:`parse_listen`) takes plain
data; :class:`GateRunner` owns the subprocess and :class:`GateServer` the sockets.
"""

from __future__ import annotations

import hmac
import json
import math
import os
import select
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import parse_qs, urlsplit

from releasegate.plugin import only_problem
from releasegate.results import STAGES, Stage

SCHEMA = "releasegate.serve/v1"
# Flagger's payload is a few hundred bytes, Argo's body (if any) as small: anything bigger is
# not one of theirs.
MAX_BODY_BYTES = 64 * 1024
# A refused body is read and dropped up to this much (see _Handler._discard).
DRAIN_BYTES = 1024 * 1024
# After SIGTERM (the gate writes a partial verdict: hold) the run gets this long before SIGKILL.
KILL_GRACE_S = 10.0
# How often a waiting handler looks at the run and at its client.
POLL_S = 0.2
# Requests queued behind the lock at once; more get 503 straight away (bounded threads).
MAX_WAITING = 8
# `only` selections: at most this many patterns of at most this length.
MAX_ONLY = 20
MAX_PATTERN = 200
# Flagger canaries remembered for the rollback hook.
MAX_REMEMBERED = 1000

SUCCESS_DECISIONS = frozenset({"pass", "promote"})
Decision = Literal["pass", "promote", "hold", "rollback"]
# Flagger treats 200-202 as success (callWebhook: StatusCode > 202 is an error) and retries 5xx
# and 429 (go-retryablehttp), so verdicts that are not a success are 4xx: a retry would run the
# whole gate again.
FLAGGER_STATUS: dict[str, int] = {"pass": 200, "promote": 200, "rollback": 412, "hold": 409}


# --------------------------------------------------------------------------- pure part


@dataclass(frozen=True)
class GateOutcome:
    """What one gate run decided, as the server answers it (never holds a secret)."""

    stage: str
    target: str
    decision: Decision
    exit_code: int
    reasons: tuple[str, ...]
    report_dir: str
    duration_s: float
    counts: Mapping[str, int] = field(default_factory=dict)
    # What went wrong running the gate (no verdict, killed, inconsistent), if anything.
    error: str | None = None

    @property
    def success(self) -> bool:
        return self.decision in SUCCESS_DECISIONS and self.exit_code == 0 and self.error is None

    def as_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "stage": self.stage,
            "target": self.target,
            "decision": self.decision,
            "exit_code": self.exit_code,
            "success": self.success,
            "reasons": list(self.reasons),
            "report_dir": self.report_dir,
            "duration_s": round(self.duration_s, 3),
            "counts": dict(self.counts),
            "error": self.error,
        }


def interpret(
    *,
    stage: str,
    target: str,
    returncode: int | None,
    verdict: Any,
    killed: str | None,
    report_dir: str,
    duration_s: float,
) -> GateOutcome:
    """The outcome of one run from its exit code and its verdict.json, failing closed.

    ``verdict`` is the parsed verdict.json (None when there was none); ``killed`` says why the
    server ended the run, if it did. Success needs everything to agree: exit 0, a verdict of
    this stage saying pass/promote with exit_code 0, not a dry run, not killed.
    """

    counts: dict[str, int] = {}

    def hold(error: str, reasons: Sequence[str] = (), exit_code: int = 2) -> GateOutcome:
        return GateOutcome(stage, target, "hold", exit_code, tuple(reasons) or (error,), report_dir, duration_s, counts, error)

    if not isinstance(verdict, dict):
        if killed:
            return hold(killed)
        return hold(f"the gate run wrote no readable verdict.json (exit code {returncode})", exit_code=_hold_code(returncode))
    raw_counts, raw_reasons, name = verdict.get("counts"), verdict.get("reasons"), verdict.get("target")
    if isinstance(raw_counts, dict):
        counts = {str(k): v for k, v in raw_counts.items() if isinstance(v, int)}
    reasons = tuple(r for r in raw_reasons if isinstance(r, str)) if isinstance(raw_reasons, list) else ()
    if isinstance(name, str) and name:
        target = name
    decision = verdict.get("decision")
    if verdict.get("stage") != stage:
        return hold(f"the verdict is of stage {verdict.get('stage')!r}, not {stage!r}")
    if decision not in ("pass", "promote", "hold", "rollback"):
        return hold(f"the verdict's decision {decision!r} is not one of pass, promote, hold, rollback")
    if verdict.get("dry_run") is True:
        return hold("the gate ran as a dry run: its decision is not a verdict", reasons)
    if killed:
        # A partial verdict may already hold a blocking failure: that rollback stands. Anything
        # else is partial evidence.
        if decision == "rollback" and returncode == 1:
            return GateOutcome(stage, target, "rollback", 1, reasons, report_dir, duration_s, counts, None)
        return hold(killed, (*reasons, killed))
    verdict_code = verdict.get("exit_code")
    expected = 0 if decision in SUCCESS_DECISIONS else (1 if decision == "rollback" else 2)
    if returncode != verdict_code or verdict_code != expected:
        if returncode == 4 or verdict_code == 4:
            return hold(f"internal error in the gate run (exit code {returncode}); see {report_dir}", reasons, exit_code=4)
        return hold(f"the gate's exit code {returncode} and its verdict ({decision}, exit_code {verdict_code}) disagree", reasons)
    return GateOutcome(stage, target, cast(Decision, decision), expected, reasons, report_dir, duration_s, counts, None)


def _hold_code(returncode: int | None) -> int:
    # Configuration and internal errors keep their code (the body says which); the rest is hold.
    return returncode if returncode in (3, 4) else 2


def flagger_status(outcome: GateOutcome) -> int:
    """HTTP status for Flagger: 200 only for a success; rollback 412, hold (and errors) 409."""
    if outcome.success:
        return 200
    return FLAGGER_STATUS["rollback"] if outcome.decision == "rollback" else FLAGGER_STATUS["hold"]


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); ValueError with the reason."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:8080)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{value!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{value!r}: port {port} is out of range")
    return host, port


def is_loopback(host: str) -> bool:
    return host == "localhost" or host.startswith("127.") or host == "::1"


def only_patterns(query: Mapping[str, Sequence[str]], metadata: Mapping[str, Any] | None) -> list[str]:
    """Check-id prefixes from ``?only=a,b`` (repeatable) and Flagger's ``metadata.only`` ("a b" or "a,b")."""
    texts = list(query.get("only", ()))
    if metadata is not None and isinstance(metadata.get("only"), str):
        texts.append(metadata["only"])
    return [part for text in texts for part in text.replace(",", " ").split() if part]


def only_error(patterns: Sequence[str], stage: str) -> str | None:
    if len(patterns) > MAX_ONLY:
        return f"at most {MAX_ONLY} `only` patterns"
    for pattern in patterns:
        if len(pattern) > MAX_PATTERN or pattern.startswith("-"):
            return f"`only` pattern {pattern[:40]!r}... is not a check-id prefix"
    return only_problem(list(patterns), stage)


# --------------------------------------------------------------------------- running the gate


@dataclass(frozen=True)
class ServeSettings:
    """Everything the server needs, validated before it binds (``releasegate serve``)."""

    target: Path
    gates: Path
    suite: Path
    report_root: Path
    target_name: str
    max_run_s: float
    lock_wait_s: float = 10.0
    keep_runs: int = 100
    # The bearer token requests must carry (None: no auth). Never printed: repr=False.
    token: str | None = field(default=None, repr=False)
    # The variable the token came from: removed from the gate run's environment.
    token_env: str | None = None


# Builds the command of one run: (stage, only patterns, report dir) -> argv.
CommandBuilder = Callable[[str, Sequence[str], Path], list[str]]


def gate_command(settings: ServeSettings) -> CommandBuilder:
    def build(stage: str, only: Sequence[str], run_dir: Path) -> list[str]:
        argv = [sys.executable, "-m", "releasegate", "run", "--stage", stage, "--target", str(settings.target)]
        argv += ["--gates", str(settings.gates), "--suite", str(settings.suite), "--report-dir", str(run_dir)]
        return argv + [f"--only={pattern}" for pattern in only]

    return build


class Busy(Exception):
    """Another run holds the lock; ``retry_after_s`` is the time it may still take."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"another gate run is in progress; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class GateRunner:
    """One gate run at a time, in a subprocess with a deadline."""

    def __init__(
        self,
        settings: ServeSettings,
        *,
        command: CommandBuilder | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._command = command or gate_command(settings)
        self._clock = clock
        self._lock = threading.Lock()
        self._state = threading.Lock()  # guards the fields below
        self._waiting = 0
        self._seq = 0
        self._current: subprocess.Popen[bytes] | None = None
        self._current_deadline = 0.0

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    def retry_after_s(self) -> int:
        with self._state:
            return self._retry_after_unlocked()

    def run(self, stage: str, only: Sequence[str], *, client_gone: Callable[[], bool] = lambda: False) -> GateOutcome:
        """Run the gate once; Busy if the lock cannot be had within lock_wait_s."""
        with self._state:
            if self._waiting >= MAX_WAITING:
                raise Busy(self._retry_after_unlocked())
            self._waiting += 1
        try:
            acquired = self._lock.acquire(timeout=self.settings.lock_wait_s)
        finally:
            with self._state:
                self._waiting -= 1
        if not acquired:
            raise Busy(self.retry_after_s())
        try:
            return self._run_locked(stage, only, client_gone)
        finally:
            self._lock.release()

    def _retry_after_unlocked(self) -> int:
        # The time the current run may still take: it ends by then, killed if need be.
        left = self._current_deadline - self._clock() if self._current is not None else 1.0
        return max(1, math.ceil(left))

    def _run_locked(self, stage: str, only: Sequence[str], client_gone: Callable[[], bool]) -> GateOutcome:
        run_dir = self._new_run_dir(stage)
        started = self._clock()
        deadline = started + self.settings.max_run_s
        env = {k: v for k, v in os.environ.items() if k != self.settings.token_env}
        # pytest settings meant for the server's own environment must not shape the gate.
        for name in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS"):
            env.pop(name, None)
        killed: str | None = None
        with open(run_dir / "run.log", "wb") as log:
            try:
                process = subprocess.Popen(  # noqa: S603 - our own argv, no shell
                    self._command(stage, only, run_dir),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=run_dir,
                    start_new_session=True,  # its own process group: killed whole
                )
            except OSError as exc:
                reason = f"could not start the gate run: {exc.strerror or exc}"
                return interpret(
                    stage=stage,
                    target=self.settings.target_name,
                    returncode=None,
                    verdict=None,
                    killed=reason,
                    report_dir=str(run_dir),
                    duration_s=self._clock() - started,
                )
            with self._state:
                self._current, self._current_deadline = process, deadline
            try:
                while True:
                    try:
                        process.wait(timeout=POLL_S)
                        break
                    except subprocess.TimeoutExpired:
                        pass
                    if self._clock() >= deadline:
                        killed = f"the gate run exceeded max-run-s ({self.settings.max_run_s:g} s) and was stopped: cannot decide"
                        break
                    if client_gone():
                        killed = "the client hung up (webhook timeout?) before the gate decided: run stopped"
                        break
                if killed:
                    stop_process_group(process)
                else:
                    _kill_leftovers(process)
            finally:
                if process.poll() is None:  # an exception above: never leave a run behind
                    stop_process_group(process)
                with self._state:
                    self._current = None
        verdict = _read_verdict(run_dir / "verdict.json")
        outcome = interpret(
            stage=stage,
            target=self.settings.target_name,
            returncode=process.returncode,
            verdict=verdict,
            killed=killed,
            report_dir=str(run_dir),
            duration_s=self._clock() - started,
        )
        self._prune()
        return outcome

    def stop(self) -> None:
        """End the current run, if any (the server is shutting down)."""
        with self._state:
            process = self._current
        if process is not None and process.poll() is None:
            stop_process_group(process)

    def _new_run_dir(self, stage: str) -> Path:
        with self._state:
            self._seq += 1
            seq = self._seq
        root = self.settings.report_root
        root.mkdir(parents=True, exist_ok=True)
        folder = root / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{stage}-{os.getpid()}-{seq:04d}"
        folder.mkdir()
        return folder

    def _prune(self) -> None:
        """Keep the newest keep_runs run folders this server can have made (bounded disk)."""
        runs = sorted(
            (p for p in self.settings.report_root.iterdir() if p.is_dir() and any(f"-{s}-" in p.name for s in STAGES)),
            key=lambda p: p.name,
        )
        for old in runs[: max(0, len(runs) - self.settings.keep_runs)]:
            shutil.rmtree(old, ignore_errors=True)


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the run's process group (the gate writes a partial verdict), then SIGKILL."""
    for sig, wait_s in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, KILL_GRACE_S)):
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; anything it left in its group goes too.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return


def _kill_leftovers(process: subprocess.Popen[bytes]) -> None:
    """A finished run leaves nothing behind: whatever it started in its group goes too."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _read_verdict(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


# --------------------------------------------------------------------------- Flagger's rollback hook


@dataclass(frozen=True)
class Remembered:
    checksum: str
    decision: str
    stage: str
    report_dir: str


class FlaggerMemory:
    """The last verdict per Flagger canary (namespace, name): what the rollback hook answers from."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[str, str], Remembered] = OrderedDict()

    def remember(self, namespace: str, name: str, entry: Remembered) -> None:
        with self._lock:
            self._items[(namespace, name)] = entry
            self._items.move_to_end((namespace, name))
            while len(self._items) > MAX_REMEMBERED:
                self._items.popitem(last=False)

    def rollback_answer(self, namespace: str, name: str, checksum: str) -> tuple[bool, str]:
        """(roll back?, why). Only a rollback verdict for the same revision (checksum) says yes."""
        with self._lock:
            entry = self._items.get((namespace, name))
        if entry is None:
            return False, f"no verdict recorded for canary {namespace}/{name}"
        if not checksum:
            return False, "Flagger sent no checksum: this revision cannot be told from the one judged"
        if entry.checksum != checksum:
            return False, f"the last verdict ({entry.decision}) was for another revision (checksum {entry.checksum or 'none'})"
        if entry.decision != "rollback":
            return False, f"the last verdict for this revision was {entry.decision} ({entry.stage})"
        return True, f"the {entry.stage} gate decided rollback for this revision; see {entry.report_dir}"


# --------------------------------------------------------------------------- HTTP


class _HttpError(Exception):
    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})


class GateServer(ThreadingHTTPServer):
    """The HTTP server; ``runner`` runs the gate, ``memory`` answers Flagger's rollback hook."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        settings: ServeSettings,
        *,
        command: CommandBuilder | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.settings = settings
        self.runner = GateRunner(settings, command=command)
        self.memory = FlaggerMemory()
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN (a reverse DNS query, slow or hanging
        # without a resolver); the name is never used here.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), int(self.server_address[1])
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}"

    def shutdown_all(self) -> None:
        self.runner.stop()
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: GateServer
    server_version = "releasegate-serve"
    sys_version = ""
    # Socket timeout: a client that connects and sends nothing (or its body slowly) is dropped.
    timeout = 15.0

    # http.server's per-request log line shows the query and goes to stderr unasked: our own
    # line (method, path without query, status, decision) replaces it.
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        return

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def _dispatch(self, method: str) -> None:
        started = time.monotonic()
        split = urlsplit(self.path)
        path = split.path
        note = ""
        try:
            status, body, headers = self._route(method, path, parse_qs(split.query))
            note = str(body.get("decision", "")) if isinstance(body, dict) else ""
        except _HttpError as exc:
            status, body, headers = exc.status, {"schema": SCHEMA, "error": str(exc)}, exc.headers
        except Exception as exc:  # noqa: BLE001 - a server bug must answer 500, never success
            status, body, headers = 500, {"schema": SCHEMA, "error": f"internal error in releasegate serve: {type(exc).__name__}"}, {}
            note = f"{type(exc).__name__}: {exc}"
        self._answer(status, body, headers, head=method == "HEAD")
        self.server.log(f"releasegate serve: {method} {path[:200]} -> {status} {note} ({time.monotonic() - started:.1f} s)".rstrip())

    def _route(self, method: str, path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, Any], dict[str, str]]:
        parts = [p for p in path.split("/") if p]
        if parts == ["healthz"]:
            self._allow(method, ("GET", "HEAD"))
            return 200, {"schema": SCHEMA, "status": "ok", "busy": self.server.runner.busy, "target": self.server.settings.target_name}, {}
        if len(parts) == 2 and parts[0] == "flagger":
            self._allow(method, ("POST",))
            self._authorize()
            stage = None if parts[1] == "rollback" else self._stage(parts[1])
            payload = self._json_body(required=True)
            return self._flagger_rollback(payload) if stage is None else self._flagger(stage, payload, query)
        if len(parts) == 2 and parts[0] == "argo":
            self._allow(method, ("GET", "POST", "PUT"))
            self._authorize()
            stage = self._stage(parts[1])
            if method != "GET":
                self._json_body(required=False)  # read (bounded) and ignored: the query says what to run
            return self._argo(stage, query)
        raise _HttpError(404, f"no route {path[:100]!r}: use /flagger/<stage>, /flagger/rollback, /argo/<stage> or /healthz")

    # ---- the two integrations

    def _flagger(self, stage: Stage, payload: dict[str, Any], query: dict[str, list[str]]) -> tuple[int, dict[str, Any], dict[str, str]]:
        canary = _flagger_canary(payload)
        metadata = payload.get("metadata")
        outcome = self._run(stage, only_patterns(query, metadata if isinstance(metadata, dict) else None))
        if canary["name"]:
            self.server.memory.remember(
                canary["namespace"], canary["name"], Remembered(canary["checksum"], outcome.decision, stage, outcome.report_dir)
            )
        # Flagger shows a non-2xx body in its events: the reasons travel with it. The metadata
        # is never echoed (Flagger users put tokens there).
        return flagger_status(outcome), {**outcome.as_json(), "flagger": canary}, {}

    def _flagger_rollback(self, payload: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        canary = _flagger_canary(payload)
        roll_back, why = self.server.memory.rollback_answer(canary["namespace"], canary["name"], canary["checksum"])
        body = {"schema": SCHEMA, "rollback": roll_back, "reason": why, "flagger": canary}
        # Flagger's rollback hook: 2xx means "roll back now"; anything else means "not signalled".
        return (200 if roll_back else 409), body, {}

    def _argo(self, stage: Stage, query: dict[str, list[str]]) -> tuple[int, dict[str, Any], dict[str, str]]:
        # Argo's Web provider turns any non-2xx into a measurement Error: every verdict, hold
        # included, is a 200 whose `decision` the AnalysisTemplate's conditions read.
        outcome = self._run(stage, only_patterns(query, None))
        return 200, outcome.as_json(), {}

    def _run(self, stage: Stage, only: list[str]) -> GateOutcome:
        problem = only_error(only, stage)
        if problem:
            raise _HttpError(400, problem)
        try:
            return self.server.runner.run(stage, only, client_gone=self._client_gone)
        except Busy as exc:
            raise _HttpError(503, str(exc), {"Retry-After": str(exc.retry_after_s)}) from None

    # ---- request plumbing

    def _allow(self, method: str, allowed: Sequence[str]) -> None:
        if method not in allowed:
            raise _HttpError(405, f"method {method} not allowed here; allowed: {', '.join(allowed)}", {"Allow": ", ".join(allowed)})

    def _stage(self, name: str) -> Stage:
        for stage in STAGES:
            if stage == name:
                return stage
        raise _HttpError(404, f"unknown stage {name[:40]!r}; stages: {', '.join(STAGES)}")

    def _authorize(self) -> None:
        token = self.server.settings.token
        if token is None:
            return
        given = self.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        # Constant-time compare; neither value is ever echoed or logged.
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            raise _HttpError(401, "missing or wrong bearer token", {"WWW-Authenticate": 'Bearer realm="releasegate"'})

    def _json_body(self, *, required: bool) -> dict[str, Any]:
        if self.headers.get("Transfer-Encoding"):
            raise _HttpError(411, "send the body with a Content-Length (chunked bodies are not accepted)")
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            if required:
                raise _HttpError(411, "a JSON body with a Content-Length is required")
            return {}
        try:
            length = int(length_text)
        except ValueError:
            raise _HttpError(400, "Content-Length is not a number") from None
        if length < 0:
            raise _HttpError(400, "Content-Length is negative")
        if length > MAX_BODY_BYTES:
            self._discard(length)
            raise _HttpError(413, f"body of {length} bytes is over the {MAX_BODY_BYTES}-byte limit")
        try:
            raw = self.rfile.read(length)
        except OSError:
            raise _HttpError(400, "the body did not arrive in time") from None
        if len(raw) < length:
            raise _HttpError(400, "the body is shorter than its Content-Length")
        if not raw.strip():
            if required:
                raise _HttpError(400, "a JSON object body is required")
            return {}
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise _HttpError(400, "the body is not JSON") from None
        if not isinstance(data, dict):
            raise _HttpError(400, "the body must be a JSON object")
        return data

    def _discard(self, length: int) -> None:
        """Drain (never keep) a refused body up to a bound, so the answer is not lost to a reset.

        Closing a socket with unread bytes makes the kernel send RST, and the client may then
        lose the 413 it was about to read. Past the bound the connection is simply closed.
        """
        self.close_connection = True
        left = min(length, DRAIN_BYTES)
        try:
            while left > 0:
                chunk = self.rfile.read(min(left, 65536))
                if not chunk:
                    return
                left -= len(chunk)
        except OSError:
            return

    def _client_gone(self) -> bool:
        """True once the client closed its side: nothing is waiting for this run any more."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return bool(self.connection.recv(1, socket.MSG_PEEK) == b"")
        except (OSError, ValueError):
            return True

    def _answer(self, status: int, body: dict[str, Any], headers: Mapping[str, str], *, head: bool = False) -> None:
        data = (json.dumps(body, indent=2) + "\n").encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if not head:
                self.wfile.write(data)
        except OSError:
            pass  # the client is gone; nothing to tell it


def _flagger_canary(payload: Mapping[str, Any]) -> dict[str, str]:
    """The canary's identity from Flagger's payload {name, namespace, phase, checksum, metadata}."""
    out: dict[str, str] = {}
    for key in ("name", "namespace", "phase", "checksum"):
        value = payload.get(key, "")
        if not isinstance(value, str):
            raise _HttpError(400, f"Flagger payload: {key} must be a string")
        out[key] = value[:253]
    metadata = payload.get("metadata")
    if metadata is not None and not (isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())):
        raise _HttpError(400, "Flagger payload: metadata must be an object of strings")
    return out


def serve_until_stopped(server: GateServer, *, stop: threading.Event | None = None) -> None:
    """Serve until SIGTERM/SIGINT (or ``stop``); then end the current run and close."""
    stop = stop or threading.Event()
    previous: dict[signal.Signals, Any] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
        except ValueError:  # not the main thread
            pass
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="releasegate-serve", daemon=True)
    thread.start()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown_all()
        thread.join(timeout=KILL_GRACE_S * 2 + 5)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
