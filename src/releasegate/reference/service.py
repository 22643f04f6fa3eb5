"""The state of one running service instance, shared by its middleware, routes and background tasks.

Everything mutable lives here and hangs off ``app.state.service``; nothing lives at module level,
so many instances (tests, ``demo --canary``) can run in one process without seeing each other.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import Any

from releasegate.reference.assistant import Assistant
from releasegate.reference.auth import Authenticator
from releasegate.reference.metrics import Metrics
from releasegate.reference.ratelimit import KeyedLimiter
from releasegate.reference.settings import ServiceSettings
from releasegate.reference.store import Message, Store, StoreUnavailable
from releasegate.reference.sync import Hub, Subscriber
from releasegate.reference.worker import Worker

Clock = Callable[[], float]
log = logging.getLogger(__name__)

ASSISTANT = "assistant"  # the author name of the assistant's messages
SERVICE_ID = "releasegate-reference"
CACHE_CAPACITY = 256


class SuggestionCache:
    """A small LRU of assistant replies by prompt: the "cache" component of deep health."""

    def __init__(self, capacity: int = CACHE_CAPACITY) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, str] = OrderedDict()

    def get(self, key: str) -> str | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: str, value: str) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    @property
    def utilization_percent(self) -> float:
        return round(100.0 * len(self._entries) / self.capacity, 1)


class Service:
    """One instance: settings, clocks, store, limiters, hub, worker, assistant and metrics."""

    def __init__(self, settings: ServiceSettings, *, mono: Clock = time.monotonic, wall: Clock = time.time) -> None:
        self.settings = settings
        self.mono = mono
        self.wall = wall
        self.metrics = Metrics()
        self.store = Store(settings.data_dir / "service.db", down=settings.has("db-down"), wall=wall)
        self.auth = Authenticator(settings, wall)
        self.ip_limiter = KeyedLimiter("ip", settings.rate_limit_ip, mono)
        self.user_limiter = KeyedLimiter("user", settings.rate_limit_user, mono)
        self.login_limiter = KeyedLimiter("login", settings.rate_limit_login, mono)
        self.hub = Hub(settings, self.metrics, self.store.max_seq, wall=wall, mono=mono)
        self.worker = Worker(settings, self.store, self.hub, self.metrics, mono=mono)
        self.assistant = Assistant(degraded=settings.has("bad-model"))
        self.cache = SuggestionCache()
        # wrong-release: the deployment did not take, the previous release still answers.
        self.release_id = settings.previous_release_id if settings.has("wrong-release") else settings.release_id
        self.api_requests = itertools.count()  # drives error-burst deterministically
        self._background: set[asyncio.Task[None]] = set()

    @property
    def database_schema_version(self) -> int:
        """The schema version the database is migrated to: the app's, or one behind under schema-mismatch."""
        return self.settings.schema_version - (1 if self.settings.has("schema-mismatch") else 0)

    async def start(self) -> None:
        self.store.open(schema_version=self.database_schema_version)
        await self.worker.start()

    async def stop(self) -> None:
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.worker.stop()
        self.store.close()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a background task that is cancelled at shutdown (a bare create_task could be collected)."""
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def read_as_of(self) -> float | None:
        """The moment reads see (fault stale-read: some seconds ago), None for "now"."""
        return self.wall() - self.settings.stale_read_s if self.settings.has("stale-read") else None

    def post_message(self, conversation_id: str, author: str, text: str, *, origin: Subscriber | None = None) -> Message:
        """Store a message, broadcast it, and (for people's messages) let the assistant answer later."""
        seq = self.hub.next_seq(conversation_id)
        message = self.store.add_message(conversation_id, seq, author, text)
        self.hub.publish(conversation_id, "message.created", author, message.to_json(), seq=seq, origin=origin)
        if author != ASSISTANT:
            self.spawn(self._reply(conversation_id, text))
        return message

    def suggestion(self, prompt: str) -> str:
        cached = self.cache.get(prompt)
        if cached is not None and not self.assistant.degraded:
            return cached
        reply = self.assistant.suggest(prompt)
        if reply:
            self.cache.put(prompt, reply)
        return reply

    async def _reply(self, conversation_id: str, prompt: str) -> None:
        await asyncio.sleep(self.settings.think_time_s)
        reply = self.suggestion(prompt)
        self.metrics.assistant_replies.labels("ok" if reply else "empty").inc()
        try:
            self.post_message(conversation_id, ASSISTANT, reply)
        except StoreUnavailable as exc:
            log.warning("assistant reply lost: %s", exc)
