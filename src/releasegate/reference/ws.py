"""WebSocket sync at ``/ws/sync?conversation=<id>``.

The upgrade is judged before it is accepted, so a refused client sees an HTTP status, never 101:

1. Origin: absent (a non-browser client) or ``https://<settings.server_name>[:any port]`` -> else 403;
2. credentials: ``Authorization: Bearer <jwt>``, or for browsers ``Sec-WebSocket-Protocol: bearer, <jwt>``
   (then accepted with subprotocol ``bearer``) -> else 401;
3. ``conversation`` (optional; without it the connection receives no events): unknown 404, not a participant 403;
4. per-user connection cap -> 429 (fault ``ws-no-connection-limit``: no cap).

After the upgrade: a frame over ``ws_max_message_bytes`` closes the connection with 1009, more than
``ws_max_messages_per_s`` (token bucket, burst of one second's worth) closes it with 1008.

Client -> server: JSON objects ``{"type": "typing"|"presence"|"edit"|"message", ...}``; ``client_ts``
and ``nonce`` are echoed in the event's data. Server -> client: the hub's events (sync.py), and
``{"type": "error", "data": {"detail": ...}}`` (no seq) for a message the server could not use.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from typing import Any
from urllib.parse import urlsplit

from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from releasegate.reference.auth import ANONYMOUS, Principal, TokenError
from releasegate.reference.ratelimit import TokenBucket
from releasegate.reference.service import Service
from releasegate.reference.settings import RateLimit
from releasegate.reference.store import StoreUnavailable
from releasegate.reference.sync import SlowConsumer, Subscriber

log = logging.getLogger(__name__)
PATH = "/ws/sync"
SUBPROTOCOL = "bearer"
ECHOED = ("client_ts", "nonce")


def origin_allowed(origin: str, server_name: str) -> bool:
    """Exact scheme and host match: no substring or suffix tricks (``https://localhost.evil.test`` is refused)."""
    try:
        parts = urlsplit(origin)
        _ = parts.port  # raises on a malformed port
    except ValueError:
        return False
    return parts.scheme == "https" and parts.hostname is not None and parts.hostname == server_name.lower()


async def _deny(websocket: WebSocket, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    """Refuse the upgrade with an HTTP status (ASGI websocket.http.response); servers without it answer 403."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSONResponse({"status": status, "detail": detail}, status_code=status, headers=headers))
    else:
        await websocket.close(code=1008, reason=detail[:120])


async def sync_socket(websocket: WebSocket) -> None:
    service: Service = websocket.app.state.service
    settings = service.settings

    origin = websocket.headers.get("origin")
    if origin is not None and not settings.has("ws-any-origin") and not origin_allowed(origin, settings.server_name):
        await _deny(websocket, 403, f"origin {origin} is not allowed")
        return

    subprotocols: list[str] = list(websocket.scope.get("subprotocols", []))
    accept_subprotocol: str | None = None
    try:
        if "authorization" in websocket.headers:
            principal = service.auth.from_authorization(websocket.headers["authorization"])
        elif SUBPROTOCOL in subprotocols:
            tokens = [p for p in subprotocols if p != SUBPROTOCOL]
            if not tokens:
                raise TokenError("the bearer subprotocol carries no token")
            principal = service.auth.verify(tokens[0])
            accept_subprotocol = SUBPROTOCOL
        else:
            raise TokenError("no bearer token", missing=True)
    except TokenError as exc:
        if not settings.has("ws-no-auth"):
            await _deny(websocket, 401, str(exc), {"WWW-Authenticate": exc.www_authenticate()})
            return
        principal = Principal(ANONYMOUS, anonymous=True)
        accept_subprotocol = SUBPROTOCOL if SUBPROTOCOL in subprotocols else None

    conversation_id = websocket.query_params.get("conversation") or None
    if conversation_id is not None:
        try:
            participants = service.store.participants(conversation_id)
        except StoreUnavailable:
            await _deny(websocket, 503, "the database is unavailable")
            return
        if participants is None:
            await _deny(websocket, 404, f"no conversation {conversation_id}")
            return
        if principal.username not in participants and not principal.anonymous:
            await _deny(websocket, 403, f"{principal.username} does not take part in conversation {conversation_id}")
            return

    at_cap = service.hub.connections_of(principal.username) >= settings.ws_max_connections_per_user
    if at_cap and not settings.has("ws-no-connection-limit"):
        await _deny(websocket, 429, f"at most {settings.ws_max_connections_per_user} connections per user")
        return

    await websocket.accept(subprotocol=accept_subprotocol)
    subscriber = service.hub.register(principal.username, conversation_id)
    pump = asyncio.create_task(_pump(service, subscriber, websocket))
    close: tuple[int, str] | None = None
    try:
        close = await _receive_loop(service, subscriber, websocket)
    finally:
        service.hub.unregister(subscriber)
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
    if close is not None:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):  # the client may be gone already
            await websocket.close(code=close[0], reason=close[1])


async def _pump(service: Service, subscriber: Subscriber, websocket: WebSocket) -> None:
    try:
        await service.hub.pump(subscriber, websocket.send_json)
    except SlowConsumer:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(code=1013, reason="too far behind")
    except (RuntimeError, WebSocketDisconnect, OSError):
        pass  # the connection went away while sending; the receive loop notices it too
    except Exception:
        # A bug here must not leave a silent connection that receives nothing: say so, and close.
        log.exception("event delivery to connection %s failed", subscriber.id)
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(code=1011, reason="internal error")


async def _receive_loop(service: Service, subscriber: Subscriber, websocket: WebSocket) -> tuple[int, str] | None:
    """Read client frames until the client leaves (None) or a limit is hit (the close code and reason)."""
    settings = service.settings
    rate = settings.ws_max_messages_per_s
    bucket = TokenBucket(RateLimit(rate=rate, burst=max(1, math.ceil(rate))), service.mono)
    while True:
        frame = await websocket.receive()
        if frame["type"] == "websocket.disconnect":
            return None
        text: str | None = frame.get("text")
        size = len(text.encode()) if text is not None else len(frame.get("bytes") or b"")
        if size > settings.ws_max_message_bytes and not settings.has("ws-no-size-limit"):
            return 1009, f"message of {size} bytes exceeds {settings.ws_max_message_bytes}"
        if not bucket.take("ws").allowed:
            return 1008, f"more than {rate:g} messages per second"
        try:
            detail = _handle(service, subscriber, text)
        except StoreUnavailable:
            detail = "the database is unavailable"
        if detail is not None:
            service.hub.notify(subscriber, detail)


def _handle(service: Service, subscriber: Subscriber, text: str | None) -> str | None:
    """Turn one client message into an event; the reason when it cannot be used."""
    if text is None:
        return "only text frames carrying JSON are understood"
    try:
        message: Any = json.loads(text)
    except json.JSONDecodeError:
        return "the message is not JSON"
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return "the message must be a JSON object with a string 'type'"
    cid = subscriber.conversation_id
    if cid is None:
        return "connect with ?conversation=<id> to send and receive events"
    kind = message["type"]
    echoed = {key: message[key] for key in ECHOED if key in message}
    user = subscriber.username
    if kind == "typing":
        service.hub.publish(cid, "typing", user, {"typing": bool(message.get("typing", True)), **echoed}, origin=subscriber)
    elif kind == "presence":
        status = message.get("status", "online")
        service.hub.publish(cid, "presence", user, {"status": str(status), **echoed}, origin=subscriber)
    elif kind == "edit":
        if not isinstance(message.get("doc"), str):
            return "an edit needs a string 'doc'"
        data = {key: message[key] for key in ("doc", "ops", "text") if key in message}
        service.hub.publish(cid, "document.edit", user, {**data, **echoed}, origin=subscriber)
    elif kind == "message":
        if not isinstance(message.get("text"), str) or not message["text"]:
            return "a message needs a non-empty string 'text'"
        service.post_message(cid, user, message["text"], origin=subscriber)
    else:
        return f"unknown message type {kind!r}"
    return None


def routes() -> list[BaseRoute]:
    return [WebSocketRoute(PATH, sync_socket)]
