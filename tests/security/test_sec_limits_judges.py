"""Limits family without a server: judges on hand-made observations, bursts over httpx.MockTransport, the ledger on a fake clock."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from releasegate.probes import limits
from releasegate.probes import ratelimit_headers as rl
from releasegate.probes.http import HttpSettings
from releasegate.probes.limits import Answer, Burst, LimitObservation, SizeAttempt, Wait

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
URL = "https://svc.test/api/v1/me"
NO_WAIT = Wait(0.0, 0.0)
REFUSED = {"retry-after": "1", "ratelimit": '"ip";r=0;t=3', "ratelimit-policy": '"ip";q=30;w=3'}
# The same refusal without policy names: only the timing (the control) can decide.
UNNAMED = {"retry-after": "1", "ratelimit-limit": "30", "ratelimit-remaining": "0", "ratelimit-reset": "3"}
# The reference's refusals and answers, by policy.
USER_REFUSED = {
    "retry-after": "1",
    "ratelimit": '"user";r=0;t=4, "ip";r=9;t=3',
    "ratelimit-policy": '"user";q=20;w=4, "ip";q=30;w=3',
}
LOGIN_REFUSED = {"retry-after": "2", "ratelimit": '"login";r=0;t=20, "ip";r=19;t=2', "ratelimit-policy": '"login";q=10;w=20, "ip";q=30;w=3'}


def answer(status: int | None, headers: dict[str, str] | None = None, *, at: float = 0.0, error: str | None = None) -> Answer:
    return Answer(status, at, 1.0, rl.parse(headers or {}, NOW), error)


def burst_of(*answers: Answer, stopped: limits.BurstStop = "429", cap: int = 40, elapsed_s: float = 0.1) -> Burst:
    return Burst({"method": "GET", "url": URL, "identity": "anonymous"}, cap, answers, stopped, elapsed_s)


def observed(burst: Burst, *follow_up: Answer, wait: Wait = NO_WAIT, control: Sequence[Answer] = ()) -> LimitObservation:
    request = {"method": "GET", "url": URL, "identity": "second"} if follow_up else None
    return LimitObservation(wait, burst, follow_up, request, tuple(control))


def still_refused(headers: dict[str, str] | None = None) -> tuple[Answer, ...]:
    """Every control refused: the first limit held while the comparison went through."""
    return (answer(429, headers),) * limits.CONTROLS


def limited(n: int = 30, headers: dict[str, str] | None = None) -> Burst:
    """``n`` answers that got through, then a 429 carrying ``headers``."""
    return burst_of(*[answer(401, {"ratelimit": f'"ip";r={n - i - 1};t=1'}) for i in range(n)], answer(429, headers))


# --------------------------------------------------------------------------- request size


def attempt(kind: Any, status: int | None, error: str | None = None) -> SizeAttempt:
    return SizeAttempt(kind, status, 1_000_001, 3.0, error)


def test_request_size_passes_on_413_413_431() -> None:
    finding = limits.judge_request_size(
        [attempt("streamed body", 413), attempt("declared body", 413), attempt("header block", 431)],
        max_body_bytes=1_000_000,
        max_header_bytes=16384,
    )
    assert finding.outcome == "passed"
    assert finding.observed == finding.expected == {"streamed body": 413, "declared body": 413, "header block": 431}
    json.dumps(finding.evidence)


def test_request_size_without_a_header_limit_probes_bodies_only() -> None:
    finding = limits.judge_request_size(
        [attempt("streamed body", 413), attempt("declared body", 413)], max_body_bytes=10, max_header_bytes=None
    )
    assert finding.outcome == "passed" and "header limit not named" in finding.summary
    assert finding.evidence["header_block"].startswith("not probed")


def test_an_accepted_body_fails_and_every_problem_is_listed() -> None:
    finding = limits.judge_request_size(
        [attempt("streamed body", 422), attempt("declared body", 201), attempt("header block", 200)],
        max_body_bytes=10,
        max_header_bytes=100,
    )
    assert finding.outcome == "failed"
    assert "streamed body of 11 bytes: HTTP 422" in finding.summary and "declared body of 11 bytes: HTTP 201" in finding.summary
    assert "header block" in finding.summary


@pytest.mark.parametrize("status", [400, 413, 494])
def test_a_header_block_refused_with_a_nonstandard_status_only_warns(status: int) -> None:
    finding = limits.judge_request_size(
        [attempt("streamed body", 413), attempt("declared body", 413), attempt("header block", status)],
        max_body_bytes=10,
        max_header_bytes=100,
    )
    assert finding.outcome == "warned" and f"refused with {status}, not 431" in finding.summary


def test_chunked_uploads_refused_with_411_warn() -> None:
    finding = limits.judge_request_size(
        [attempt("streamed body", 411), attempt("declared body", 413)], max_body_bytes=10, max_header_bytes=None
    )
    assert finding.outcome == "warned" and "411" in finding.summary


def test_no_status_at_all_is_an_error_but_a_definite_failure_wins() -> None:
    reset = attempt("declared body", None, "connection ended without an HTTP status (ConnectionResetError)")
    finding = limits.judge_request_size([attempt("streamed body", 413), reset], max_body_bytes=10, max_header_bytes=None)
    assert finding.outcome == "error" and finding.observed == {"streamed body": 413, "declared body": "no answer"}
    finding = limits.judge_request_size([attempt("streamed body", 200), reset], max_body_bytes=10, max_header_bytes=None)
    assert finding.outcome == "failed"


# --------------------------------------------------------------------------- per IP


def test_ip_limit_with_retry_after_passes_and_records_the_parsed_fields() -> None:
    finding = limits.judge_ip_limit(observed(limited(30, REFUSED)))
    assert finding.outcome == "passed"
    assert finding.summary == "429 after 31 unauthenticated requests (Retry-After 1 s)"
    assert finding.observed["families"] == ["Retry-After", "RateLimit-Policy", "RateLimit"]
    first_429 = finding.evidence["burst"]["first_429"]
    assert first_429["after_requests"] == 31
    assert first_429["rate_limit"]["policies"] == [{"name": "ip", "quota": 30, "window_s": 3, "unit": None, "partitioned": False}]
    json.dumps(finding.evidence, allow_nan=False)


def test_ip_limit_without_or_with_unreadable_retry_after_warns() -> None:
    assert limits.judge_ip_limit(observed(limited(5, {}))).outcome == "warned"
    finding = limits.judge_ip_limit(observed(limited(5, {"retry-after": "later"})))
    assert finding.outcome == "warned" and "unreadable" in finding.summary


def test_no_429_within_the_cap_fails() -> None:
    finding = limits.judge_ip_limit(observed(burst_of(*[answer(401)] * 40, stopped="cap")))
    assert finding.outcome == "failed" and finding.summary == "no 429 within 40 requests (unauthenticated, one address)"
    assert finding.observed == {"requests": 40, "statuses": {"401": 40}}


def test_no_429_with_503s_points_at_nginx_limit_req() -> None:
    finding = limits.judge_ip_limit(observed(burst_of(*[answer(200)] * 10, *[answer(503)] * 30, stopped="cap")))
    assert finding.outcome == "failed" and "30 answers were 503" in finding.summary


def test_an_advertised_quota_used_up_but_not_enforced_fails() -> None:
    finding = limits.judge_ip_limit(observed(burst_of(*[answer(200, {"ratelimit-remaining": "0"})] * 40, stopped="cap")))
    assert finding.outcome == "failed" and "advertised as used up" in finding.summary


def test_a_quota_the_polite_burst_cannot_drain_is_no_verdict() -> None:
    # Given a slow target whose advertised quota refills faster than two requests in flight use it
    slow = [answer(401, {"ratelimit": '"ip";r=28;t=1'})] * 40
    finding = limits.judge_ip_limit(observed(burst_of(*slow, stopped="cap", elapsed_s=6.0)))
    assert finding.outcome == "error"
    assert "at 6.7/s never used up the advertised quota (at least 28 left)" in finding.summary


@pytest.mark.parametrize(("stopped", "words"), [("error", "a request failed"), ("deadline", "ran out of time")])
def test_a_burst_cut_off_before_any_429_is_no_verdict(stopped: limits.BurstStop, words: str) -> None:
    finding = limits.judge_ip_limit(observed(burst_of(answer(401), answer(None, error="ReadError"), stopped=stopped)))
    assert finding.outcome == "error" and words in finding.summary


# --------------------------------------------------------------------------- per user


def test_user_limit_passes_when_the_second_identity_gets_through_and_the_first_is_still_refused() -> None:
    finding = limits.judge_user_limit(observed(limited(20, UNNAMED), answer(200), answer(200), control=still_refused(UNNAMED)))
    assert finding.outcome == "passed", finding.summary
    assert finding.observed["first_identity_429_after"] == 21 and finding.observed["second_identity"] == [200, 200]
    assert (
        finding.observed["control"] == [429] * limits.CONTROLS and f"still refused {limits.CONTROLS} times right after" in finding.summary
    )
    assert [a["status"] for a in finding.evidence["control"]["answers"]] == [429] * limits.CONTROLS


@pytest.mark.parametrize("controls", [(200,), (429, 200), (429, 429, 401)])
def test_a_control_that_got_through_makes_the_comparison_inconclusive(controls: tuple[int, ...]) -> None:
    # Given a per-IP bucket that refilled while the second identity asked (the review's repro)
    control = [answer(status, UNNAMED if status == 429 else None) for status in controls]
    finding = limits.judge_user_limit(observed(limited(5, UNNAMED), answer(200), answer(200), control=control))
    # Then the second identity's 200s prove nothing
    assert finding.outcome == "error"
    assert "inconclusive: the first limit lifted within the comparison" in finding.summary


def test_too_few_comparisons_or_controls_are_no_verdict() -> None:
    one = limits.judge_user_limit(observed(limited(20, UNNAMED), answer(200), control=still_refused(UNNAMED)))
    assert one.outcome == "error" and "only 1 of 2 comparison requests" in one.summary
    assert limits.judge_user_limit(observed(limited(20, UNNAMED), answer(200), answer(200))).outcome == "error"
    failed = limits.judge_user_limit(
        observed(limited(20, UNNAMED), answer(200), answer(200), control=[answer(429, UNNAMED), answer(None, error="ReadError: x")])
    )
    assert failed.outcome == "error" and "ReadError" in failed.summary


def test_user_limit_fails_when_the_second_identity_is_refused_too() -> None:
    finding = limits.judge_user_limit(observed(limited(30, UNNAMED), answer(429, UNNAMED)))
    assert finding.outcome == "failed" and "per IP, not per user" in finding.summary


def test_a_second_identity_refused_by_the_same_named_policy_fails_even_after_a_cut_short_wait() -> None:
    finding = limits.judge_user_limit(observed(limited(30, REFUSED), answer(429, REFUSED), wait=Wait(60.0, 5.0)))
    assert finding.outcome == "failed" and "per IP, not per user" in finding.summary
    assert finding.evidence["policies"]["comparison"][0]["sharing"] == "shared"
    assert finding.evidence["follow_up"]["answers"][0]["refused_by"] == ["ip"]


def test_a_second_identity_let_through_by_a_refilled_shared_quota_fails_whatever_the_control() -> None:
    # Given the burst refused by "ip" (quota 5) and the second identity's requests leaving "ip" low
    refusal = {"retry-after": "1", "ratelimit": '"ip";r=0;t=1', "ratelimit-policy": '"ip";q=5;w=1'}
    for first, then in ((1, 4), (4, 2), (0, 0)):
        seconds = [answer(200, {"ratelimit": f'"ip";r={r};t=1', "ratelimit-policy": '"ip";q=5;w=1'}) for r in (first, then)]
        for control in ((answer(200, refusal),), still_refused(refusal)):
            finding = limits.judge_user_limit(observed(limited(5, refusal), *seconds, control=control))
            # Then the quota that stopped the first identity also counted the second: per IP
            assert finding.outcome == "failed", finding.summary
            assert "others had drained it" in finding.summary


def test_a_shared_quota_that_looks_whole_again_is_left_to_the_control() -> None:
    refusal = {"retry-after": "1", "ratelimit": '"ip";r=0;t=1', "ratelimit-policy": '"ip";q=5;w=1'}
    whole = [answer(200, {"ratelimit": f'"ip";r={r};t=1', "ratelimit-policy": '"ip";q=5;w=1'}) for r in (4, 3)]
    finding = limits.judge_user_limit(observed(limited(5, refusal), *whole, control=[answer(200, {"ratelimit": '"ip";r=3;t=1'})]))
    assert finding.outcome == "error" and "inconclusive" in finding.summary
    assert finding.evidence["policies"]["comparison"][0]["sharing"] == "unknown"


def test_the_reference_user_limit_passes_on_its_own_quota_with_a_refused_control() -> None:
    second = [
        answer(200, {"ratelimit": f'"user";r={r};t=1, "ip";r=8;t=1', "ratelimit-policy": '"user";q=20;w=4, "ip";q=30;w=3'})
        for r in (19, 18)
    ]
    finding = limits.judge_user_limit(observed(limited(20, USER_REFUSED), *second, control=still_refused(USER_REFUSED)))
    assert finding.outcome == "passed", finding.summary
    assert finding.observed["refused_by"] == ["user"]


def test_a_refilled_own_quota_still_shows_two_quotas_through_the_control() -> None:
    # Given a loaded machine: the first identity's quota refilled a token before the control, which got through
    policy = '"user";q=20;w=1, "ip";q=30;w=1'
    second = [answer(200, {"ratelimit": f'"user";r={r};t=1, "ip";r=8;t=1', "ratelimit-policy": policy}) for r in (19, 18)]
    control = answer(200, {"ratelimit": '"user";r=0;t=1, "ip";r=7;t=1', "ratelimit-policy": policy})
    finding = limits.judge_user_limit(observed(limited(20, USER_REFUSED), *second, control=[control]))
    # Then "user" at 18 for the second identity and at 0 for the first, a moment apart, are two quotas
    assert finding.outcome == "passed", finding.summary
    assert "the control right after found it at 0: two quotas" in json.dumps(finding.evidence["policies"])


def test_a_second_identity_refused_by_another_policy_than_all_that_refused_the_first_is_no_verdict() -> None:
    both = {"retry-after": "1", "ratelimit": '"ip";r=0;t=3, "user";r=0;t=4', "ratelimit-policy": '"ip";q=30;w=3, "user";q=20;w=4'}
    ip_only = {"retry-after": "1", "ratelimit": '"ip";r=0;t=3', "ratelimit-policy": '"ip";q=30;w=3'}
    finding = limits.judge_user_limit(observed(limited(20, both), answer(429, ip_only)))
    assert finding.outcome == "error" and "no verdict on the latter" in finding.summary


def test_a_refused_second_identity_after_a_cut_short_wait_is_no_verdict() -> None:
    finding = limits.judge_user_limit(observed(limited(30, UNNAMED), answer(429, UNNAMED), wait=Wait(60.0, 5.0)))
    assert finding.outcome == "error" and "may be their residue" in finding.summary


@pytest.mark.parametrize(("status", "words"), [(401, "not a valid identity"), (503, "got 503 on every attempt")])
def test_a_second_identity_that_cannot_be_judged(status: int, words: str) -> None:
    finding = limits.judge_user_limit(observed(limited(20, REFUSED), answer(status), control=still_refused(REFUSED)))
    assert finding.outcome == "error" and words in finding.summary


def test_a_second_identity_whose_request_failed() -> None:
    finding = limits.judge_user_limit(observed(limited(20, REFUSED), answer(None, error="ConnectError: refused")))
    assert finding.outcome == "error" and "ConnectError" in finding.summary


def test_user_limit_without_any_429_fails() -> None:
    finding = limits.judge_user_limit(observed(burst_of(*[answer(200)] * 40, stopped="cap")))
    assert finding.outcome == "failed" and "(one identity)" in finding.summary


def test_user_limit_second_identity_5xx_retries_are_in_evidence() -> None:
    finding = limits.judge_user_limit(
        observed(limited(20, UNNAMED), answer(500), answer(500), answer(200), answer(200), control=still_refused(UNNAMED))
    )
    assert finding.outcome == "passed"
    assert [a["status"] for a in finding.evidence["follow_up"]["answers"]] == [500, 500, 200, 200]


# --------------------------------------------------------------------------- per endpoint


def test_endpoint_limit_passes_when_the_other_endpoint_answers() -> None:
    finding = limits.judge_endpoint_limit(observed(limited(10, UNNAMED), answer(200), answer(200), control=still_refused(UNNAMED)))
    assert finding.outcome == "passed" and finding.observed == {
        "endpoint_429_after": 11,
        "other_endpoint": [200, 200],
        "control": [429] * limits.CONTROLS,
        "refused_by": [],
        "retry_after": "1",
        "families": ["Retry-After", "RateLimit-*"],
    }


def test_a_login_policy_absent_from_the_other_endpoint_passes_whatever_the_control() -> None:
    # Given the reference: log-in refused by "login", and /me answering with "ip" and "user" only
    other = {"ratelimit": '"user";r=19;t=1, "ip";r=18;t=1', "ratelimit-policy": '"user";q=20;w=4, "ip";q=30;w=3'}
    finding = limits.judge_endpoint_limit(
        observed(limited(10, LOGIN_REFUSED), answer(200, other), answer(200, other), control=[answer(401)])
    )
    # Then "login" does not apply there: a separate limit, shown by the names alone
    assert finding.outcome == "passed", finding.summary
    assert "by policy 'login', which does not apply to the other endpoint" in finding.summary
    assert finding.evidence["policies"]["comparison"] == [
        {
            "policy": "login",
            "sharing": "separate",
            "why": "the comparison's answer advertises 'user', 'ip' but not 'login': it does not apply there",
        }
    ]


def test_endpoint_limit_fails_when_the_other_endpoint_is_refused_too() -> None:
    finding = limits.judge_endpoint_limit(observed(limited(30, REFUSED), answer(429, REFUSED)))
    assert finding.outcome == "failed" and "no endpoint-specific limit" in finding.summary
    cut = limits.judge_endpoint_limit(observed(limited(30, UNNAMED), answer(429, UNNAMED), wait=Wait(20.0, 5.0)))
    assert cut.outcome == "error"


def test_the_review_repro_shared_ip_bucket_that_refilled_never_passes() -> None:
    # Given log-in and /me limited only by one fast per-IP bucket (quota 5): the log-in burst is refused by
    # "ip", /me gets through on refilled tokens, and so does a control
    refusal = {"retry-after": "1", "ratelimit": '"ip";r=0;t=1', "ratelimit-policy": '"ip";q=5;w=1'}
    for lefts, outcome in (((0, 0), "failed"), ((3, 2), "failed"), ((4, 3), "error"), ((4, 4), "error")):
        seconds = [answer(200, {"ratelimit": f'"ip";r={r};t=1', "ratelimit-policy": '"ip";q=5;w=1'}) for r in lefts]
        control = [answer(401, {"ratelimit": f'"ip";r={lefts[1]};t=1'})]
        finding = limits.judge_endpoint_limit(observed(limited(5, refusal), *seconds, control=control))
        assert finding.outcome == outcome, (lefts, finding.summary)


def test_endpoint_without_a_limit_and_other_endpoint_errors() -> None:
    assert limits.judge_endpoint_limit(observed(burst_of(*[answer(401)] * 40, stopped="cap"))).outcome == "failed"
    assert limits.judge_endpoint_limit(observed(limited(10, REFUSED), answer(502))).outcome == "error"
    assert limits.judge_endpoint_limit(observed(limited(10, REFUSED), answer(None, error="x"))).outcome == "error"
    assert limits.judge_endpoint_limit(observed(limited(10, {}), answer(200), answer(200), control=still_refused())).outcome == "warned"


# --------------------------------------------------------------------------- ledger


@dataclass
class FakeTime:
    now: float = 100.0
    slept: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_ledger_waits_for_the_latest_word_on_every_quota() -> None:
    time = FakeTime()
    ledger = limits.Ledger(time.clock, time.sleep)
    ledger.note("anonymous", answer(429, REFUSED, at=100.0))  # ip full at 103, Retry-After at 101
    ledger.note("token", answer(429, {"ratelimit": '"user";r=0;t=4, "ip";r=9;t=3'}, at=100.5))  # user full at 104.5
    ledger.note("token", answer(200, {"ratelimit": '"user";r=19;t=1'}, at=100.6))  # a fresher word on the same quota
    time.now = 101.0
    wait = ledger.wait()
    assert time.slept == [pytest.approx(2.5)]  # the IP quota (103.5 via the token's view) is the last one back
    assert not wait.cut_short


def test_ledger_wait_is_bounded_and_says_so() -> None:
    time = FakeTime()
    ledger = limits.Ledger(time.clock, time.sleep, max_wait_s=5.0)
    ledger.note("anonymous", answer(429, {"retry-after": "3600"}, at=100.0))
    wait = ledger.wait()
    assert time.slept == [5.0] and wait.cut_short and wait.to_json() == {"wanted_s": 3600.0, "slept_s": 5.0, "cut_short": True}


def test_ledger_after_a_bare_429_waits_the_fallback_and_otherwise_not_at_all() -> None:
    time = FakeTime()
    ledger = limits.Ledger(time.clock, time.sleep)
    assert ledger.wait() == Wait(0.0, 0.0) and time.slept == []
    ledger.note("anonymous", answer(429, at=100.0))
    ledger.wait()
    assert time.slept == [limits.FALLBACK_WAIT_S]


# --------------------------------------------------------------------------- bursts over a mock transport


class Server:
    """A fake service: ``respond(n)`` answers the n-th request (1-based); counts concurrency."""

    def __init__(self, respond: Callable[[int], httpx.Response]) -> None:
        self.respond = respond
        self.requests: list[httpx.Request] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        number = len(self.requests)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.001)
            return self.respond(number)
        finally:
            self.in_flight -= 1


def resp(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    """An answer that is streamed like a real one (httpx reads bytes content eagerly, and the probe reads raw)."""
    return httpx.Response(status, headers=headers, stream=httpx.ByteStream(b'{"detail": "fake"}'))


SETTINGS = HttpSettings(timeout_s=2.0, max_body_bytes=1 << 20, headers={"Authorization": "Bearer must-not-leak-0123456789"})


def run_burst(server: Server, spec: limits.RequestSpec, cap: int = 40, clock: Callable[[], float] | None = None) -> Burst:
    async def go() -> Burst:
        async with limits.client(SETTINGS, httpx.MockTransport(server.handler)) as http:
            if clock is None:
                return await limits.burst(http, spec, cap=cap, timeout_s=2.0, deadline_s=10.0)
            return await limits.burst(http, spec, cap=cap, timeout_s=2.0, deadline_s=10.0, clock=clock)

    return limits.run(go())


def test_burst_stops_at_the_first_429_with_at_most_two_in_flight() -> None:
    server = Server(lambda n: resp(429 if n >= 11 else 401, headers=REFUSED if n >= 11 else {}))
    result = run_burst(server, limits.RequestSpec("GET", URL, "anonymous"))
    assert result.stopped == "429" and result.requests_to_429 is not None and result.requests_to_429 <= 12
    assert len(server.requests) <= 12  # the 429 and at most one request already in flight
    assert server.max_in_flight == limits.CONCURRENCY
    # the anonymous burst sends no credentials, whatever the settings hold
    assert all("authorization" not in r.headers for r in server.requests)


def test_burst_keeps_going_through_5xx_and_never_passes_the_cap() -> None:
    server = Server(lambda n: resp(500 if n % 3 == 0 else 200))
    result = run_burst(server, limits.RequestSpec("GET", URL, "token", {"Authorization": "Bearer x"}), cap=25)
    assert result.stopped == "cap" and len(server.requests) == 25 == len(result.answers)
    assert result.evidence()["statuses"] == {"200": 17, "500": 8}
    assert all(r.headers["authorization"] == "Bearer x" for r in server.requests)
    assert "Bearer" not in json.dumps(result.evidence())


def test_burst_stops_on_a_failed_exchange() -> None:
    def respond(n: int) -> httpx.Response:
        if n == 3:
            raise httpx.ConnectError("refused")
        return resp(401)

    result = run_burst(Server(respond), limits.RequestSpec("GET", URL, "anonymous"))
    assert result.stopped == "error" and len(result.answers) <= 4
    assert result.evidence()["errors"] == ["ConnectError: refused"]


def test_burst_stops_at_its_deadline() -> None:
    ticks = iter(float(i) for i in range(10_000))
    result = run_burst(Server(lambda n: resp(401)), limits.RequestSpec("GET", URL, "anonymous"), clock=lambda: next(ticks))
    assert result.stopped == "deadline" and len(result.answers) < 40


def test_login_burst_posts_the_bogus_credentials_as_json() -> None:
    server = Server(lambda n: resp(429 if n > 2 else 401))
    run_burst(server, limits.RequestSpec("POST", URL, "anonymous", json_body=limits.BOGUS_LOGIN))
    assert json.loads(server.requests[0].content) == limits.BOGUS_LOGIN and server.requests[0].method == "POST"


def test_observe_limit_sends_the_comparison_and_the_controls_after_a_429_and_feeds_the_ledger() -> None:
    time = FakeTime()
    ledger = limits.Ledger(time.clock, time.sleep)
    second: list[int] = []

    def respond(request: httpx.Request) -> httpx.Response:
        if request.headers["authorization"] == "Bearer b":  # the comparison: one 5xx, then through
            second.append(1)
            return resp(503 if len(second) == 1 else 200)
        return resp(429, headers={"ratelimit": '"user";r=0;t=4', "retry-after": "1"})  # the first identity: always refused

    server = Server(lambda n: resp(200))
    server.respond = lambda n: respond(server.requests[n - 1])
    spec = limits.RequestSpec("GET", URL, "token", {"Authorization": "Bearer a"})
    other = limits.RequestSpec("GET", URL, "second", {"Authorization": "Bearer b"})
    observation = limits.observe_limit(SETTINGS, ledger, spec, other, cap=40, transport=httpx.MockTransport(server.handler))
    assert [a.status for a in observation.follow_up] == [503, 200, 200]
    # the comparison (repeated through its 5xx), then the first identity again as the controls, back to back
    sent = [r.headers["authorization"][-1] for r in server.requests]
    assert sent[-3 - limits.CONTROLS :] == ["b", "b", "b"] + ["a"] * limits.CONTROLS
    assert [a.status for a in observation.control] == [429] * limits.CONTROLS
    assert limits.judge_user_limit(observation).outcome == "passed"
    assert ledger.wanted_s() == pytest.approx(4.0)  # the next probe waits for the user quota


def test_observe_limit_stops_the_comparison_at_a_429_and_the_controls_at_a_success() -> None:
    time = FakeTime()
    identities: list[str] = []

    def respond(n: int) -> httpx.Response:
        who = server.requests[n - 1].headers["authorization"][-1]
        identities.append(who)
        if len(identities) <= 2:
            return resp(429)  # the burst: refused at once (two in flight)
        return resp(200)  # a refill: the comparison and the first control get through

    server = Server(respond)
    spec = limits.RequestSpec("GET", URL, "token", {"Authorization": "Bearer a"})
    other = limits.RequestSpec("GET", URL, "second", {"Authorization": "Bearer b"})
    observation = limits.observe_limit(
        SETTINGS, limits.Ledger(time.clock, time.sleep), spec, other, cap=40, transport=httpx.MockTransport(server.handler)
    )
    assert identities[2:] == ["b", "b", "a"]  # one control only: it already got through
    assert limits.judge_user_limit(observation).outcome == "error"


def test_observe_limit_sends_no_follow_up_without_a_429() -> None:
    time = FakeTime()
    server = Server(lambda n: resp(200))
    other = limits.RequestSpec("GET", URL, "second")
    observation = limits.observe_limit(
        SETTINGS,
        limits.Ledger(time.clock, time.sleep),
        limits.RequestSpec("GET", URL, "token"),
        other,
        cap=5,
        transport=httpx.MockTransport(server.handler),
    )
    assert observation.follow_up == () and len(server.requests) == 5
    assert "follow_up" not in observation.evidence()
