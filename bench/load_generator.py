"""Benchmark: how much load one load-generator process makes, and how truly it measures it.

Three questions from issue 6, each against a small, fast server of its own on loopback (plain
HTTP and ws://, so TLS costs do not blur the generator's own), each server in its own process so
it never competes with the generator for the GIL:

1. **HTTP requests/s per process.** The project's ConversationUser (its shipped ``read`` task:
   GET /api/v1/conversations/<id>/messages with the bearer token, the grouped request name,
   ``catch_response`` and the JSON check) against a plain Locust ``FastHttpUser`` doing a bare
   GET of the same URL, both without think time, alternating ``--repetitions`` times. Goal: the
   project's users make at least 90 % of plain Locust's requests/s.
2. **SyncUser sessions per process.** The project's SyncUser (websocket-client under gevent, a
   receive-loop greenlet per connection, edits timed to their event by nonce) against a
   WebSocket server that answers every frame at once; ramps to ``--sessions`` (2,000) and holds
   them. Goal: 2,000 sessions in one process with under 1 ms of generator CPU per event.
3. **Reported vs true latency.** The same users against servers that answer after a known delay
   (``--delay-ms``, 50 ms): the p50/p95 Locust's own statistics report, and those of the raw
   samples (what the gate's thresholds judge), against the injected delay.

The generator runs in subprocesses (``--generate``), since ``import locust`` monkey-patches the
whole process with gevent; the servers in subprocesses too (``--serve``). The figures go into
bench/RESULTS.md between ``<!-- load_generator.py -->`` markers, replacing only that section.

Run: ``.venv/bin/python bench/load_generator.py [--seconds 10] [--repetitions 3] [--sessions 2000]``
or ``make bench``.
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and "--generate" in sys.argv:
    # Before anything else imports ssl or socket: gevent patches the process on this import.
    import locust  # noqa: F401

import argparse
import json
import os
import resource
import statistics
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from results_file import markers, write_section  # bench/ is on sys.path: the scripts run as files

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO / "bench" / "RESULTS.md"
BEGIN, END = markers("load_generator.py")
CONVERSATION = "bench"
MESSAGES_URL = f"/api/v1/conversations/{CONVERSATION}/messages"
# Both "id" (the conversation ConversationUser creates at start) and "messages" (what its read
# task checks): one canned answer serves every request.
BODY = b'{"id": "bench", "messages": []}'
BENCH_TOKEN = "bench-token-not-a-secret-0123456789"
SERVER_START_S = 10.0
GENERATOR_GRACE_S = 60.0  # beyond its own run time, before a generator subprocess is killed
HTTP_GOAL = 0.90
SESSIONS_GOAL = 2000
EVENT_CPU_GOAL_MS = 1.0
PARTS = ("http", "sync", "delay")


# --------------------------------------------------------------------------- servers (--serve)


def serve_http(delay_s: float) -> None:
    """HTTP/1.1 keep-alive on 127.0.0.1: every request gets BODY, after ``delay_s``.

    A bare asyncio protocol, no framework: it must answer far faster than one generator process
    asks, or the benchmark measures the server.
    """
    import asyncio

    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)

    class Http(asyncio.Protocol):
        def __init__(self) -> None:
            self.buffer = b""
            self.transport: asyncio.Transport | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
                head = self.buffer[:end].lower()
                length = 0
                if (at := head.find(b"content-length:")) >= 0:
                    length = int(head[at + 15 :].split(b"\r\n", 1)[0].strip() or b"0")
                if len(self.buffer) < end + 4 + length:
                    return  # the body is still on its way
                self.buffer = self.buffer[end + 4 + length :]
                assert self.transport is not None
                if delay_s > 0:
                    asyncio.get_running_loop().call_later(delay_s, self._write, answer)
                else:
                    self.transport.write(answer)

        def _write(self, data: bytes) -> None:
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(data)

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Http, "127.0.0.1", 0, backlog=4096)
        print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
        await _until_stdin_closes()
        server.close()

    asyncio.run(main())


def serve_ws(delay_s: float) -> None:
    """WebSocket on 127.0.0.1 (any path): every JSON frame with a nonce is answered with an event carrying it."""
    import asyncio

    from websockets.asyncio.server import ServerConnection, serve

    async def session(connection: ServerConnection) -> None:
        async for frame in connection:
            try:
                message = json.loads(frame)
            except ValueError:
                continue
            event = json.dumps({"type": message.get("type"), "data": {"nonce": message.get("nonce")}})
            if delay_s > 0:
                asyncio.get_running_loop().call_later(delay_s, _send_soon, connection, event)
            else:
                await connection.send(event)

    def _send_soon(connection: ServerConnection, event: str) -> None:
        asyncio.ensure_future(_send_quietly(connection, event))

    async def _send_quietly(connection: ServerConnection, event: str) -> None:
        try:
            await connection.send(event)
        except Exception:  # noqa: BLE001 - a session closed while its answer waited: nothing to do
            pass

    async def main() -> None:
        async with serve(session, "127.0.0.1", 0, max_queue=None, ping_interval=None, compression=None) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            print(f"PORT {port}", flush=True)
            await _until_stdin_closes()

    asyncio.run(main())


async def _until_stdin_closes() -> None:
    """Serve until the parent closes our stdin (or dies): no orphan servers."""
    import asyncio

    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


@dataclass
class Server:
    process: subprocess.Popen[str]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def server(kind: str, delay_ms: float = 0.0) -> Iterator[Server]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--delay-ms", str(delay_ms)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + SERVER_START_S
        line = ""
        while time.monotonic() < deadline and not line.startswith("PORT "):
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                break
        if not line.startswith("PORT "):
            raise RuntimeError(f"{kind} server did not start")
        yield Server(process, int(line.split()[1]))
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


# --------------------------------------------------------------------------- generators (--generate)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _gate_figures(book: Any, window_s: float, kind: str) -> dict[str, float | None]:
    """p50/p95 as the gate reports them: the runner's summary of the raw samples (HTTP, or sync for SyncUsers)."""
    if not book.samples:
        return {"p50_ms": None, "p95_ms": None}
    summary = book.summary(duration_s=window_s)
    latency = summary.sync if kind == "sync" else summary.http
    if latency is None:
        return {"p50_ms": None, "p95_ms": None}
    return {"p50_ms": latency.p50_ms, "p95_ms": latency.p95_ms}


