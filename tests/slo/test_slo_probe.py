"""The probing loop against fake services (httpx.MockTransport): pacing, order, failures, bounds.

Short windows (a few hundred milliseconds) and slow fakes show the behaviour that matters for
honest numbers: requests leave on schedule whether or not earlier ones answered (open loop),
alternate between paths and between a target and its baseline, and every kind of failure ends
up as a sample of the right kind. No assertion is about how fast anything is.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Coroutine

import httpx
import pytest

from releasegate.probes.http import HttpSettings
from releasegate.probes.slo import Endpoint, SloObservation, probe_async

Handler = Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]
TOKEN = "t0ken-for-the-fake-service-0123456789"


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
    """A fake service that answers after ``delay_s`` and remembers what it saw."""

    def __init__(self, delay_s: float = 0.0, status: int = 200) -> None:
        self.delay_s, self.status = delay_s, status
        self.seen: list[tuple[str, str]] = []
        self.in_flight = self.max_in_flight = 0
        self.authorized = True

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.url.host, request.url.path))
        self.authorized &= request.headers.get("authorization") == f"Bearer {TOKEN}"
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight -= 1
        return respond(self.status)


def test_requests_leave_on_schedule_whether_or_not_earlier_ones_answered() -> None:
    # Given a service that takes 0.3 s per answer and 10 requests due over 0.2 s
    service = Recorder(delay_s=0.3)
    (observation,) = run(service, endpoint("svc"), requests=10, window_s=0.2)
    # Then they overlapped instead of queueing behind each other (a closed loop would hide a stall)
    assert service.max_in_flight >= 5
    assert len(observation.samples) == 10
    assert all(s.latency_ms is not None and s.latency_ms >= 300 for s in observation.samples)
    # The schedule is even: request i is due at i * window / requests
    assert [round(s.at_ms) for s in observation.samples] == [i * 20 for i in range(10)]


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
            return respond(429, {"Retry-After": "0"})
        return respond(200)

    # The warm-up goes to the first path (/never), so the first timed /wait request meets the one 429
    (observation,) = run(throttling, endpoint("svc"), paths=("/never", "/wait"), requests=8)
    waited = [s for s in observation.samples if s.throttle_waits]
    assert [(s.path, s.status, s.throttle_waits) for s in waited] == [("/wait", 200, 1)]
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
