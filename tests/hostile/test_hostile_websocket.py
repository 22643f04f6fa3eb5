"""Hostile WebSocket servers: silent after the upgrade, deaf to the close handshake, flooding, a 100 MB frame.

Each misbehaviour (tests/hostile/ws_servers.py) meets both kinds of checks that open WebSockets:

- pre-deploy ``security.websocket.message_size``: one connection with the valid token, a message
  one byte over ``websocket.max_message_bytes``, then it waits for the server's 1009 close;
- post-deploy ``business.collaboration`` and ``business.sync_latency``: two clients join the room a
  driver scenario prepared (a plain loopback HTTP service answers its one step), send actions,
  and wait for each other's events.

What they must do whatever the server does: end within the probe's budget (a close the server never
answers is bounded by close_timeout, then the socket is dropped), keep memory flat (frames queued
up to a bound, a frame above ``probe.max_body_bytes`` refused from its header), and conclude with
a clear cause. Where the server really did not do the job (it never delivered an event, it kept
an oversized message without closing), the check is ``failed``; where the probe had to give up on
the connection (a 100 MB frame), it is ``error``. Never pass, never promote.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import GateResult, assert_fails_closed, record_row, run_gate
from ws_servers import HUGE_FRAME_BYTES, Behaviour, HostileWs, hostile_ws

from loopback import LoopbackServer, Route, serve

DEADLINE_S = 40
TIMEOUT_S = 2
TOKENS = {"RG_HOSTILE_WS_TOKEN": "hostile-ws-primary-token", "RG_HOSTILE_WS_SECOND_TOKEN": "hostile-ws-second-token"}
GATES = f"""\
deadline_s: {DEADLINE_S}
probe: {{timeout_s: {TIMEOUT_S}, retry: {{timeout_s: 0}}}}
min_samples: {{business.sync_latency: 5}}
thresholds:
  collaboration: {{clients: 2, rounds: 1, interval_ms: 20, timeout_ms: 1000}}
  sync_latency: {{round_trips: 5, interval_ms: 20, timeout_ms: 1000}}
"""
DRIVER = """\
description: Opens the room both clients join.
outputs: [conversation_id]
steps:
  - name: open a room
    http: {method: GET, url: /room, as: primary}
    expect: {status: 200}
    save: {conversation_id: "$.id"}
"""
SYNC_CHECKS = ["business.collaboration", "business.sync_latency"]
SIZE_CHECKS = ["security.websocket.message_size"]
MAX_MESSAGE_BYTES = 1024


@pytest.fixture
def rooms() -> Iterator[LoopbackServer]:
    """The HTTP side the sync driver talks to: it hands out a room id, nothing hostile."""
    with serve({"/room": Route(200, {"id": "room-1"})}) as server:
        yield server


def _sync_target(folder: Path, ws: HostileWs, rooms: LoopbackServer) -> str:
    scenarios = folder / "scenarios"
    (scenarios / "drivers").mkdir(parents=True, exist_ok=True)
    (scenarios / "drivers" / "open_room.yaml").write_text(DRIVER, encoding="utf-8")
    return f"""\
name: hostile-ws
base_url: {rooms.base_url}
ws_url: {ws.url}
auth: {{token_env: RG_HOSTILE_WS_TOKEN, second_token_env: RG_HOSTILE_WS_SECOND_TOKEN}}
scenarios: {scenarios}
sync:
  setup: open_room
  url: "${{ws_url}}?conversation=${{conversation_id}}"
  actions:
    message: {{type: message, text: "hello ${{nonce}}"}}
    edit: {{type: edit, nonce: "${{nonce}}"}}
  latency_action: edit
  identities: [primary, second]
  seq_path: null
"""


def _size_target(ws: HostileWs) -> str:
    return f"""\
