"""The WebSocket probes against small hostile or unusual loopback servers (plain ws://, port 0).

What the reference deployment never does: redirect the upgrade, never answer, enforce a cap by
accepting and closing, close idle connections, evict the oldest, echo oversized messages, answer
with frames above the probe's cap, take (or ignore) the token as a subprotocol.

Timing: every server here acts on events (a handshake, a close), and the probe waits for events
bounded by its timeout; nothing depends on a short window that a loaded machine could miss.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import ServerConnection, serve
from websockets.typing import Subprotocol

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
    bearer_subprotocol: bool = False,
) -> Iterator[tuple[str, list[Request]]]:
    """A websockets server on 127.0.0.1 port 0 in a thread; yields its ws:// URL and the requests it saw."""
    seen: list[Request] = []

    def select(connection: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
        # "bearer" when offered (the browser's way to send a token), else none: never a refusal for that alone.
        return Subprotocol("bearer") if bearer_subprotocol and "bearer" in offered else None

    def record(connection: ServerConnection, request: Request) -> Response | None:
        seen.append(request)
        return process_request(connection, request) if process_request is not None else None

    with serve(
        handler, "127.0.0.1", 0, process_request=record, max_size=max_size, compression=None, select_subprotocol=select
    ) as ws_server:
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
    assert [r.headers.get("Authorization") is not None for r in seen] == [False, True, True, False, False]
    assert [r.headers.get("Sec-WebSocket-Protocol") is not None for r in seen] == [False, False, False, True, True]


# --- auth, the browser way: the token as a subprotocol ----------------------------------------------


def token_auth(*, check_subprotocol_token: bool, subprotocol_auth: bool = True) -> Callable[[ServerConnection, Request], Response | None]:
    """401 unless the request carries TOKEN: as a bearer header, or (``subprotocol_auth``) as ``bearer, <token>``."""

    def answer(connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Authorization") == f"Bearer {TOKEN}":
            return None
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        if subprotocol_auth and offered[:1] == ["bearer"] and len(offered) == 2:
            if offered[1] == TOKEN or not check_subprotocol_token:
                return None
        return connection.respond(401, "no\n")

    return answer


def test_subprotocol_auth_that_verifies_the_token_passes() -> None:
    with server(idle, process_request=token_auth(check_subprotocol_token=True), bearer_subprotocol=True) as (url, seen):
        finding = websocket.check_auth(url, settings())
    assert finding.outcome == "passed", finding.summary
    assert seen[4].headers["Sec-WebSocket-Protocol"] == f"bearer, {TOKEN}"
    assert TOKEN not in json.dumps(finding.evidence) and websocket.invalid_token(TOKEN) not in json.dumps(finding.evidence)


def test_subprotocol_auth_that_takes_any_token_fails() -> None:
    with server(idle, process_request=token_auth(check_subprotocol_token=False), bearer_subprotocol=True) as (url, _):
        finding = websocket.check_auth(url, settings())
    assert finding.outcome == "failed"
    assert "invalid token via subprotocol (bearer, <token>): 101" in finding.summary


def test_a_target_without_subprotocol_auth_is_judged_on_the_header_alone() -> None:
    with server(idle, process_request=token_auth(check_subprotocol_token=True, subprotocol_auth=False)) as (url, _):
        finding = websocket.check_auth(url, settings())
    assert finding.outcome == "passed"
    assert "subprotocol auth not judged" in finding.summary


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
    """Accepts every upgrade and closes connections beyond ``cap`` at once with ``code`` (1008 by default).

    Counted at the handshake (``process_request``), which the probe's sequential opening orders;
    counting in the handler would race, since each connection's handler runs in its own thread.
    """

    def __init__(self, cap: int, code: int = 1008) -> None:
        self.cap = cap
        self.code = code
        self.open = 0
        self.most = 0
        self.over: set[int] = set()
        self.lock = threading.Lock()

    def admit(self, connection: ServerConnection, request: Request) -> Response | None:
        with self.lock:
            self.open += 1
            self.most = max(self.most, self.open)
            if self.open > self.cap:
                self.over.add(id(connection))
        return None

    def __call__(self, connection: ServerConnection) -> None:
        try:
            if id(connection) in self.over:
                connection.close(self.code, "too many connections")
            else:
                idle(connection)
        finally:
            with self.lock:
                self.open -= 1


def capped_server(handler: Capped) -> Any:
    return server(handler, process_request=handler.admit)


def test_a_cap_enforced_by_closing_the_extra_connection_passes() -> None:
    handler = Capped(3)
    with capped_server(handler) as (url, seen):
        finding = websocket.check_connection_limit(url, 3, settings())
    assert finding.outcome == "passed", finding.summary
    assert finding.evidence["extra_close_code"] == 1008
    assert finding.evidence["held_open"] == 3
    assert len(seen) == 4


def test_closing_the_extra_connection_normally_is_not_a_cap() -> None:
    with capped_server(Capped(3, code=1000)) as (url, _):
        finding = websocket.check_connection_limit(url, 3, settings())
    assert finding.outcome == "failed", finding.summary
    assert "closed with 1000 (a normal close, not a limit" in finding.summary


def test_a_server_that_closes_idle_connections_is_not_taken_for_a_cap() -> None:
    # Given a server without a cap that closes every connection idle for 0.2 s, with 1008, oldest first
    closed: list[threading.Event] = []
    lock = threading.Lock()

    def idle_timeout(connection: ServerConnection) -> None:
        with lock:
            before = closed[-1] if closed else None
            mine = threading.Event()
            closed.append(mine)
        try:
            connection.recv(timeout=0.2)
        except TimeoutError:
            # In opening order whatever the thread scheduling: an idle timer fires for the oldest first.
            if before is not None:
                before.wait(5)
            connection.close(1008, "idle")
        except ConnectionClosed:
            pass
        finally:
            mine.set()

    with server(idle_timeout) as (url, _):
        finding = websocket.check_connection_limit(url, 3, settings())
    # Then the extra connection's 1008 is no proof: the first ones were closed as well
    assert finding.outcome == "error", finding.summary
    assert "did not stay open" in finding.summary
    assert "connection 1: closed 1008" in finding.evidence["held_lost"]


def test_a_server_that_evicts_the_oldest_connection_is_not_judged_on_the_extra_one() -> None:
    # Given a server that makes room for connection 4 by closing connection 1 before it accepts
    connections: list[ServerConnection] = []

    def evict(connection: ServerConnection, request: Request) -> Response | None:
        if len(connections) == 3:
            connections[0].close(1008, "evicted")
        connections.append(connection)
        return None

    with server(idle, process_request=evict) as (url, _):
        finding = websocket.check_connection_limit(url, 3, settings(timeout_s=1.0))
    assert finding.outcome == "error", finding.summary
    assert finding.evidence["held_lost"] == ["connection 1: closed 1008"]


def test_no_cap_fails_and_every_connection_is_closed_afterwards() -> None:
    handler = Capped(100)
    with capped_server(handler) as (url, seen):
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
