"""A frame over the probe's cap ends the connection at once (FailFastConnection), for both WebSocket families.

The peer here accepts the upgrade, announces one text frame far over ``max_frame_bytes`` (its
header only, and a few payload bytes), then neither streams the rest nor closes: what a far server
streaming 100 MB looks like to a client in the first seconds. websockets alone would send its 1009
and then wait for the server to close TCP until close_timeout, its reader none the wiser; the
probes would read that silence as "no close after the oversized message" (failed) or "every event
lost" (failed). They must say instead that the probe refused a frame: error, with 1009.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from releasegate.probes import sync, websocket

TOKEN = "t0ken-for-the-oversized-peer-0123456789"
ANNOUNCED_BYTES = 100 * 1024 * 1024
MAX_PEER_S = 20.0  # no connection of the peer lives longer, whatever the client does


def _accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()).decode()  # noqa: S324


def _serve(conn: socket.socket) -> None:
    started = time.monotonic()
    try:
        request = b""
        while b"\r\n\r\n" not in request and len(request) < 16384:
            chunk = conn.recv(4096)
            if not chunk:
                return
            request += chunk
        key = next(
            line.split(":", 1)[1].strip() for line in request.decode().split("\r\n") if line.lower().startswith("sec-websocket-key:")
        )
        conn.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {_accept_key(key)}\r\n\r\n".encode()
        )
        conn.sendall(struct.pack("!BBQ", 0x81, 127, ANNOUNCED_BYTES) + b"x" * 1024)
        # Then nothing: no more payload, no close frame; read and drop until the client hangs up.
        while time.monotonic() - started < MAX_PEER_S:
            try:
                if not conn.recv(65536):
                    return
            except TimeoutError:
                continue
    except OSError:
        pass
    finally:
        conn.close()


@contextmanager
def oversized_peer() -> Iterator[str]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            conn.settimeout(0.5)
            threading.Thread(target=_serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{listener.getsockname()[1]}/ws"
    finally:
        stop.set()
        listener.close()
        thread.join(2)


def test_message_size_says_the_probe_refused_a_frame_not_that_the_server_kept_the_message() -> None:
    settings = websocket.WsSettings(timeout_s=5.0, ssl=ssl.create_default_context(), max_frame_bytes=1 << 20, token=TOKEN)
    with oversized_peer() as url:
        started = time.monotonic()
        finding = websocket.check_message_size(url, 1024, settings)
        elapsed = time.monotonic() - started

    assert finding.outcome == "error", finding.summary
    assert "the probe closed the connection itself (1009)" in finding.summary
    assert elapsed < settings.timeout_s  # not after the close timeout: at once


def test_sync_clients_record_the_1009_they_sent_and_the_judge_says_error() -> None:
    options = sync.WsOptions(timeout_s=5.0, max_frame_bytes=1 << 20)
    members = [sync.Member("primary", TOKEN), sync.Member("second", TOKEN)]

    async def probe() -> sync.CollaborationObservation:
        return await sync.collaborate(
            url, members, ["message"], lambda kind, marker: f'{{"type": "{kind}", "nonce": "{marker}"}}',
            rounds=1, interval_ms=10, timeout_ms=3000, options=options,
        )  # fmt: skip

    with oversized_peer() as url:
        started = time.monotonic()
        observation = sync.run_blocking(probe, 30)
        elapsed = time.monotonic() - started

    assert [client.closed for client in observation.clients] == [
        f"closed by the probe with 1009 (frame with {ANNOUNCED_BYTES} bytes exceeds limit of {1 << 20} bytes)"
    ] * 2
    finding = sync.judge_collaboration(observation)
    assert finding.outcome == "error"
    assert "closed by the probe with 1009" in finding.summary
    assert elapsed < 3.0  # the lost connections settle the probe: no waiting out timeout_ms nor close_timeout