def generate(args: argparse.Namespace) -> dict[str, Any]:
    """One Locust run in this process (library mode); the figures as a dict."""
    os.environ.update(
        {
            "RELEASEGATE_PROFILE": "none",
            "RELEASEGATE_TOKEN": BENCH_TOKEN,
            "RELEASEGATE_WS_URL": args.host.replace("http://", "ws://") + "/ws/sync",
        }
    )
    os.environ.pop("RELEASEGATE_TARGET", None)
    os.environ.pop("RELEASEGATE_TOKEN_2", None)
    sys.path.insert(0, str(REPO / "loadtests"))

    import gevent
    import rg_users
    from locust import FastHttpUser, between, constant, events, task
    from locust.env import Environment

    class PlainUser(FastHttpUser):
        """Plain Locust: a bare GET of the same URL, nothing checked."""

        wait_time = constant(0)

        @task
        def read(self) -> None:
            self.client.get(MESSAGES_URL)

    class ProjectUser(rg_users.ConversationUser):
        """The shipped ConversationUser with only its read task (GET messages, grouped name, JSON check)."""

        wait_time = constant(0)

    ProjectUser.tasks = [rg_users.ConversationUser.read]

    frames = {"sent": 0, "received": 0}

    class BenchSyncUser(rg_users.SyncUser):
        """The shipped SyncUser in one fixed conversation (the bench server has no REST API)."""

        wait_time = between(args.think_min_s, args.think_max_s)

        def _join_room(self) -> str | None:
            return CONVERSATION

        def _send(self, message: dict[str, Any]) -> bool:
            frames["sent"] += 1
            return bool(super()._send(message))

        def _on_frame(self, frame: str | bytes) -> None:
            frames["received"] += 1
            super()._on_frame(frame)

    user_class: type = {"plain": PlainUser, "project": ProjectUser, "sync": BenchSyncUser}[args.generate]
    env = Environment(user_classes=[user_class], host=args.host, events=events)
    runner = env.create_local_runner()
    env.events.init.fire(environment=env, runner=runner, web_ui=None)
    # The project's per-request hook: the gate's runner (releasegate.load.run) books every request
    # event as a raw sample, and its thresholds judge those. Plain Locust gets Locust's stats only.
    from releasegate.load.results import SampleBook

    books = [SampleBook()]

    def book(
        request_type: str,
        name: str,
        response_time: float | None,
        response_length: int = 0,
        exception: BaseException | None = None,
        start_time: float | None = None,
        **_: Any,
    ) -> None:
        rt = float(response_time or 0.0)
        books[-1].add(start_time if start_time is not None else time.time() - rt / 1000, request_type, name, rt, exception is not None)

    if args.generate != "plain":
        env.events.request.add_listener(book)

    users = args.users
    started = time.monotonic()
    runner.start(users, spawn_rate=args.spawn_rate)
    # Ramp (bounded), then warm up, then measure a window.
    ramp_deadline = started + args.ramp_timeout_s
    while runner.user_count < users and time.monotonic() < ramp_deadline:
        gevent.sleep(0.2)
    ramp_s = time.monotonic() - started
    gevent.sleep(args.warmup_s)
    env.stats.reset_all()
    books.append(SampleBook())
    frames.update(sent=0, received=0)
    cpu0, t0 = _cpu_s(), time.monotonic()
    gevent.sleep(args.seconds)
    cpu1, t1 = _cpu_s(), time.monotonic()
    window = t1 - t0
    total = env.stats.total
    result: dict[str, Any] = {
        "kind": args.generate,
        "users": runner.user_count,
        "ramp_s": round(ramp_s, 2),
        "window_s": round(window, 3),
        "requests": total.num_requests,
        "failures": total.num_failures,
        "rps": total.num_requests / window,
        "cpu_percent": 100 * (cpu1 - cpu0) / window,
        "cpu_s": cpu1 - cpu0,
        "locust_p50_ms": total.get_response_time_percentile(0.5),
        "locust_p95_ms": total.get_response_time_percentile(0.95),
        "raw": _gate_figures(books[-1], window, args.generate),
        "raw_samples": len(books[-1].samples),
        "errors": [f"{e.method} {e.name}: {e.error}"[:200] for e in list(env.stats.errors.values())[:5]],
    }
    if args.generate == "sync":
        connect = env.stats.get(rg_users.SYNC_CONNECT, "WS")
        edits = env.stats.get(rg_users.SYNC_EDIT, "WS")
        result.update(
            connected=_open_sessions(runner),
            connect_failures=connect.num_failures,
            edits=edits.num_requests,
            edit_failures=edits.num_failures,
            frames_sent=frames["sent"],
            frames_received=frames["received"],
        )
    runner.quit()
    return result


