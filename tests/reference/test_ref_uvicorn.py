"""The service over a real uvicorn on loopback: what a TestClient cannot show (real sockets, real upgrades)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ref_support import PASSWORDS, make_settings, uvicorn_server
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from releasegate.reference.app import create_app


def _login(base: str, user: str) -> str:
    response = httpx.post(f"{base}/api/v1/auth/login", json={"username": user, "password": PASSWORDS[user]})
    assert response.status_code == 200
    token: str = response.json()["access_token"]
    return token


def test_health_over_real_server_has_no_server_banner(tmp_path: Path) -> None:
    # Given a healthy instance behind uvicorn configured as the runner configures it
    with uvicorn_server(create_app(make_settings(tmp_path))) as port:
        # When the liveness endpoint is asked
        response = httpx.get(f"http://127.0.0.1:{port}/healthz")
    # Then it answers ok, with the security headers and without a Server version banner
    assert response.status_code == 200 and response.text == "ok"
    assert "server" not in response.headers
    assert response.headers["x-content-type-options"] == "nosniff"


def test_oversized_headers_get_431_and_chunked_oversized_body_gets_413(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_body_bytes=1000, max_header_bytes=2000)
    with uvicorn_server(create_app(settings)) as port:
        base = f"http://127.0.0.1:{port}"
        # Given headers of 3000 bytes in total, then a chunked body (no Content-Length) of 1001 bytes
        too_many_headers = httpx.get(f"{base}/healthz", headers={"X-Padding": "a" * 3000})

        def chunks() -> Iterator[bytes]:  # a generator body makes httpx send Transfer-Encoding: chunked
            yield b"x" * 600
            yield b"x" * 401

        chunked = httpx.post(f"{base}/api/v1/auth/login", content=chunks())
    # Then the app refuses each with its own status
    assert too_many_headers.status_code == 431
    assert chunked.status_code == 413
    assert "content-length" not in chunked.request.headers


def test_websocket_without_credentials_is_refused_with_401_not_101(tmp_path: Path) -> None:
    async def attempt(port: int) -> int:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"ws://127.0.0.1:{port}/ws/sync", open_timeout=5):
                pass
        return refused.value.response.status_code

    with uvicorn_server(create_app(make_settings(tmp_path))) as port:
        assert asyncio.run(attempt(port)) == 401


def test_websocket_fan_out_over_real_server(tmp_path: Path) -> None:
    # Given alice and bob in one conversation, each connected with the websockets client library
    with uvicorn_server(create_app(make_settings(tmp_path))) as port:
        base = f"http://127.0.0.1:{port}"
        alice, bob = _login(base, "alice"), _login(base, "bob")
        cid = httpx.post(f"{base}/api/v1/conversations", json={"title": "t"}, headers={"Authorization": f"Bearer {alice}"}).json()["id"]
        httpx.post(
            f"{base}/api/v1/conversations/{cid}/participants", json={"username": "bob"}, headers={"Authorization": f"Bearer {alice}"}
        )

        async def exchange() -> tuple[dict[str, object], dict[str, object]]:
            url = f"ws://127.0.0.1:{port}/ws/sync?conversation={cid}"
            async with (
                connect(url, additional_headers={"Authorization": f"Bearer {alice}"}, open_timeout=5) as a,
                # bob connects the browser way: the token travels as a subprotocol
                connect(url, subprotocols=["bearer", bob], open_timeout=5) as b,  # type: ignore[list-item]
            ):
                assert b.subprotocol == "bearer"
                # When alice edits the document
                await a.send(json.dumps({"type": "edit", "doc": "main.py", "text": "print(1)", "nonce": "n-1"}))
                at_bob = json.loads(await asyncio.wait_for(b.recv(), 5))
                at_alice = json.loads(await asyncio.wait_for(a.recv(), 5))
                return at_alice, at_bob

        at_alice, at_bob = asyncio.run(exchange())
    # Then bob receives the edit (and alice its echo), with the same seq and the nonce
    assert at_bob["type"] == "document.edit" and at_bob["sender"] == "alice"
    assert at_bob["data"] == {"doc": "main.py", "text": "print(1)", "nonce": "n-1"}
    assert at_alice["seq"] == at_bob["seq"] == 1


def test_oversized_websocket_message_closes_1009_over_real_server(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, ws_max_message_bytes=1024)
    with uvicorn_server(create_app(settings)) as port:
        token = _login(f"http://127.0.0.1:{port}", "alice")

        async def oversize() -> int | None:
            async with connect(f"ws://127.0.0.1:{port}/ws/sync", additional_headers={"Authorization": f"Bearer {token}"}) as ws:
                await ws.send("x" * 1025)
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), 5)
                return closed.value.rcvd.code if closed.value.rcvd else None

        assert asyncio.run(oversize()) == 1009