name: hostile-ws
base_url: http://127.0.0.1:9
ws_url: {ws.url}
websocket: {{max_message_bytes: {MAX_MESSAGE_BYTES}}}
auth: {{token_env: RG_HOSTILE_WS_TOKEN}}
"""


def _run_sync(folder: Path, behaviour: Behaviour, rooms: LoopbackServer) -> tuple[GateResult, HostileWs]:
    with hostile_ws(behaviour) as ws:
        result = run_gate(
            folder,
            target=_sync_target(folder, ws, rooms),
            gates=GATES,
            stage="post-deploy",
            only=["business.collaboration", "business.sync_latency"],
            env=TOKENS,
        )
    return result, ws


def _run_size(folder: Path, behaviour: Behaviour) -> tuple[GateResult, HostileWs]:
    with hostile_ws(behaviour) as ws:
        result = run_gate(folder, target=_size_target(ws), gates=GATES, stage="pre-deploy", only=SIZE_CHECKS, env=TOKENS)
    return result, ws


# --------------------------------------------------------------------------- 1. accepts the upgrade, then nothing


def test_sync_against_a_server_silent_after_the_upgrade(tmp_path: Path, rooms: LoopbackServer) -> None:
    # Given a server that accepts both clients and then never sends a frame nor answers a close
    result, ws = _run_sync(tmp_path, Behaviour.SILENT, rooms)

    # Then no event reached anyone: that is the target failing sync (failed), found within the budget
    assert ws.stats().upgraded >= 4  # two clients per check
    assert_fails_closed(result, affected=SYNC_CHECKS, deadline_s=DEADLINE_S, outcomes=("failed",), cause=r"lost")
    record_row("WebSocket", "silent after the upgrade (sync)", result, checks=SYNC_CHECKS, outcome="failed: every event lost")


def test_message_size_against_a_server_silent_after_the_upgrade(tmp_path: Path) -> None:
    # Given a server that takes an oversized message without a word (no 1009, no close)
    result, _ = _run_size(tmp_path, Behaviour.SILENT)

    # Then the limit is not enforced (failed), after one probe timeout, and the unanswered close does not hang the probe
    assert_fails_closed(result, affected=SIZE_CHECKS, deadline_s=DEADLINE_S, outcomes=("failed",), cause=r"stayed open")
    record_row("WebSocket", "silent after the upgrade (message size)", result, checks=SIZE_CHECKS, outcome="failed: no 1009 close")


# --------------------------------------------------------------------------- 2. answers, but never closes


def test_sync_against_a_server_that_ignores_the_close_handshake(tmp_path: Path, rooms: LoopbackServer) -> None:
    # Given a server that answers every action with a notice (none of ours) and ignores every close frame
    result, ws = _run_sync(tmp_path, Behaviour.NO_CLOSE, rooms)

    # Then events are lost (failed), the notice is in the evidence, and each close gave up after close_timeout
    assert ws.stats().close_frames_ignored >= 1
    assert_fails_closed(result, affected=SYNC_CHECKS, deadline_s=DEADLINE_S, outcomes=("failed",), cause=r"lost")
    record_row("WebSocket", "never closes (sync)", result, checks=SYNC_CHECKS, outcome="failed: every event lost")


def test_message_size_against_a_server_that_ignores_the_close_handshake(tmp_path: Path) -> None:
    # Given a server that answers the oversized message instead of closing, and ignores the probe's close
    result, ws = _run_size(tmp_path, Behaviour.NO_CLOSE)

    # Then the limit is not enforced (failed) and the probe did not wait on the close beyond close_timeout
    assert ws.stats().close_frames_ignored == 1
    assert_fails_closed(
        result, affected=SIZE_CHECKS, deadline_s=DEADLINE_S, outcomes=("failed",), cause=r"stayed open .* \(1 frames received\)"
    )
    record_row("WebSocket", "never closes (message size)", result, checks=SIZE_CHECKS, outcome="failed: answered, no 1009 close")


# --------------------------------------------------------------------------- 3. floods


def test_sync_against_a_flooding_server(tmp_path: Path, rooms: LoopbackServer) -> None:
    # Given a server that sends small frames as fast as the sockets take them, to every client
    result, ws = _run_sync(tmp_path, Behaviour.FLOOD, rooms)

    # Then the clients read (and count, not keep) the noise, none of their events arrives, and the run is bounded
    assert ws.stats().frames_sent > 10_000
    assert_fails_closed(result, affected=SYNC_CHECKS, deadline_s=DEADLINE_S, outcomes=("failed",), cause=r"lost")
    record_row("WebSocket", "floods frames (sync)", result, checks=SYNC_CHECKS, outcome="failed: every event lost in the noise")


def test_message_size_against_a_flooding_server(tmp_path: Path) -> None:
    # Given a server that floods frames instead of closing on the oversized message
    result, ws = _run_size(tmp_path, Behaviour.FLOOD)

    # Then the probe stops listening shortly after the first frame (no close follows), and fails the limit
    assert ws.stats().frames_sent > 1_000
    assert_fails_closed(result, affected=SIZE_CHECKS, deadline_s=DEADLINE_S, outcomes=("failed",), cause=r"stayed open")
    record_row("WebSocket", "floods frames (message size)", result, checks=SIZE_CHECKS, outcome="failed: no 1009 close")


# --------------------------------------------------------------------------- 4. a 100 MB frame


def test_sync_against_a_100_mb_frame(tmp_path: Path, rooms: LoopbackServer) -> None:
    # Given a server that announces a 100 MB text frame to every client and streams its payload
    result, ws = _run_sync(tmp_path, Behaviour.HUGE_FRAME, rooms)

    # Then each client refuses it from its header (1009, over probe.max_body_bytes): nothing could be judged
    assert ws.stats().bytes_sent < HUGE_FRAME_BYTES  # all connections together: nobody read a whole frame
    assert_fails_closed(result, affected=SYNC_CHECKS, deadline_s=DEADLINE_S, cause=r"1009")
    record_row("WebSocket", "100 MB frame (sync)", result, checks=SYNC_CHECKS, outcome="error: frame over the cap, closed 1009")


def test_message_size_against_a_100_mb_frame(tmp_path: Path) -> None:
    # Given a server that answers the upgrade with a 100 MB frame
    result, ws = _run_size(tmp_path, Behaviour.HUGE_FRAME)

    # Then the probe closes with 1009 itself, which says nothing about the server's limit: error
    assert ws.stats().bytes_sent < HUGE_FRAME_BYTES
    assert_fails_closed(result, affected=SIZE_CHECKS, deadline_s=DEADLINE_S, cause=r"the probe closed the connection itself \(1009\)")
    record_row("WebSocket", "100 MB frame (message size)", result, checks=SIZE_CHECKS, outcome="error: frame over the cap, closed 1009")
