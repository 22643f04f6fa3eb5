"""WebSocket sync: refusal before the upgrade, limits after it, and event fan-out."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from ref_support import FakeClock, conversation, login, make_settings, running
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from releasegate.reference.ws import origin_allowed


def _refused(client: TestClient, url: str, **kwargs: object) -> int:
    """The HTTP status of a refused upgrade (failing the test if the upgrade was accepted)."""
    with pytest.raises(WebSocketDenialResponse) as denied:
        with client.websocket_connect(url, **kwargs):  # type: ignore[arg-type]
            pass
    return denied.value.status_code


def test_upgrade_without_or_with_bad_credentials_is_401_before_accept(tmp_path: Path) -> None:
    with running(make_settings(tmp_path)) as client:
        assert _refused(client, "/ws/sync") == 401
        assert _refused(client, "/ws/sync", headers={"Authorization": "Bearer garbage"}) == 401
        assert _refused(client, "/ws/sync", subprotocols=["bearer", "garbage"]) == 401


def test_non_participant_is_403_and_unknown_conversation_404(tmp_path: Path) -> None:
    with running(make_settings(tmp_path)) as client:
        cid = conversation(client, login(client, "alice"))
        assert _refused(client, f"/ws/sync?conversation={cid}", headers=login(client, "bob")) == 403
        assert _refused(client, "/ws/sync?conversation=none", headers=login(client, "bob")) == 404


def test_browser_subprotocol_token_is_accepted_with_bearer_subprotocol(tmp_path: Path) -> None:
    with running(make_settings(tmp_path)) as client:
        token = login(client)["Authorization"].removeprefix("Bearer ")
        with client.websocket_connect("/ws/sync", subprotocols=["bearer", token]) as ws:
            assert ws.accepted_subprotocol == "bearer"


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://localhost", True),
        ("https://localhost:8443", True),
        ("http://localhost:8443", False),
        ("https://localhost.evil.test", False),
        ("https://evil.test", False),
        ("null", False),
        ("https://localhost:bad", False),
    ],
)
def test_origin_allowlist_matches_scheme_and_host_exactly(origin: str, allowed: bool) -> None:
    assert origin_allowed(origin, "localhost") is allowed


def test_foreign_origin_is_403_even_with_credentials(tmp_path: Path) -> None:
    with running(make_settings(tmp_path)) as client:
        auth = login(client)
        assert _refused(client, "/ws/sync", headers={**auth, "Origin": "https://evil.test"}) == 403
        with client.websocket_connect("/ws/sync", headers={**auth, "Origin": "https://localhost:9"}):
            pass


def test_connection_cap_per_user_refuses_with_429(tmp_path: Path) -> None:
    with running(make_settings(tmp_path, ws_max_connections_per_user=2)) as client:
        alice = login(client)
        with client.websocket_connect("/ws/sync", headers=alice), client.websocket_connect("/ws/sync", headers=alice):
            assert _refused(client, "/ws/sync", headers=alice) == 429
            with client.websocket_connect("/ws/sync", headers=login(client, "bob")):  # others are not affected
                pass
        with client.websocket_connect("/ws/sync", headers=alice):  # closed connections free their slot
            pass


def test_oversized_message_closes_1009(tmp_path: Path) -> None:
    with running(make_settings(tmp_path, ws_max_message_bytes=100)) as client:
        with client.websocket_connect("/ws/sync", headers=login(client)) as ws:
            ws.send_text("x" * 101)
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
    assert closed.value.code == 1009


def test_message_flood_closes_1008(tmp_path: Path) -> None:
    # Given a cap of 5 messages per second and a clock that does not move
    with running(make_settings(tmp_path, ws_max_messages_per_s=5.0), mono=FakeClock()) as client:
        auth = login(client)
        cid = conversation(client, auth)
        with client.websocket_connect(f"/ws/sync?conversation={cid}", headers=auth) as ws:
            # When six arrive, the first five are served and the sixth closes the connection
            for i in range(6):
                ws.send_json({"type": "typing", "nonce": i})
            seen = [ws.receive_json()["data"]["nonce"] for _ in range(5)]
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
    assert seen == [0, 1, 2, 3, 4]
    assert closed.value.code == 1008


def test_every_event_reaches_every_participant_once_in_order(tmp_path: Path) -> None:
    with running(make_settings(tmp_path, think_time_s=60)) as client:
        alice, bob, carol = login(client, "alice"), login(client, "bob"), login(client, "carol")
        cid = conversation(client, alice, "bob", "carol")
        url = f"/ws/sync?conversation={cid}"
        with client.websocket_connect(url, headers=alice) as a, client.websocket_connect(url, headers=bob) as b:
            with client.websocket_connect(url, headers=carol) as c:
                # When each kind of action happens, from different participants and over REST
                a.send_json({"type": "edit", "doc": "main.py", "ops": [{"insert": "x"}], "client_ts": 1, "nonce": "e1"})
                b.send_json({"type": "typing", "typing": True})
                c.send_json({"type": "presence", "status": "away"})
                client.post(f"/api/v1/conversations/{cid}/messages", json={"text": "hi"}, headers=bob)
                a.send_json({"type": "message", "text": "over the socket"})
                streams = [[ws.receive_json() for _ in range(5)] for ws in (a, b, c)]
    # Then all three clients see the same five events, once each, in one increasing sequence
    assert streams[0] == streams[1] == streams[2]
    events = streams[0]
    assert [e["type"] for e in events] == ["document.edit", "typing", "presence", "message.created", "message.created"]
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    assert [e["sender"] for e in events] == ["alice", "bob", "carol", "bob", "alice"]
    assert events[0]["data"] == {"doc": "main.py", "ops": [{"insert": "x"}], "client_ts": 1, "nonce": "e1"}
    assert all(e["conversation_id"] == cid and abs(e["server_ts"] / 1000 - time.time()) < 60 for e in events)


def test_unusable_messages_get_an_error_event_not_a_close(tmp_path: Path) -> None:
    with running(make_settings(tmp_path)) as client:
        with client.websocket_connect("/ws/sync", headers=login(client)) as ws:
            ws.send_text("not json")
            assert ws.receive_json()["type"] == "error"
            ws.send_json({"type": "typing"})  # no conversation to send it to
            assert "conversation" in ws.receive_json()["data"]["detail"]


def test_fault_ws_no_auth_accepts_anonymous_upgrades(tmp_path: Path) -> None:
    with running(make_settings(tmp_path, "ws-no-auth")) as client:
        cid = conversation(client, login(client))
        with client.websocket_connect(f"/ws/sync?conversation={cid}") as ws:
            ws.send_json({"type": "typing"})
            assert ws.receive_json()["sender"] == "anonymous"
        assert _refused(client, "/ws/sync", headers={"Origin": "https://evil.test"}) == 403  # origin still checked


def test_fault_ws_any_origin_accepts_foreign_origins(tmp_path: Path) -> None:
    with running(make_settings(tmp_path, "ws-any-origin")) as client:
        auth = login(client)
        with client.websocket_connect("/ws/sync", headers={**auth, "Origin": "https://evil.test"}):
            pass
        assert _refused(client, "/ws/sync", headers={"Origin": "https://evil.test"}) == 401  # credentials still needed


def test_fault_ws_no_size_limit_accepts_big_messages(tmp_path: Path) -> None:
    with running(make_settings(tmp_path, "ws-no-size-limit", ws_max_message_bytes=100)) as client:
        with client.websocket_connect("/ws/sync", headers=login(client)) as ws:
            ws.send_text("x" * 1000)
            assert ws.receive_json()["type"] == "error"  # judged as a message (not JSON), not closed


def test_fault_sync_drop_delivers_only_to_the_origin(tmp_path: Path) -> None:
    with running(make_settings(tmp_path, "sync-drop")) as client:
        alice, bob = login(client, "alice"), login(client, "bob")
        cid = conversation(client, alice, "bob")
        url = f"/ws/sync?conversation={cid}"
        with client.websocket_connect(url, headers=alice) as a, client.websocket_connect(url, headers=bob) as b:
            a.send_json({"type": "edit", "doc": "d", "text": "1", "nonce": "x"})
            assert a.receive_json()["data"]["nonce"] == "x"  # the sender's own echo still arrives
            b.send_json({"type": "edit", "doc": "d", "text": "2", "nonce": "y"})
            assert b.receive_json()["data"]["nonce"] == "y"  # bob got his own, never alice's


def test_fault_slow_sync_delays_delivery(tmp_path: Path) -> None:
    with running(make_settings(tmp_path, "slow-sync", slow_sync_ms=300)) as client:
        auth = login(client)
        cid = conversation(client, auth)
        with client.websocket_connect(f"/ws/sync?conversation={cid}", headers=auth) as ws:
            started = time.monotonic()
            ws.send_json({"type": "typing"})
            ws.receive_json()
            assert time.monotonic() - started >= 0.29
