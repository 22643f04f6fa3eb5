"""ApiClient: bounded, one deadline per exchange, a token per request, 429 waited out within bounds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest

from loopback import Route, refused_port, serve
from releasegate._exceptions import ProbeError, ProbeTimeout
from releasegate.probes.api import ApiAnswer, ApiClient, mask_secrets_in_json_text, token_allowed
from releasegate.probes.http import HttpSettings

SETTINGS = HttpSettings(timeout_s=2.0, max_body_bytes=1024)


def answer_with(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> httpx.Response:
    # A streamed body, as from the network: the client reads it raw, with its cap.
    return httpx.Response(status, headers=headers, stream=httpx.ByteStream(body))


def call(
    handler: Callable[[httpx.Request], httpx.Response],
    method: str = "GET",
    path: str = "/api/x",
    *,
    settings: HttpSettings = SETTINGS,
    **kwargs: object,
) -> tuple[ApiAnswer, list[float]]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def go() -> ApiAnswer:
        transport = httpx.MockTransport(handler)
        async with ApiClient("https://svc.test", settings, sleep=sleep, transport=transport, max_throttle_wait_s=5) as api:
            return await api.request(method, path, **kwargs)  # type: ignore[arg-type]

    return asyncio.run(go()), slept


def test_a_request_carries_the_identitys_token_and_a_json_body() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer_with(201, b'{"id": "c1"}', {"Content-Type": "application/json"})

    answer, _ = call(handler, "POST", "/api/v1/conversations", token="tok-primary-123456", json={"title": "t"})

    assert answer.status == 201 and answer.json() == {"id": "c1"}
    assert seen[0].headers["authorization"] == "Bearer tok-primary-123456"
    assert seen[0].headers["content-type"] == "application/json"
    assert seen[0].content == b'{"title": "t"}'
    # The evidence shows the request, never its credentials.
    evidence = answer.evidence()
    assert evidence["request"] == "POST https://svc.test/api/v1/conversations"
    assert "tok-primary" not in str(evidence)


def test_anonymous_requests_carry_no_authorization() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer_with(401)

    answer, _ = call(handler, token=None)

    assert answer.status == 401 and "authorization" not in seen[0].headers


def test_a_429_is_waited_out_and_counted() -> None:
    statuses = iter([429, 429, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        return answer_with(next(statuses), headers={"Retry-After": "1"})

    answer, slept = call(handler, token=None)

    assert answer.status == 200 and answer.throttled == 2
    assert slept == [1.0, 1.0]
    assert answer.evidence()["throttled"] == 2


def test_throttling_is_bounded_in_count_and_in_wait() -> None:
    always = lambda request: answer_with(429, headers={"Retry-After": "0"})  # noqa: E731
    answer, slept = call(always, token=None)
    assert answer.status == 429 and answer.throttled == 3 and len(slept) == 3

    too_long = lambda request: answer_with(429, headers={"Retry-After": "120"})  # noqa: E731
    answer, slept = call(too_long, token=None)
    assert answer.status == 429 and answer.throttled == 0 and slept == []

    no_header = lambda request: answer_with(429)  # noqa: E731
    answer, slept = call(no_header, token=None)
    assert answer.status == 429 and slept == []


def test_a_body_over_the_cap_is_cut_and_is_not_json() -> None:
    answer, _ = call(lambda request: answer_with(200, b'{"a": "' + b"x" * 5000 + b'"}'), token=None)

    assert answer.truncated and len(answer.body) == SETTINGS.max_body_bytes
    with pytest.raises(ValueError, match="cut"):
        answer.json()


def test_relative_paths_join_the_base_url_and_absolute_urls_stay() -> None:
    client = ApiClient("https://svc.test/", SETTINGS)

    assert client.url("/api/x") == "https://svc.test/api/x"
    assert client.url("api/x") == "https://svc.test/api/x"
    assert client.url("https://replica.test/api/x") == "https://replica.test/api/x"


def test_a_slow_answer_is_a_timeout_not_a_hang() -> None:
    async def go() -> None:
        with serve({"/slow": Route(200, "late", delay_s=3)}) as server:
            async with ApiClient(server.url(""), HttpSettings(timeout_s=0.3, max_body_bytes=1024)) as api:
                await api.request("GET", "/slow", token=None)

    with pytest.raises(ProbeTimeout, match="0.3 s"):
        asyncio.run(go())


def test_a_refused_connection_is_a_probe_error() -> None:
    async def go() -> None:
        async with ApiClient(f"http://127.0.0.1:{refused_port()}", SETTINGS) as api:
            await api.request("GET", "/", token=None)

    with pytest.raises(ProbeError, match="cannot connect"):
        asyncio.run(go())


def test_json_nested_past_the_recursion_limit_is_a_value_error() -> None:
    # json.loads raises RecursionError here; callers catch ValueError for "not JSON"
    answer, _ = call(lambda request: answer_with(200, b"[" * 100_000 + b"]" * 100_000), token=None, settings=HttpSettings(2.0, 1 << 20))
    with pytest.raises(ValueError, match="nested too deeply"):
        answer.json()


def test_evidence_masks_credentials_in_bodies_and_headers() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = b'{"access_token": "eyJ-issued-token", "token_type": "Bearer", "expires_in": 900}'
        return answer_with(200, body, {"X-Session-Id": "s-123456", "Content-Type": "application/json"})

    answer, _ = call(handler, "POST", "/login", token=None, json={"username": "alice", "password": "hunter2-secret"})

    evidence = answer.evidence()
    assert evidence["body_excerpt"] == '{"access_token": "[redacted]", "token_type": "[redacted]", "expires_in": 900}'
    assert evidence["request_body_excerpt"] == '{"username": "alice", "password": "[redacted]"}'
    assert evidence["headers"]["x-session-id"] == "[redacted]"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ('{"password":"p","user":"u"}', '{"password":"[redacted]","user":"u"}'),
        ('{"apiKey": 12345, "n": 1}', '{"apiKey": "[redacted]", "n": 1}'),
        ('{"a": {"refresh_token": "r\\"x"}, "b": ["token"]}', '{"a": {"refresh_token": "[redacted]"}, "b": ["token"]}'),
        ('{"session": {"id": 1}}', '{"session": {"id": 1}}'),  # objects keep their own keys checked
        ('{"title": "my token: abc"}', '{"title": "my token: abc"}'),  # a value, not a key
        ('{"access_token": "cut-at-the-end-of-the-excer', '{"access_token": "[redacted]"'),
    ],
)
def test_json_values_at_credential_keys_are_masked(text: str, masked: str) -> None:
    assert mask_secrets_in_json_text(text) == masked


@pytest.mark.parametrize("hostile", ['"token' * 200_000, '"a\\' * 300_000 + "token", '"token":' * 150_000, "\\" * 1_000_000])
def test_masking_is_linear_on_hostile_text(hostile: str) -> None:
    # A generous bound against quadratic backtracking, not a speed test.
    started = time.perf_counter()
    mask_secrets_in_json_text(hostile)
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize(
    ("url", "explicit", "problem"),
    [
        ("https://svc.test/api/x", False, None),
        ("wss://svc.test/ws", False, None),  # the base_url's origin over WebSocket
        ("wss://sync.svc.test:8443/ws", False, None),  # the ws_url's origin
        ("https://sync.svc.test:8443/api", False, None),  # ... over HTTP
        ("http://127.0.0.1:8080/x", False, "would send the token to 127.0.0.1, which is neither"),
        ("http://127.0.0.1:8080/x", True, None),  # loopback: clear text does not cross a network
        ("https://replica.test/x", False, "would send the token to replica.test, which is neither"),
        ("https://replica.test/x", True, None),
        ("http://replica.test/x", True, "would send the token in clear to replica.test (http://)"),
        ("ws://svc.test/ws", False, "would send the token in clear to svc.test (ws://)"),
        ("https://svc.test:444/x", False, "would send the token to svc.test, which is neither"),  # another port, another origin
    ],
)
def test_a_token_goes_only_to_the_targets_origins_unless_chosen_and_never_in_clear(url: str, explicit: bool, problem: str | None) -> None:
    found = token_allowed(url, "https://svc.test", "wss://sync.svc.test:8443/ws", explicit=explicit)
    assert found == problem if problem is None else (found is not None and found.startswith(problem))
