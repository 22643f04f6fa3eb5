"""The sync hub: per-conversation sequence numbers and fan-out of events to WebSocket connections.

Every event of a conversation (message.created, tool.finished, typing, presence, document.edit)
takes the next number of ONE per-conversation sequence, so a client can order everything it sees
and notice a gap. Numbers are handed out and events queued without an ``await`` in between, so
queue order is sequence order; each connection drains its own queue in one task, so each client
receives every event of its conversation exactly once and in order. The connection that caused an
event receives it too (as the acknowledgement carrying the event's seq).

Faults: ``slow-sync`` holds each delivery back by ``slow_sync_ms``; ``sync-drop`` delivers an event
only to the connection it came from (events raised by REST calls or the worker then reach nobody).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from releasegate.reference.metrics import Metrics
from releasegate.reference.settings import ServiceSettings

Clock = Callable[[], float]
EventTypes = ("message.created", "tool.finished", "typing", "presence", "document.edit")
QUEUE_LIMIT = 1_000  # a client this far behind is cut off rather than allowed to grow memory without bound


@dataclass(eq=False)
class Subscriber:
    """One open WebSocket connection as the hub sees it."""

    id: int
    username: str
    conversation_id: str | None
    queue: asyncio.Queue[tuple[float, dict[str, Any]]] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    overflowed: bool = False


class SlowConsumer(Exception):
    """A connection fell QUEUE_LIMIT events behind; it is closed (1013) instead of buffering forever."""


class Hub:
    """Connections and sequence numbers of one service instance."""

    def __init__(
        self,
        settings: ServiceSettings,
        metrics: Metrics,
        last_seq: Callable[[str], int],
        *,
        wall: Clock = time.time,
        mono: Clock = time.monotonic,
    ) -> None:
        self._delay_s = settings.slow_sync_ms / 1000 if settings.has("slow-sync") else 0.0
        self._drop = settings.has("sync-drop")
        self._metrics = metrics
        self._last_seq = last_seq  # the store's highest persisted seq: numbering survives a restart
        self._wall = wall
        self._mono = mono
        self._seq: dict[str, int] = {}
        self._subscribers: set[Subscriber] = set()
        self._ids = itertools.count(1)

    def connections_of(self, username: str) -> int:
        return sum(1 for s in self._subscribers if s.username == username)

    def register(self, username: str, conversation_id: str | None) -> Subscriber:
        subscriber = Subscriber(next(self._ids), username, conversation_id)
        self._subscribers.add(subscriber)
        self._metrics.ws_connections.inc()
        return subscriber

    def unregister(self, subscriber: Subscriber) -> None:
        if subscriber in self._subscribers:
            self._subscribers.discard(subscriber)
            self._metrics.ws_connections.dec()

    def next_seq(self, conversation_id: str) -> int:
        current = self._seq.get(conversation_id)
        if current is None:
            current = self._last_seq(conversation_id)
        self._seq[conversation_id] = current + 1
        return current + 1

    def publish(
        self,
        conversation_id: str,
        event_type: str,
        sender: str,
        data: dict[str, Any],
        *,
        seq: int | None = None,
        origin: Subscriber | None = None,
    ) -> dict[str, Any]:
        """Queue an event for every connection of the conversation; ``seq`` if the caller already took one."""
        event = {
            "type": event_type,
            "conversation_id": conversation_id,
            "seq": seq if seq is not None else self.next_seq(conversation_id),
            "server_ts": int(self._wall() * 1000),
            "sender": sender,
            "data": data,
        }
        deliver_at = self._mono() + self._delay_s
        for subscriber in list(self._subscribers):
            if subscriber.conversation_id != conversation_id:
                continue
            if self._drop and subscriber is not origin:
                continue
            try:
                subscriber.queue.put_nowait((deliver_at, event))
            except asyncio.QueueFull:
                subscriber.overflowed = True
        return event

    def notify(self, subscriber: Subscriber, detail: str) -> None:
        """A private ``error`` notice to one connection (no seq: it is not part of the conversation)."""
        event = {"type": "error", "server_ts": int(self._wall() * 1000), "data": {"detail": detail}}
        with contextlib.suppress(asyncio.QueueFull):
            subscriber.queue.put_nowait((self._mono(), event))

    async def pump(self, subscriber: Subscriber, send: Callable[[dict[str, Any]], Any]) -> None:
        """Deliver one connection's events in order until cancelled (the connection's send task)."""
        while True:
            deliver_at, event = await subscriber.queue.get()
            if subscriber.overflowed:
                raise SlowConsumer(f"connection {subscriber.id} fell {QUEUE_LIMIT} events behind")
            wait = deliver_at - self._mono()
            if wait > 0:
                await asyncio.sleep(wait)
            await send(event)
            if "seq" in event:  # a sync event, not a private error notice
                self._metrics.sync_latency.labels(event["type"]).observe(max(0.0, self._wall() - event["server_ts"] / 1000))
