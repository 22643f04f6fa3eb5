"""Conversations, participants, messages and the assistant's replies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ref_support import FakeClock, conversation, login, make_settings, running, wait_for
from starlette.testclient import TestClient

from releasegate.reference.assistant import Assistant


def _messages(client: TestClient, cid: str, auth: dict[str, str]) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/conversations/{cid}/messages", headers=auth)
    assert response.status_code == 200, response.text
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages


def _count(messages: list[dict[str, Any]], n: int) -> list[dict[str, Any]] | None:
    return messages if len(messages) == n else None


def test_conversation_is_created_and_read_by_its_owner(tmp_path: Path) -> None:
    with running(make_settings(tmp_path)) as client:
        auth = login(client)
        created = client.post("/api/v1/conversations", json={"title": "refactor"}, headers=auth)
        fetched = client.get(f"/api/v1/conversations/{created.json()['id']}", headers=auth)
        listed = client.get("/api/v1/conversations", headers=auth)
    assert created.status_code == 201
    assert {"id", "title", "owner", "participants", "created_at"} <= created.json().keys()
    assert created.json()["owner"] == "alice" and created.json()["participants"] == ["alice"]
    assert fetched.json()["id"] == created.json()["id"]
    assert [c["id"] for c in listed.json()["conversations"]] == [created.json()["id"]]


def test_only_participants_read_or_write_and_only_the_owner_adds(tmp_path: Path) -> None:
    with running(make_settings(tmp_path)) as client:
        alice, bob, carol = login(client, "alice"), login(client, "bob"), login(client, "carol")
        cid = conversation(client, alice)
        # Given bob outside alice's conversation, he can neither read nor write it
        assert client.get(f"/api/v1/conversations/{cid}", headers=bob).status_code == 403
        assert client.post(f"/api/v1/conversations/{cid}/messages", json={"text": "hi"}, headers=bob).status_code == 403
        # When alice adds him, he can
        assert client.post(f"/api/v1/conversations/{cid}/participants", json={"username": "bob"}, headers=alice).status_code == 200
        assert client.get(f"/api/v1/conversations/{cid}/messages", headers=bob).status_code == 200
        # But only the owner adds people
        assert client.post(f"/api/v1/conversations/{cid}/participants", json={"username": "carol"}, headers=bob).status_code == 403
        assert client.get(f"/api/v1/conversations/{cid}", headers=carol).status_code == 403
        # And unknown ids are 404, unknown users 422
        assert client.get("/api/v1/conversations/nope", headers=alice).status_code == 404
        assert client.post(f"/api/v1/conversations/{cid}/participants", json={"username": "eve"}, headers=alice).status_code == 422


def test_bad_bodies_are_client_errors(tmp_path: Path) -> None:
    with running(make_settings(tmp_path)) as client:
        auth = login(client)
        assert client.post("/api/v1/conversations", content=b"{not json", headers=auth).status_code == 400
        assert client.post("/api/v1/conversations", json=["title"], headers=auth).status_code == 422
        assert client.post("/api/v1/conversations", json={"title": ""}, headers=auth).status_code == 422


def test_message_gets_a_rule_based_assistant_reply(tmp_path: Path) -> None:
    with running(make_settings(tmp_path)) as client:
        auth = login(client)
        cid = conversation(client, auth)
        # When alice asks about sorting
        posted = client.post(f"/api/v1/conversations/{cid}/messages", json={"text": "How do I sort these users?"}, headers=auth)
        assert posted.status_code == 201 and posted.json()["seq"] == 1
        # Then the assistant answers after its think time with a sorted() snippet, in sequence
        messages = wait_for(lambda: _count(_messages(client, cid, auth), 2))
    assert [m["author"] for m in messages] == ["alice", "assistant"]
    assert [m["seq"] for m in messages] == [1, 2]
    assert "sorted(" in messages[1]["text"] and "```python" in messages[1]["text"]


def test_assistant_rules_are_deterministic() -> None:
    assistant = Assistant()
    assert "def test_" in assistant.suggest("write a test for this")
    assert assistant.suggest("anything else") == assistant.suggest("anything else")
    assert "```python" in assistant.suggest("anything else")
    assert Assistant(degraded=True).suggest("sort this") == ""


def test_fault_bad_model_replies_empty(tmp_path: Path) -> None:
    with running(make_settings(tmp_path, "bad-model")) as client:
        auth = login(client)
        cid = conversation(client, auth)
        client.post(f"/api/v1/conversations/{cid}/messages", json={"text": "sort"}, headers=auth)
        messages = wait_for(lambda: _count(_messages(client, cid, auth), 2))
    assert messages[1]["author"] == "assistant" and messages[1]["text"] == ""


def test_fault_stale_read_hides_recent_writes_from_reads(tmp_path: Path) -> None:
    wall = FakeClock(now=1_800_000_000.0)
    with running(make_settings(tmp_path, "stale-read", stale_read_s=5.0, think_time_s=60), wall=wall) as client:
        auth = login(client)
        cid = conversation(client, auth)
        client.post(f"/api/v1/conversations/{cid}/messages", json={"text": "hello"}, headers=auth)
        # Right after the write, reads do not see it
        assert _messages(client, cid, auth) == []
        assert client.get(f"/api/v1/conversations/{cid}", headers=auth).json()["message_count"] == 0
        # Five seconds later they do
        wall.advance(5.0)
        assert [m["text"] for m in _messages(client, cid, auth)] == ["hello"]


def test_healthy_reads_see_writes_at_once(tmp_path: Path) -> None:
    with running(make_settings(tmp_path, think_time_s=60)) as client:
        auth = login(client)
        cid = conversation(client, auth)
        client.post(f"/api/v1/conversations/{cid}/messages", json={"text": "hello"}, headers=auth)
        assert [m["text"] for m in _messages(client, cid, auth)] == ["hello"]
        assert client.get(f"/api/v1/conversations/{cid}", headers=auth).json()["message_count"] == 1


def test_a_completion_answers_the_prompt_in_the_response(tmp_path: Path) -> None:
    with running(make_settings(tmp_path)) as client:
        auth = login(client, "alice")
        answer = client.post("/api/v1/assistant/completions", json={"prompt": "how do I sort users?"}, headers=auth)
        refused = client.post("/api/v1/assistant/completions", json={"prompt": ""}, headers=auth)
        anonymous = client.post("/api/v1/assistant/completions", json={"prompt": "sort"})

    assert answer.status_code == 200 and "sorted(" in answer.json()["text"]
    assert refused.status_code == 422 and anonymous.status_code == 401


def test_a_degraded_model_completes_with_an_empty_suggestion(tmp_path: Path) -> None:
    with running(make_settings(tmp_path, "bad-model")) as client:
        answer = client.post("/api/v1/assistant/completions", json={"prompt": "sort"}, headers=login(client, "alice"))

    assert answer.status_code == 200 and answer.json()["text"] == ""
