"""The WebSocket probes against small hostile or unusual loopback servers (plain ws://, port 0).

What the reference deployment never does: redirect the upgrade, never answer, enforce a cap by
accepting and closing, echo oversized messages, answer with frames above the probe's cap.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import ServerConnection, serve

from releasegate._exceptions import ProbeTimeout
from releasegate.probes import websocket

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.dGhlLXNpZ25hdHVyZS1vZi10aGUtdG9rZW4"


def settings(timeout_s: float = 2.0, max_frame_bytes: int = 1 << 20) -> websocket.WsSettings:
    return websocket.WsSettings(timeout_s=timeout_s, ssl=ssl.create_default_context(), max_frame_bytes=max_frame_bytes, token=TOKEN)


@contextmanager
def server(
    handler: Callable[[ServerConnection], None],
    *,
    process_request: Callable[[ServerConnection, Request], Response | None] | None = None,
    max_size: int | None = 1 << 20,
) -> Iterator[tuple[str, list[Request]]]:
    """A websockets server on 127.0.0.1 port 0 in a thread; yields its ws:// URL and the requests it saw."""
    seen: list[Request] = []

    def record(connection: ServerConnection, request: Request) -> Response | None:
        seen.append(request)
        return process_request(connection, request) if process_request is not None else None

    with serve(handler, "127.0.0.1", 0, process_request=record, max_size=max_size, compression=None) as ws_server:
        thread = threading.Thread(target=ws_server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"ws://127.0.0.1:{ws_server.socket.getsockname()[1]}/ws", seen
        finally:
            ws_server.shutdown()
            thread.join(5)


def idle(connection: ServerConnection) -> None:
    try:
        for _ in connection:
            pass
    except ConnectionClosed:
        pass


def redirect_to(location: str) -> Callable[[ServerConnection, Request], Response]:
    def answer(connection: ServerConnection, request: Request) -> Response:
        response = connection.respond(308, "")
        response.headers["Location"] = location
        return response

    return answer


# --- redirects are answers, never followed --------------------------------------------------------


def test_a_plaintext_redirect_passes_and_is_not_followed() -> None:
    with server(idle) as (elsewhere, elsewhere_seen), server(idle, process_request=redirect_to(elsewhere)) as (url, seen):
        port = url.split(":")[2].split("/")[0]
        finding = websocket.check_plaintext("wss://127.0.0.1:1/ws", f"http://127.0.0.1:{port}", settings())
    assert finding.outcome == "passed", finding.summary
    assert "redirected with 308" in finding.summary
    assert len(seen) == 1 and elsewhere_seen == []


def test_the_token_is_never_carried_along_a_redirect() -> None:
    # Given an endpoint that redirects every upgrade to another server
    with server(idle) as (elsewhere, elsewhere_seen), server(idle, process_request=redirect_to(elsewhere)) as (url, seen):
        finding = websocket.check_auth(url, settings())
    # Then the check cannot judge (its control was "refused" with 308) and the other server saw nothing
    assert finding.outcome == "error"
    assert elsewhere_seen == []
    assert [r.headers.get("Authorization") is not None for r in seen] == [False, True, True]


# --- no answer, nothing listening -----------------------------------------------------------------


def test_a_server_that_never_answers_is_an_error_within_the_timeout() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes TCP handshakes; nobody ever reads the upgrade request
        port = silent.getsockname()[1]
        began = time.monotonic()
        finding = websocket.check_plaintext("wss://127.0.0.1:1/ws", f"http://127.0.0.1:{port}", settings(timeout_s=0.3))
    assert time.monotonic() - began < 2
    assert finding.outcome == "error", finding.summary


def test_nothing_listening_for_plaintext_passes() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]  # bound, not listening: connections are refused
        finding = websocket.check_plaintext("wss://127.0.0.1:1/ws", f"http://127.0.0.1:{port}", settings())
    assert finding.outcome == "passed"
    assert "connection refused" in finding.summary


def test_auth_without_a_reachable_server_is_an_error() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        finding = websocket.check_auth(f"ws://127.0.0.1:{placeholder.getsockname()[1]}/ws", settings())
    assert finding.outcome == "error"


# --- message size ---------------------------------------------------------------------------------


def echo(connection: ServerConnection) -> None:
    try:
        for message in connection:
            connection.send(message)
    except ConnectionClosed:
        pass


