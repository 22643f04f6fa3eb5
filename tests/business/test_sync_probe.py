"""The sync probe's I/O against a small fake hub on loopback: hostile frames, late duplicates, bounds.

The hub is a few lines of ``websockets``: every text a client sends is broadcast to every client
(its sender too), wrapped in an event, with a sequence number or without, optionally sent a
second time a little later, optionally preceded by a frame of the test's choosing. What matters
is how the probe copes with what a real server may do to it, not how fast anything is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from releasegate._exceptions import ProbeError, ProbeTimeout
from releasegate.probes import sync

TOKEN = "t0ken-for-the-fake-hub-0123456789"
OPTIONS = sync.WsOptions(timeout_s=2.0)
# Deep enough that json.loads gives up with RecursionError rather than ValueError.
NESTED_FRAME = "[" * 100_000


class Hub:
    """Broadcasts every text to every client as {"type": "event", "text": ..., ["seq": n]}."""

    def __init__(self, *, seq: bool = True, duplicate_after_s: float | None = None, first_frame: str | None = None) -> None:
        self.seq, self.duplicate_after_s, self.first_frame = seq, duplicate_after_s, first_frame
        self.clients: set[ServerConnection] = set()
        self.count = 0
        self.tasks: set[asyncio.Task[None]] = set()

    async def handler(self, connection: ServerConnection) -> None:
        self.clients.add(connection)
        try:
            if self.first_frame is not None:
                await connection.send(self.first_frame)
            async for text in connection:
                self.count += 1
                event: dict[str, Any] = {"type": "event", "text": text}
                if self.seq:
                    event["seq"] = self.count
                frame = json.dumps(event)
                await self.broadcast(frame)
                if self.duplicate_after_s is not None:
                    task = asyncio.create_task(self.later(frame, self.duplicate_after_s))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
        finally:
            self.clients.discard(connection)

    async def broadcast(self, frame: str) -> None:
        for client in list(self.clients):
            with contextlib.suppress(ConnectionClosed):
                await client.send(frame)

    async def later(self, frame: str, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        await self.broadcast(frame)


@contextlib.asynccontextmanager
async def hub_url(hub: Hub) -> AsyncIterator[str]:
    async with serve(hub.handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/sync"


def compose(kind: str, marker: str) -> str:
    return json.dumps({"type": kind, "nonce": marker})


def members(count: int = 2) -> list[sync.Member]:
    return [sync.Member("primary" if i % 2 == 0 else "second", TOKEN) for i in range(count)]


def collaborate(hub: Hub, *, seq_of: sync.SeqOf | None = None, timeout_ms: float = 1000) -> sync.CollaborationObservation:
    async def work() -> sync.CollaborationObservation:
        async with hub_url(hub) as url:
            return await sync.collaborate(
                url,
                members(),
                ["edit"],
                compose,
                rounds=3,
                interval_ms=10,
                timeout_ms=timeout_ms,
                options=OPTIONS,
                seq_of=seq_of,
                seq_path="$.seq",
            )

    return sync.run_blocking(work, 10.0)


def seq_of(event: Any) -> Any:
    return event["seq"]


def test_a_healthy_hub_passes_and_the_clients_lingered_for_late_duplicates() -> None:
    finding = sync.judge_collaboration(collaborate(Hub(), seq_of=seq_of))
    assert finding.outcome == "passed", finding.summary
    assert finding.evidence["seq_checked"] is True
    assert finding.evidence["grace_ms"] == 500.0  # min(timeout_ms, 500 ms)


def test_a_duplicate_delivered_after_everything_arrived_is_counted() -> None:
    # Given a hub that sends every event a second time 150 ms later: by then every first copy
    # has arrived, and a probe that hung up at once would never see the duplicates
    finding = sync.judge_collaboration(collaborate(Hub(duplicate_after_s=0.15), seq_of=seq_of))
    # Then "exactly once" fails on them
    assert finding.outcome == "failed", finding.summary
    assert finding.observed["duplicated"] > 0


def test_a_frame_nested_too_deep_to_parse_is_a_frame_without_a_number_not_a_crash() -> None:
    # Given a hub whose first frame makes json.loads raise RecursionError
    observation = collaborate(Hub(first_frame=NESTED_FRAME), seq_of=seq_of)
    # Then the readers survived it and the conversation is judged on its merits
    assert all(c.closed is None for c in observation.clients)
    finding = sync.judge_collaboration(observation)
    assert finding.outcome == "passed", finding.summary


def test_a_reader_that_crashes_makes_the_check_an_error_never_every_event_lost() -> None:
    # Given a sequence reader that blows up on the first event it reads (a bug, or a frame it never expected)
    def exploding(event: Any) -> Any:
        raise ZeroDivisionError("boom")

    observation = collaborate(Hub(), seq_of=exploding)
    # Then the crash is recorded like a lost connection, and the judge cannot judge
    assert {c.closed for c in observation.clients} == {"reader crashed: ZeroDivisionError"}
    finding = sync.judge_collaboration(observation)
    assert finding.outcome == "error"
    assert "reader crashed: ZeroDivisionError" in finding.summary


def test_sequence_numbers_are_claimed_checked_only_when_some_event_carried_one() -> None:
    # Given a protocol without sequence numbers while the target names $.seq
    finding = sync.judge_collaboration(collaborate(Hub(seq=False), seq_of=seq_of))
    assert finding.outcome == "passed", finding.summary
    assert finding.evidence["seq_checked"] is False
    assert finding.evidence["seq_note"] == "no event carried $.seq: sequence numbers not checked"
    assert "no event carried $.seq" in finding.summary


def test_a_token_never_travels_over_plain_ws_to_another_host() -> None:
    async def work() -> sync.CollaborationObservation:
        return await sync.collaborate(
            "ws://app.example.test/sync", members(), ["edit"], compose, rounds=1, interval_ms=10, timeout_ms=100, options=OPTIONS
        )

    # Refused before any connection is attempted (the host does not even resolve)
    with pytest.raises(ProbeError, match=r"client 0 \(primary\) would send its token unencrypted over ws:// to app.example.test"):
        sync.run_blocking(work, 5.0)


def test_run_blocking_is_a_backstop_for_work_that_ignores_its_own_bounds() -> None:
    async def stuck() -> None:
        await asyncio.sleep(3600)

    with pytest.raises(ProbeTimeout, match="total budget of 0.1 s"):
        sync.run_blocking(stuck, 0.1)
    with pytest.raises(ProbeTimeout, match="deadline has passed"):
        sync.run_blocking(stuck, 0.0)
