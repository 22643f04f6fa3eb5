"""The probing loop against fake services (httpx.MockTransport): pacing, order, failures, bounds.

Short windows (a few hundred milliseconds) and slow fakes show the behaviour that matters for
honest numbers: requests leave on schedule whether or not earlier ones answered (open loop),
alternate between paths and between a target and its baseline, and every kind of failure ends
up as a sample of the right kind. No assertion is about how fast anything is.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Coroutine, Sequence

import httpx
import pytest

from releasegate.probes.http import HttpSettings
from releasegate.probes.slo import Endpoint, SloObservation, probe_async

Handler = Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]
TOKEN = "t0ken-for-the-fake-service-0123456789"
# How far a request may leave from its due time on a busy 2-core CI machine; a closed loop
# (each request waiting for the previous answer) would be off by hundreds of milliseconds.
DEPARTURE_TOLERANCE_MS = 60.0


def endpoint(host: str, *, timeout_s: float = 2.0) -> Endpoint:
    return Endpoint(f"target {host}", f"http://{host}", HttpSettings(timeout_s=timeout_s, max_body_bytes=4096), TOKEN)


def run(
    handler: Handler,
    *endpoints: Endpoint,
    paths: tuple[str, ...] = ("/a",),
    requests: int = 10,
    window_s: float = 0.2,
    max_in_flight: int = 16,
) -> list[SloObservation]:
    async def main() -> list[SloObservation]:
        transport = httpx.MockTransport(handler)
        return await probe_async(endpoints, paths, requests, window_s, max_in_flight=max_in_flight, transport=transport)

    return asyncio.run(main())


def respond(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    # A stream, not content=: the client reads the body itself, bounded (MockTransport pre-reads content).
    return httpx.Response(status, headers=headers, stream=httpx.ByteStream(b'{"ok": true}'))


class Recorder:
    """A fake service that answers after ``delay_s`` and remembers what it saw, and when."""

    def __init__(self, delay_s: float = 0.0, status: int = 200) -> None:
        self.delay_s, self.status = delay_s, status
        self.seen: list[tuple[str, str]] = []
        self.spans: list[tuple[float, float]] = []  # (arrived, answered) per request, perf_counter seconds
        self.in_flight = self.max_in_flight = 0
        self.authorized = True

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        arrived = time.perf_counter()
        self.seen.append((request.url.host, request.url.path))
        self.authorized &= request.headers.get("authorization") == f"Bearer {TOKEN}"
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight -= 1
            self.spans.append((arrived, time.perf_counter()))
        return respond(self.status)


def most_at_once(spans: Sequence[tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    now = peak = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


def test_requests_leave_when_due_whether_or_not_earlier_ones_answered() -> None:
    # Given a service that takes 0.3 s per answer and 10 requests due over 0.2 s
    service = Recorder(delay_s=0.3)
    (observation,) = run(service, endpoint("svc"), requests=10, window_s=0.2)
    assert len(observation.samples) == 10
    # Then the requests actually left on the even schedule (request i at i * 20 ms), not each
    # after the previous answer (a closed loop would hide a stall)
    timed = sorted(service.spans)[-10:]  # the warm-up requests came first
    departures_ms = [(start - timed[0][0]) * 1000 for start, _ in timed]
    for i, departure in enumerate(departures_ms):
        assert abs(departure - i * 20) <= DEPARTURE_TOLERANCE_MS, departures_ms
    assert most_at_once(timed) >= 5
    assert all(s.latency_ms is not None and s.latency_ms >= 300 for s in observation.samples)
    assert [round(s.at_ms) for s in observation.samples] == [i * 20 for i in range(10)]  # recorded as due


def test_a_request_is_timed_from_when_it_was_due_so_a_lagging_event_loop_counts() -> None:
    # Given requests due every 20 ms, and the service blocks the whole event loop for 150 ms
    # while answering the first /b request (due at 20 ms)
    blocked = False

    async def blocking(request: httpx.Request) -> httpx.Response:
        nonlocal blocked
        if request.url.path == "/b" and not blocked:
            blocked = True
            time.sleep(0.15)  # blocking on purpose: nothing else on the loop runs meanwhile
        return respond(200)

    (observation,) = run(blocking, endpoint("svc"), paths=("/a", "/b"), requests=10, window_s=0.2)
    # Then the requests due meanwhile could not leave before 170 ms, and their latency says so
    # (timed from the send, each would look instant)
    for sample in observation.samples[2:8]:
        assert sample.latency_ms is not None and sample.latency_ms >= 170 - sample.at_ms - 1, sample


def test_the_warm_up_opens_about_as_many_connections_as_the_window_keeps_busy() -> None:
    # Given a 0.1 s service and 50 requests per second: about five outstanding at any time
    service = Recorder(delay_s=0.1)
    (observation,) = run(service, endpoint("svc"), requests=10, window_s=0.2, max_in_flight=3)
    # Then after one timing request, as many as the cap allows were sent at once before the window
    assert observation.warm_up_requests == 1 + 3
    assert most_at_once(sorted(service.spans)[1:4]) == 3
    # And a fast service needs its one connection only
    (fast,) = run(Recorder(), endpoint("svc"), requests=10, window_s=0.5)
    assert fast.warm_up_requests == 1


def test_paths_round_robin_and_every_request_carries_the_token() -> None:
    service = Recorder()
    (observation,) = run(service, endpoint("svc"), paths=("/a", "/b", "/c"), requests=6)
    # The first request is the untimed warm-up (it opens the connection)
    assert [path for _, path in service.seen[1:]] == ["/a", "/b", "/c", "/a", "/b", "/c"]
    assert service.authorized
    assert set(observation.by_path()) == {"/a", "/b", "/c"}


def test_a_baseline_is_probed_in_the_same_window_requests_alternating() -> None:
    service = Recorder()
    target, baseline = run(service, endpoint("new"), endpoint("old"), paths=("/a", "/b"), requests=4)
    timed = service.seen[2:]  # after one warm-up each
    assert timed == [("new", "/a"), ("old", "/a"), ("new", "/b"), ("old", "/b"), ("new", "/a"), ("old", "/a"), ("new", "/b"), ("old", "/b")]
    assert len(target.samples) == len(baseline.samples) == 4
    assert target.deployment == "target new" and baseline.deployment == "target old"


def test_a_timeout_is_an_error_and_an_infinitely_slow_sample() -> None:
    service = Recorder(delay_s=2.0)
    (observation,) = run(service, endpoint("svc", timeout_s=0.1), requests=3)
    assert observation.transport_errors == 3
    assert all(math.isinf(s.latency_ms or 0.0) for s in observation.samples)
    assert observation.unmeasurable() is not None  # nothing answered at all


def test_a_refused_connection_is_an_error_but_not_a_latency_sample() -> None:
    calls = 0

    async def flaky(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls % 2 == 0:
            raise httpx.ConnectError("connection refused", request=request)
        return respond(200)

    (observation,) = run(flaky, endpoint("svc"), requests=10)
    assert observation.transport_errors == 5
    assert observation.error_rate == pytest.approx(0.5)
    assert len(observation.latencies()) == 5
    assert all("cannot connect" in (s.failure or "") for s in observation.samples if s.status is None)


def test_a_429_with_retry_after_is_waited_out_and_one_without_stands_unjudged() -> None:
    throttled_once = False

    async def throttling(request: httpx.Request) -> httpx.Response:
        nonlocal throttled_once
        if request.url.path == "/never":
            return respond(429)  # no Retry-After: the client does not guess
        if not throttled_once:
            throttled_once = True
            return respond(429, {"Retry-After": "1"})
        return respond(200)

    # The warm-up goes to the first path (/never), so the first timed /wait request meets the one 429
    (observation,) = run(throttling, endpoint("svc"), paths=("/never", "/wait"), requests=8)
    waited = [s for s in observation.samples if s.throttle_waits]
    assert [(s.path, s.status, s.throttle_waits) for s in waited] == [("/wait", 200, 1)]
    # The 1 s Retry-After sleep is the probe's choice, not the service's latency: it is taken out
    assert (waited[0].latency_ms or 0.0) < 1000
    assert observation.throttled == 4  # every /never request: reported, not judged
    assert observation.judged == 4
    assert observation.error_rate == 0.0


def test_in_flight_requests_are_capped_and_the_wait_for_a_slot_counts_as_latency() -> None:
    # Given a 0.2 s service, at most 2 requests outstanding, 6 due at once
    service = Recorder(delay_s=0.2)
    (observation,) = run(service, endpoint("svc"), requests=6, window_s=0.01, max_in_flight=2)
    assert service.max_in_flight <= 2
    # Then the later requests waited for a slot, and that wait is in their latency (coordinated omission)
    latencies = sorted(s.latency_ms or 0.0 for s in observation.samples)
    assert latencies[-1] >= 2 * latencies[0]


def test_a_bug_below_the_probe_is_raised_not_counted_as_an_unanswered_request() -> None:
    async def broken(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("bug in a transport")

    # Only ProbeError means "the service did not answer"; the check turns this into an error outcome
    with pytest.raises(RuntimeError, match="bug in a transport"):
        run(broken, endpoint("svc"), requests=3)
