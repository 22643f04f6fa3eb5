"""Rate limits (token buckets on an injected clock), body limit (413) and header limit (431)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ref_support import FakeClock, login, make_settings, running

from releasegate.reference.ratelimit import KeyedLimiter, TokenBucket, header_fields
from releasegate.reference.settings import RateLimit

LOGIN = {"username": "alice", "password": "alice-demo-password"}


def test_bucket_spends_burst_then_refills_at_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(RateLimit(rate=2.0, burst=3), clock)
    # Given a full bucket of three, three requests pass and the fourth is refused
    assert [bucket.take("p").allowed for _ in range(4)] == [True, True, True, False]
    refused = bucket.take("p")
    assert refused.retry_after_s == 1 and refused.remaining == 0 and refused.window_s == 2
    # When half a second passes (rate 2/s), exactly one more request fits
    clock.advance(0.5)
    assert bucket.take("p").allowed and not bucket.take("p").allowed


def test_bucket_ignores_a_clock_stepping_back() -> None:
    clock = FakeClock()
    bucket = TokenBucket(RateLimit(rate=1.0, burst=1), clock)
    assert bucket.take("p").allowed
    clock.advance(-100)
    assert not bucket.take("p").allowed


def test_keyed_limiter_keeps_keys_apart_and_bounded() -> None:
    limiter = KeyedLimiter("ip", RateLimit(rate=1.0, burst=1), FakeClock(), max_keys=2)
    assert limiter.take("a").allowed and not limiter.take("a").allowed
    assert limiter.take("b").allowed
    limiter.take("c")  # evicts "a", the least recently used: it comes back with a full bucket
    assert limiter.take("a").allowed


def test_header_fields_use_structured_field_syntax() -> None:
    bucket = TokenBucket(RateLimit(rate=10.0, burst=30), FakeClock())
    fields = dict(header_fields([bucket.take("ip")]))
    assert fields["RateLimit-Policy"] == '"ip";q=30;w=3'
    assert fields["RateLimit"] == '"ip";r=29;t=1'
    assert "Retry-After" not in fields


def test_per_ip_limit_answers_429_with_retry_after_and_ratelimit_fields(tmp_path: Path) -> None:
    clock = FakeClock()
    with running(make_settings(tmp_path, rate_limit_ip=RateLimit(rate=1.0, burst=5)), mono=clock) as client:
        # Given an IP burst of five, with the clock standing still
        answers = [client.get("/api/v1/me") for _ in range(6)]
        # Then five requests are judged (401, no token) and the sixth is refused by the IP bucket
        assert [a.status_code for a in answers] == [401] * 5 + [429]
        refused = answers[-1]
        assert refused.headers["retry-after"] == "1"
        assert refused.headers["ratelimit-policy"] == '"ip";q=5;w=5'
        assert refused.headers["ratelimit"] == '"ip";r=0;t=5'
        # And health endpoints stay outside the limit
        assert client.get("/healthz").status_code == 200
        # When a second passes, one more request fits
        clock.advance(1.0)
        assert client.get("/api/v1/me").status_code == 401


def test_successful_api_answers_advertise_their_limits(tmp_path: Path) -> None:
    with running(make_settings(tmp_path), mono=FakeClock()) as client:
        response = client.get("/api/v1/me", headers=login(client))
    assert response.status_code == 200
    # The default buckets refill in one second (w=1): 20 per user, 30 per client address.
    assert '"user";q=20;w=1' in response.headers["ratelimit-policy"]
    assert '"ip";q=30;w=1' in response.headers["ratelimit-policy"]
    assert response.headers["ratelimit"].startswith('"user";r=19;')  # the most restrictive first


def test_per_user_limit_applies_across_ips(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rate_limit_user=RateLimit(rate=1.0, burst=3))
    with running(settings, mono=FakeClock()) as client:
        auth = login(client)
        statuses = [client.get("/api/v1/me", headers=auth).status_code for _ in range(4)]
        refused = client.get("/api/v1/me", headers=auth)
    assert statuses == [200, 200, 200, 429]
    assert refused.headers["ratelimit-policy"].startswith('"user";q=3')


def test_login_has_its_own_tighter_limit(tmp_path: Path) -> None:
    with running(make_settings(tmp_path, rate_limit_login=RateLimit(rate=0.5, burst=2)), mono=FakeClock()) as client:
        statuses = [client.post("/api/v1/auth/login", json=LOGIN).status_code for _ in range(3)]
        refused = client.post("/api/v1/auth/login", json=LOGIN)
    assert statuses == [200, 200, 429]
    assert refused.headers["retry-after"] == "2"
    assert refused.headers["ratelimit-policy"].startswith('"login";q=2;w=4')


def test_fault_no_rate_limit_removes_only_the_ip_limit(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "no-rate-limit", rate_limit_ip=RateLimit(1.0, 2), rate_limit_user=RateLimit(1.0, 3))
    with running(settings, mono=FakeClock()) as client:
        assert {client.get("/api/v1/me").status_code for _ in range(10)} == {401}
        auth = login(client)
        assert [client.get("/api/v1/me", headers=auth).status_code for _ in range(4)] == [200, 200, 200, 429]


def test_fault_no_user_rate_limit_removes_only_the_user_limit(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "no-user-rate-limit", rate_limit_ip=RateLimit(1.0, 6), rate_limit_user=RateLimit(1.0, 2))
    with running(settings, mono=FakeClock()) as client:
        auth = login(client)
        statuses = [client.get("/api/v1/me", headers=auth).status_code for _ in range(6)]
    # the user bucket (2) would have refused the third; the IP bucket (6, one spent on log-in) refuses the sixth
    assert statuses == [200] * 5 + [429]


def test_declared_oversized_body_is_413_before_anything_else(tmp_path: Path) -> None:
    with running(make_settings(tmp_path, max_body_bytes=100)) as client:
        # no token: the size is judged first, so an anonymous upload cannot make the server read it
        response = client.post("/api/v1/conversations", content=b"x" * 101)
        at_limit = client.post("/api/v1/conversations", content=b"x" * 100)
    assert response.status_code == 413
    assert at_limit.status_code == 401


def test_streamed_oversized_body_is_413(tmp_path: Path) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"x" * 60
        yield b"x" * 41

    with running(make_settings(tmp_path, max_body_bytes=100)) as client:
        response = client.post("/api/v1/conversations", content=chunks())
    assert "content-length" not in response.request.headers
    assert response.status_code == 413


def test_fault_no_body_limit_accepts_large_bodies(tmp_path: Path) -> None:
    with running(make_settings(tmp_path, "no-body-limit", max_body_bytes=100)) as client:
        auth = login(client)
        response = client.post("/api/v1/conversations", json={"title": "x" * 150}, headers=auth)
    assert response.status_code == 201


@pytest.mark.parametrize(("padding", "status"), [(700, 200), (1100, 431)])
def test_header_limit(tmp_path: Path, padding: int, status: int) -> None:
    with running(make_settings(tmp_path, max_header_bytes=1000)) as client:
        assert client.get("/healthz", headers={"X-Padding": "a" * padding}).status_code == status
