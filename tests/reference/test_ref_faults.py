"""Every service fault changes exactly its own observable behaviour and nothing else.

One fingerprint of the service (headers, auth, limits, health, sync, assistant, worker...) is taken
healthy and under each fault; the keys that differ must be exactly the fault's own. This is the
service-side half of the fault matrix: the gate's matrix then measures checks, not a leaky fixture.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from ref_support import FakeClock, login, make_settings, running
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from releasegate.reference.settings import RateLimit

# Small limits and delays so every probe is a handful of requests and a few hundred milliseconds.
OVERRIDES: dict[str, Any] = {
    "rate_limit_ip": RateLimit(rate=1.0, burst=8),
    "rate_limit_user": RateLimit(rate=1.0, burst=4),
    "rate_limit_login": RateLimit(rate=1.0, burst=50),
    "max_body_bytes": 100,
    "ws_max_message_bytes": 100,
    "slow_api_ms": 60,
    "slow_sync_ms": 150,
    "think_time_s": 0.0,
}
REFILL_S = 1000.0  # moving the fake clock this far fills every bucket again

# fault -> the fingerprint keys it must change
OWN: dict[str, set[str]] = {
    "no-hsts": {"hsts"},
    "short-hsts": {"hsts"},
    "no-security-headers": {"security_headers"},
    "auth-bypass": {"api_without_token"},
    "long-token-ttl": {"token_ttl"},
    "ws-no-auth": {"ws_without_token"},
    "ws-any-origin": {"ws_foreign_origin"},
    "ws-no-size-limit": {"ws_oversize"},
    "no-rate-limit": {"ip_limit"},
    "no-user-rate-limit": {"user_limit"},
    "no-body-limit": {"body_limit"},
    "liveness-fail": {"liveness"},
    "db-down": {"readiness", "deep_health", "conversation"},
    "cache-degraded": {"deep_health"},
    "wrong-release": {"deep_health", "version"},
    "worker-stuck": {"deep_health", "tool_run"},
    "slow-api": {"api_slow"},
    "error-burst": {"api_errors"},
    "slow-sync": {"sync_slow"},
    "sync-drop": {"sync_to_others"},
    "stale-read": {"read_your_write"},
    "bad-model": {"assistant"},
}
# Keys a fault may change besides its own because they ride on what it breaks
# (every API call may be one of error-burst's 500s; without a database there is no conversation to use).
COLLATERAL: dict[str, set[str]] = {
    "error-burst": {"conversation", "tool_run", "read_your_write", "assistant", "sync_to_others", "sync_slow", "user_limit"},
    "db-down": {"tool_run", "read_your_write", "assistant", "sync_to_others", "sync_slow"},
    "stale-read": {"assistant"},  # the probe reads the assistant's reply through the same stale reads
}


def _denied(client: TestClient, url: str, **kwargs: Any) -> int:
    try:
        with client.websocket_connect(url, **kwargs):
            return 101
    except WebSocketDenialResponse as denial:
        return denial.status_code


def fingerprint(client: TestClient, clock: FakeClock) -> dict[str, Any]:
    fp: dict[str, Any] = {}
    root = client.get("/").headers
    fp["hsts"] = root.get("strict-transport-security")
    fp["security_headers"] = tuple(root.get(h) for h in ("x-content-type-options", "x-frame-options", "referrer-policy", "cache-control"))
    fp["liveness"] = client.get("/healthz").status_code
    fp["readiness"] = client.get("/readyz").status_code
    deep = client.get("/health")
    fp["deep_health"] = (deep.status_code, deep.json()["status"], deep.json()["releaseId"])
    fp["version"] = client.get("/version").json()["releaseId"]

    fp["ip_limit"] = [client.get("/api/v1/me").status_code for _ in range(9)][-1]
    clock.advance(REFILL_S)
    auth = login(client)
    token = auth["Authorization"].removeprefix("Bearer ")
    claims = jwt.decode(token, options={"verify_signature": False})
    fp["token_ttl"] = claims["exp"] - claims["iat"]
    clock.advance(REFILL_S)
    fp["user_limit"] = [client.get("/api/v1/me", headers=auth).status_code for _ in range(5)][-1]
    clock.advance(REFILL_S)
    fp["api_without_token"] = client.get("/api/v1/me").status_code
    fp["body_limit"] = client.post("/api/v1/me", content=b"x" * 101, headers=auth).status_code
    started = time.perf_counter()
    client.get("/api/v1/me", headers=auth)
    fp["api_slow"] = time.perf_counter() - started >= 0.055
    statuses = set()
    for _ in range(10):  # error-burst fails three of every ten API answers
        clock.advance(REFILL_S)
        statuses.add(client.get("/api/v1/me", headers=auth).status_code)
    fp["api_errors"] = 500 in statuses
    clock.advance(REFILL_S)

    fp["ws_without_token"] = _denied(client, "/ws/sync")
    fp["ws_foreign_origin"] = _denied(client, "/ws/sync", headers={**auth, "Origin": "https://evil.test"})
    with client.websocket_connect("/ws/sync", headers=auth) as ws:
        ws.send_text("x" * 101)
        try:
            fp["ws_oversize"] = ws.receive_json()["type"]
        except WebSocketDisconnect as closed:
            fp["ws_oversize"] = closed.code

    created = client.post("/api/v1/conversations", json={"title": "fp"}, headers=auth)
    fp["conversation"] = created.status_code
    if created.status_code == 201:
        _conversation_probes(client, clock, auth, created.json()["id"], fp)
    return fp


def _conversation_probes(client: TestClient, clock: FakeClock, auth: dict[str, str], cid: str, fp: dict[str, Any]) -> None:
    bob = login(client, "bob")
    client.post(f"/api/v1/conversations/{cid}/participants", json={"username": "bob"}, headers=auth)
    posted = client.post(f"/api/v1/conversations/{cid}/messages", json={"text": "please sort this"}, headers=auth)
    listed = client.get(f"/api/v1/conversations/{cid}/messages", headers=auth)
    fp["read_your_write"] = posted.status_code == 201 and posted.json()["id"] in {m["id"] for m in listed.json().get("messages", [])}
    deadline = time.monotonic() + 2
    texts: list[str] = []
    while time.monotonic() < deadline and len(texts) < 2:
        clock.advance(1.0)
        response = client.get(f"/api/v1/conversations/{cid}/messages", headers=auth)
        texts = [m["text"] for m in response.json().get("messages", [])] if response.status_code == 200 else []
    fp["assistant"] = len(texts) == 2 and "sorted(" in texts[1]
    clock.advance(REFILL_S)

    run = client.post(f"/api/v1/conversations/{cid}/tools", json={"tool": "lint", "code": "x = 1"}, headers=auth)
    status = None
    deadline = time.monotonic() + 1
    while run.status_code == 202 and time.monotonic() < deadline and status != "finished":
        status = client.get(f"/api/v1/tool-runs/{run.json()['run_id']}", headers=auth).json().get("status")
    fp["tool_run"] = status
    clock.advance(REFILL_S)

    url = f"/ws/sync?conversation={cid}"
    with client.websocket_connect(url, headers=auth) as a, client.websocket_connect(url, headers=bob) as b:
        started = time.perf_counter()
        a.send_json({"type": "edit", "doc": "d", "text": "from a", "nonce": "a"})
        b.send_json({"type": "edit", "doc": "d", "text": "from b", "nonce": "b"})  # so that b always gets something
        first_at_b = b.receive_json()
        fp["sync_slow"] = time.perf_counter() - started >= 0.14
        fp["sync_to_others"] = first_at_b["data"]["nonce"] == "a"


def _fingerprint_of(tmp_path: Path, *faults: str) -> dict[str, Any]:
    clock = FakeClock()
    with running(make_settings(tmp_path, *faults, **OVERRIDES), mono=clock) as client:
        return fingerprint(client, clock)


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _fingerprint_of(tmp_path_factory.mktemp("healthy"))


def test_healthy_fingerprint_is_what_the_gate_expects(healthy: dict[str, Any]) -> None:
    assert healthy == {
        "hsts": "max-age=31536000; includeSubDomains",
        "security_headers": ("nosniff", "DENY", "no-referrer", "no-store"),
        "liveness": 200,
        "readiness": 200,
        "deep_health": (200, "pass", "2026.11.26-1"),
        "version": "2026.11.26-1",
        "ip_limit": 429,
        "token_ttl": 900,
        "user_limit": 429,
        "api_without_token": 401,
        "body_limit": 413,
        "api_slow": False,
        "api_errors": False,
        "ws_without_token": 401,
        "ws_foreign_origin": 403,
        "ws_oversize": 1009,
        "conversation": 201,
        "read_your_write": True,
        "assistant": True,
        "tool_run": "finished",
        "sync_slow": False,
        "sync_to_others": True,
    }


@pytest.mark.parametrize("fault", sorted(OWN))
def test_fault_changes_exactly_its_own_behaviour(tmp_path: Path, healthy: dict[str, Any], fault: str) -> None:
    observed = _fingerprint_of(tmp_path, fault)
    changed = {key for key in healthy if observed.get(key) != healthy[key]}
    assert OWN[fault] <= changed, f"{fault} did not change {OWN[fault] - changed}"
    assert changed <= OWN[fault] | COLLATERAL.get(fault, set()), f"{fault} also changed {changed - OWN[fault]}"