def test_a_server_enforcing_its_max_size_closes_with_1009() -> None:
    with server(idle, max_size=1000) as (url, _):
        finding = websocket.check_message_size(url, 1000, settings())
    assert finding.outcome == "passed", finding.summary
    assert finding.evidence["server_close_code"] == 1009


def test_a_server_that_answers_the_oversized_message_fails_quickly() -> None:
    with server(echo, max_size=None) as (url, _):
        began = time.monotonic()
        finding = websocket.check_message_size(url, 1000, settings(timeout_s=5))
    assert finding.outcome == "failed"
    assert finding.evidence["frames_received"] == 1
    assert time.monotonic() - began < 2  # the grace after an answer, not the whole timeout


def test_a_silent_server_fails_after_the_timeout() -> None:
    with server(idle, max_size=None) as (url, _):
        finding = websocket.check_message_size(url, 1000, settings(timeout_s=0.3))
    assert (finding.outcome, finding.observed) == ("failed", "still open")


def test_an_echo_above_the_probes_own_cap_is_not_mistaken_for_the_servers_1009() -> None:
    # The echo of 1001 bytes exceeds the probe's 500-byte cap: the probe closes with 1009 itself,
    # and the server's close frame only echoes that code.
    with server(echo, max_size=None) as (url, _):
        finding = websocket.check_message_size(url, 1000, settings(max_frame_bytes=500))
    assert finding.outcome == "error", finding.summary
    assert finding.evidence["probe_close_code"] == 1009 and finding.evidence["server_close_code"] is None


def test_a_server_that_drops_the_connection_fails_with_1006() -> None:
    def drop(connection: ServerConnection) -> None:
        try:
            connection.recv()
        finally:
            connection.socket.shutdown(socket.SHUT_RDWR)

    with server(drop, max_size=None) as (url, _):
        finding = websocket.check_message_size(url, 1000, settings())
    assert (finding.outcome, finding.observed) == ("failed", "closed without a close frame (1006)")


# --- connection limit -----------------------------------------------------------------------------


class Capped:
    """Accepts every upgrade and closes connections beyond ``cap`` at once with 1008."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.open = 0
        self.most = 0
        self.lock = threading.Lock()

    def __call__(self, connection: ServerConnection) -> None:
        with self.lock:
            self.open += 1
            self.most = max(self.most, self.open)
            over = self.open > self.cap
        try:
            if over:
                connection.close(1008, "too many connections")
            else:
                idle(connection)
        finally:
            with self.lock:
                self.open -= 1


def test_a_cap_enforced_by_closing_the_extra_connection_passes() -> None:
    handler = Capped(3)
    with server(handler) as (url, seen):
        finding = websocket.check_connection_limit(url, 3, settings())
    assert finding.outcome == "passed", finding.summary
    assert finding.evidence["extra_close_code"] == 1008
    assert len(seen) == 4


def test_no_cap_fails_and_every_connection_is_closed_afterwards() -> None:
    handler = Capped(100)
    with server(handler) as (url, seen):
        finding = websocket.check_connection_limit(url, 5, settings())
        deadline = time.monotonic() + 5
        while handler.open and time.monotonic() < deadline:
            time.sleep(0.01)
        still_open = handler.open
    assert finding.outcome == "failed"
    assert len(seen) == 6 and handler.most == 6  # exactly cap + 1, all held at once
    assert still_open == 0


def test_an_early_refusal_within_the_cap_is_retried_then_warned() -> None:
    def refuse_third(connection: ServerConnection, request: Request) -> Response | None:
        return connection.respond(429, "busy") if len(seen) >= 3 else None

    seen: list[Any] = []

    def count(connection: ServerConnection, request: Request) -> Response | None:
        seen.append(request)
        return refuse_third(connection, request)

    with server(idle, process_request=count) as (url, _):
        finding = websocket.check_connection_limit(url, 4, settings())
    assert finding.outcome == "warned", finding.summary
    assert finding.evidence["retries"] == websocket.CAP_RETRIES
    assert finding.evidence["statuses"] == [101, 101, 429]
    assert len(seen) == 3 + websocket.CAP_RETRIES


# --- the total deadline -----------------------------------------------------------------------------


def test_a_probe_past_its_total_budget_raises_probe_timeout() -> None:
    async def slow() -> None:
        await asyncio.sleep(5)

    began = time.monotonic()
    with pytest.raises(ProbeTimeout, match="within 0.05 s"):
        websocket._run(slow, budget_s=0.05, url="wss://127.0.0.1:1/ws")
    assert time.monotonic() - began < 1