def _open_sessions(runner: Any) -> int:
    """Users whose WebSocket is open now (Locust keeps each user as its greenlet's first argument)."""
    count = 0
    for greenlet in list(runner.user_greenlets):
        ws = getattr(greenlet.args[0], "ws", None) if greenlet.args else None
        count += bool(ws is not None and ws.connected)
    return count


# --------------------------------------------------------------------------- orchestration


def run_generator(kind: str, host: str, **options: Any) -> dict[str, Any]:
    command = [sys.executable, __file__, "--generate", kind, "--host", host]
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            command.append(flag)
        elif value is not False:
            command += [flag, str(value)]
    budget = float(options.get("seconds", 10)) + float(options.get("warmup_s", 2)) + float(options.get("ramp_timeout_s", 30))
    done = subprocess.run(command, capture_output=True, text=True, timeout=budget + GENERATOR_GRACE_S, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"generator {kind} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


@dataclass(frozen=True)
class HttpPair:
    plain: dict[str, Any]
    project: dict[str, Any]


def bench_http(seconds: float, repetitions: int, users: int) -> tuple[list[HttpPair], float]:
    """Plain and project users against the same server, alternating; and the server's CPU share."""
    pairs: list[HttpPair] = []
    with server("http") as http:
        cpu0, t0 = http.cpu_seconds(), time.monotonic()
        for repetition in range(repetitions):
            print(f"http: repetition {repetition + 1} of {repetitions}", file=sys.stderr, flush=True)
            common = {"users": users, "spawn_rate": users, "seconds": seconds, "warmup_s": 2}
            plain = run_generator("plain", http.url, **common)
            project = run_generator("project", http.url, **common)
            pairs.append(HttpPair(plain, project))
        server_cpu = 100 * (http.cpu_seconds() - cpu0) / (time.monotonic() - t0)
    return pairs, server_cpu


def bench_sync(sessions: int, spawn_rate: float, seconds: float, think: tuple[float, float]) -> tuple[dict[str, Any], float]:
    with server("ws") as ws:
        print(f"sync: {sessions} sessions", file=sys.stderr, flush=True)
        cpu0 = ws.cpu_seconds()
        started = time.monotonic()
        result = run_generator(
            "sync",
            ws.url,
            users=sessions,
            spawn_rate=spawn_rate,
            seconds=seconds,
            warmup_s=3,
            ramp_timeout_s=max(60.0, 3 * sessions / spawn_rate),
            think_min_s=think[0],
            think_max_s=think[1],
        )
        server_cpu = 100 * (ws.cpu_seconds() - cpu0) / (time.monotonic() - started)
    return result, server_cpu


def bench_delay(delay_ms: float, seconds: float) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    with server("http", delay_ms) as http:
        print(f"delay: HTTP +{delay_ms:g} ms", file=sys.stderr, flush=True)
        out["http"] = run_generator("project", http.url, users=20, spawn_rate=20, seconds=seconds, warmup_s=2)
    with server("ws", delay_ms) as ws:
        print(f"delay: sync +{delay_ms:g} ms", file=sys.stderr, flush=True)
        out["sync"] = run_generator(
            "sync", ws.url, users=20, spawn_rate=20, seconds=seconds, warmup_s=2, think_min_s=0.05, think_max_s=0.15
        )
    return out


# --------------------------------------------------------------------------- report


def machine_rows() -> list[tuple[str, str]]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from importlib.metadata import version

    from security_stage import machine  # one description of the machine for every benchmark

    rows = machine()
    return [*rows, ("locust", f"{version('locust')} (gevent {version('gevent')}, websocket-client {version('websocket-client')})")]


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def render(
    http: tuple[Sequence[HttpPair], float] | None,
    sync_run: tuple[dict[str, Any], float] | None,
    delay: dict[str, dict[str, Any]] | None,
    *,
    args: argparse.Namespace,
    machine: Sequence[tuple[str, str]],
) -> str:
    out: list[str] = [BEGIN, "", "## Load generator: requests/s and sessions per process, reported vs true latency", ""]
    w = out.append
    w("Generated by `bench/load_generator.py` (`make bench`); see bench/README.md. Plain HTTP and ws:// on loopback,")
    w("each server in its own process; the generator is one Locust process (library mode) per run.")
    w("")
    w("| | |")
    w("|---|---|")
    for key, value in machine:
        w(f"| {key} | {value} |")
    w("")

    if http is not None:
        render_http(out, *http, args=args)
    if sync_run is not None:
        render_sync(out, *sync_run, args=args)
    if delay is not None:
        render_delay(out, delay, args=args)
    out.append(END)
    return "\n".join(out) + "\n"


def render_http(out: list[str], pairs: Sequence[HttpPair], http_server_cpu: float, *, args: argparse.Namespace) -> None:
    w = out.append
    ratios = [pair.project["rps"] / pair.plain["rps"] for pair in pairs]
    ratio = statistics.median(ratios)
    # CPU per request: what requests/s becomes once the generator has a whole core (contention-proof).
    cost = [_us_per_request(pair.plain) / _us_per_request(pair.project) for pair in pairs]
    # The verdict goes by CPU per request: requests/s also moves with how much of a core this
    # shared machine happened to give each run.
    by_cost = statistics.median(cost)
    verdict = "met" if by_cost >= HTTP_GOAL else "NOT met"
    w(
        f"### HTTP requests/s per process: {verdict} ({100 * by_cost:.0f} % of plain Locust by CPU per request, "
        f"{100 * ratio:.0f} % by requests/s measured; goal ≥ 90 %)"
    )
    w("")
    w(f"{args.users} users, no think time, {args.seconds:g} s measured after a 2 s warm-up, {args.repetitions} alternating repetitions.")
    w("The project's run includes the gate runner's per-request hook (every request event booked as a raw sample).")
    w("")
    w("| users | requests/s (median) | min – max | generator CPU % | CPU µs per request | failures | Locust p50 / p95 ms |")
    w("|---|---|---|---|---|---|---|")
    for name, runs in (
        ("plain FastHttpUser, bare GET", [p.plain for p in pairs]),
        ("ConversationUser read task + gate hook", [p.project for p in pairs]),
    ):
        rps = [run["rps"] for run in runs]
        w(
            f"| {name} | {statistics.median(rps):,.0f} | {min(rps):,.0f} – {max(rps):,.0f} | "
            f"{statistics.median(run['cpu_percent'] for run in runs):.0f} | {statistics.median(_us_per_request(r) for r in runs):.0f} | "
            f"{sum(run['failures'] for run in runs)} | "
            f"{statistics.median(run['locust_p50_ms'] for run in runs):g} / {statistics.median(run['locust_p95_ms'] for run in runs):g} |"
        )
    w("")
    w(f"Per repetition, project / plain requests/s: {', '.join(f'{100 * r:.0f} %' for r in ratios)}; by CPU per request (plain µs /")
    w(f"project µs, the ratio a generator with a whole core to itself reaches): {', '.join(f'{100 * c:.0f} %' for c in cost)}.")
    w(f"The server process used {http_server_cpu:.0f} % of a core on average: it is not the bottleneck.")
    w("")


def _us_per_request(run: dict[str, Any]) -> float:
    return float(1e6 * run["cpu_s"] / max(run["requests"], 1))


def render_sync(out: list[str], sync: dict[str, Any], sync_server_cpu: float, *, args: argparse.Namespace) -> None:
    w = out.append
    cycles = sync["edits"] or 1
    frames = (sync["frames_sent"] + sync["frames_received"]) or 1
    per_frame_ms = 1000 * sync["cpu_s"] / frames
    per_edit_ms = 1000 * sync["cpu_s"] / cycles
    held = sync["connected"] >= SESSIONS_GOAL
    w(
        f"### SyncUser sessions per process: {'met' if held and per_frame_ms < EVENT_CPU_GOAL_MS else 'NOT met'} "
        f"({sync['connected']:,} open, {per_frame_ms:.2f} ms CPU per event; goal ≥ {SESSIONS_GOAL:,} and < 1 ms)"
    )
    w("")
    w(f"Ramp to {args.sessions:,} SyncUsers at {args.spawn_rate:g}/s (took {sync['ramp_s']:.0f} s), 3 s warm-up, then")
    w(f"{args.seconds:g} s measured; each user waits {args.think_min_s:g}–{args.think_max_s:g} s between tasks (3 edits : 1 typing),")
    w("against a server that answers at once.")
    w("")
    w("| | |")
    w("|---|---|")
    w(f"| sessions open at the end of the window | {sync['connected']:,} of {sync['users']:,} users |")
    w(f"| connect failures / edit failures | {sync['connect_failures']} / {sync['edit_failures']} |")
    w(f"| edits timed (edit -> event) | {sync['edits']:,} ({sync['edits'] / sync['window_s']:,.0f}/s) |")
    w(f"| frames sent / received | {sync['frames_sent']:,} / {sync['frames_received']:,} |")
    w(f"| generator CPU | {sync['cpu_percent']:.0f} % of one core |")
    w(f"| generator CPU per event (frame sent or received) | {per_frame_ms:.3f} ms |")
    w(f"| generator CPU per timed edit (all work / edits) | {per_edit_ms:.3f} ms |")
    w(f"| edit -> event p50 / p95 (raw samples), server answers at once | {_ms(sync['raw']['p50_ms'])} / {_ms(sync['raw']['p95_ms'])} ms |")
    w(f"| server process CPU | {sync_server_cpu:.0f} % of one core |")
    w("")


def render_delay(out: list[str], delay: dict[str, dict[str, Any]], *, args: argparse.Namespace) -> None:
    w = out.append
    w(f"### Reported vs true latency: server delay {args.delay_ms:g} ms")
    w("")
    w("20 users each; HTTP: the ConversationUser read task without think time; sync: SyncUsers with 0.05–0.15 s between tasks.")
    w("Locust's own percentiles come from its response-time buckets (2 significant digits); raw: every sample (the gate's figures).")
    w("")
    w("| | samples | Locust p50 / p95 ms | raw p50 / p95 ms | raw p50 − delay |")
    w("|---|---|---|---|---|")
    for name, run in (("HTTP GET", delay["http"]), ("sync edit -> event", delay["sync"])):
        p50 = run["raw"]["p50_ms"]
        error = "—" if p50 is None else f"+{p50 - args.delay_ms:.1f} ms"
        w(
            f"| {name} | {run['raw_samples']:,} | {run['locust_p50_ms']:g} / {run['locust_p95_ms']:g} | "
            f"{_ms(p50)} / {_ms(run['raw']['p95_ms'])} | {error} |"
        )
    w("")


# --------------------------------------------------------------------------- command line


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window of each run (default 10)")
    parser.add_argument("--repetitions", type=int, default=3, help="alternating plain/project HTTP runs (default 3)")
    parser.add_argument("--users", type=int, default=50, help="HTTP users per generator process (default 50)")
    parser.add_argument("--sessions", type=int, default=SESSIONS_GOAL, help="SyncUser sessions to ramp to (default 2000)")
    parser.add_argument("--spawn-rate", type=float, default=100.0, help="SyncUsers started per second (default 100)")
    parser.add_argument("--think-min-s", type=float, default=1.0, help="SyncUser wait between tasks, lower bound (default 1)")
    parser.add_argument("--think-max-s", type=float, default=3.0, help="... upper bound (default 3)")
    parser.add_argument("--delay-ms", type=float, default=50.0, help="known server delay for the latency check (default 50)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="which benchmarks to run (default all)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="file to write the section into (default bench/RESULTS.md)")
    # Internal: the subprocesses.
    parser.add_argument("--serve", choices=["http", "ws"], help=argparse.SUPPRESS)
    parser.add_argument("--generate", choices=["plain", "project", "sync"], help=argparse.SUPPRESS)
    parser.add_argument("--host", help=argparse.SUPPRESS)
    parser.add_argument("--warmup-s", type=float, default=2.0, help=argparse.SUPPRESS)
    parser.add_argument("--ramp-timeout-s", type=float, default=30.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.repetitions < 1 or args.users < 1 or args.sessions < 1 or args.spawn_rate <= 0:
        parser.error("--seconds, --spawn-rate must be > 0; --repetitions, --users, --sessions >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        (serve_http if args.serve == "http" else serve_ws)(args.delay_ms / 1000)
        return 0
    if args.generate:
        print(json.dumps(generate(args)), flush=True)
        return 0
    parts = set(args.parts)
    http = bench_http(args.seconds, args.repetitions, args.users) if "http" in parts else None
    sync = bench_sync(args.sessions, args.spawn_rate, args.seconds, (args.think_min_s, args.think_max_s)) if "sync" in parts else None
    delay = bench_delay(args.delay_ms, args.seconds) if "delay" in parts else None
    section = render(http, sync, delay, args=args, machine=machine_rows())
    write_section(args.output, section, BEGIN, END)
    print(section)
    print(f"written to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
