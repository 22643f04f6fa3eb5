"""The tool worker: a queue of tool runs executed by background asyncio tasks.

A run is stored as ``queued`` by the API (202), taken by a worker task (``running``), executed by
:mod:`releasegate.reference.tools` and stored as ``finished`` with its result, which is also pushed
to the conversation as a ``tool.finished`` event. Runs left unfinished by a previous process are
queued again at start.

Health: the worker loop beats a heartbeat while idle; a worker whose heartbeat is older than
``STALL_S``, or whose oldest job waited longer than that, is *degraded* (warn), not failed: the
service still answers, it is just not finishing tool runs. Fault ``worker-stuck`` starts no worker
tasks at all, so runs stay queued and health says warn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from releasegate.reference.metrics import Metrics
from releasegate.reference.settings import ServiceSettings
from releasegate.reference.store import Store, StoreUnavailable
from releasegate.reference.sync import Hub
from releasegate.reference.tools import run_tool

Clock = Callable[[], float]
log = logging.getLogger(__name__)

WORKERS = 2
STALL_S = 2.0
HEARTBEAT_S = 0.25


@dataclass(frozen=True)
class WorkerHealth:
    depth: int
    status: Literal["pass", "warn"]
    output: str


class Worker:
    def __init__(self, settings: ServiceSettings, store: Store, hub: Hub, metrics: Metrics, *, mono: Clock = time.monotonic) -> None:
        self._stuck = settings.has("worker-stuck")
        self._store = store
        self._hub = hub
        self._metrics = metrics
        self._mono = mono
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._enqueued_at: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._heartbeat: float | None = None

    async def start(self) -> None:
        with contextlib.suppress(StoreUnavailable):  # db-down: nothing to resume, readiness reports it
            for run_id in self._store.queued_tool_runs():
                self.submit(run_id)
        if self._stuck:
            return
        self._heartbeat = self._mono()
        self._tasks = [asyncio.create_task(self._loop(), name=f"tool-worker-{i}") for i in range(WORKERS)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def submit(self, run_id: str) -> None:
        self._enqueued_at[run_id] = self._mono()
        self._queue.put_nowait(run_id)
        self._metrics.queue_depth.set(self._queue.qsize())

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def health(self) -> WorkerHealth:
        now = self._mono()
        depth = self.depth
        if self._heartbeat is None:
            return WorkerHealth(depth, "warn", "the worker is not taking jobs")
        if now - self._heartbeat > STALL_S:
            return WorkerHealth(depth, "warn", f"no worker heartbeat for {now - self._heartbeat:.1f} s")
        oldest = min(self._enqueued_at.values(), default=now)
        if now - oldest > STALL_S:
            return WorkerHealth(depth, "warn", f"the oldest job has waited {now - oldest:.1f} s")
        return WorkerHealth(depth, "pass", "")

    async def _loop(self) -> None:
        while True:
            self._heartbeat = self._mono()
            try:
                run_id = await asyncio.wait_for(self._queue.get(), HEARTBEAT_S)
            except TimeoutError:
                continue
            self._metrics.queue_depth.set(self._queue.qsize())
            self._enqueued_at.pop(run_id, None)
            try:
                await self._run(run_id)
            except StoreUnavailable as exc:
                log.warning("tool run %s lost: %s", run_id, exc)

    async def _run(self, run_id: str) -> None:
        run = self._store.get_tool_run(run_id)
        if run is None or run.status == "finished":
            return
        self._store.start_tool_run(run_id)
        await asyncio.sleep(0)  # a real tool would await a subprocess here; let others run between the steps
        finished = self._store.finish_tool_run(run_id, run_tool(run.tool, run.code))
        self._metrics.tool_runs.labels(run.tool).inc()
        self._hub.publish(run.conversation_id, "tool.finished", run.requested_by, finished.to_json())
