"""Tool runs through the worker queue: queued -> finished, by polling and over the WebSocket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ref_support import conversation, login, make_settings, running, wait_for

from releasegate.reference.tools import count_tests, format_code, lint

SNIPPET = "import os\n\ndef test_one():\n\tassert 1 == 1\n    assert True   \n"


def test_lint_finds_tabs_trailing_space_long_lines_and_unused_names() -> None:
    codes = {issue["code"] for issue in lint(SNIPPET + "x = '" + "a" * 120 + "'\n")["issues"]}
    assert codes == {"F841", "W191", "W291", "E501"}
    assert lint("value = 1\nprint(value)\n") == {"ok": True, "issues": []}


def test_format_normalises_whitespace() -> None:
    result = format_code("def f():\n\treturn 1   \n\n\n\n\nx = 1")
    assert result == {"changed": True, "code": "def f():\n    return 1\n\n\nx = 1\n"}
    assert format_code(result["code"])["changed"] is False


def test_test_tool_counts_without_running() -> None:
    assert count_tests(SNIPPET + "import sys; sys.exit(1)\n") == {"collected": 1, "tests": ["test_one"], "asserts": 2, "executed": False}


def test_tool_run_finishes_and_is_polled(tmp_path: Path) -> None:
    with running(make_settings(tmp_path)) as client:
        auth = login(client)
        cid = conversation(client, auth)
        accepted = client.post(f"/api/v1/conversations/{cid}/tools", json={"tool": "test", "code": SNIPPET}, headers=auth)
        assert accepted.status_code == 202
        assert accepted.json()["status"] == "queued"
        run_url = f"/api/v1/tool-runs/{accepted.json()['run_id']}"
        assert accepted.headers["location"] == run_url

        def finished() -> dict[str, Any] | None:
            run: dict[str, Any] = client.get(run_url, headers=auth).json()
            return run if run["status"] == "finished" else None

        run = wait_for(finished)
        # strangers may not read the run
        assert client.get(run_url, headers=login(client, "bob")).status_code == 403
    assert run["result"] == {"tool": "test", "collected": 1, "tests": ["test_one"], "asserts": 2, "executed": False}
    assert run["finished_at"] is not None


def test_tool_result_is_pushed_over_websocket(tmp_path: Path) -> None:
    with running(make_settings(tmp_path)) as client:
        alice, bob = login(client, "alice"), login(client, "bob")
        cid = conversation(client, alice, "bob")
        with client.websocket_connect(f"/ws/sync?conversation={cid}", headers=bob) as ws:
            run_id = client.post(f"/api/v1/conversations/{cid}/tools", json={"tool": "lint", "code": "x = 1\n"}, headers=alice).json()[
                "run_id"
            ]
            event = ws.receive_json()
    assert event["type"] == "tool.finished" and event["sender"] == "alice"
    assert event["data"]["run_id"] == run_id and event["data"]["status"] == "finished"
    assert event["data"]["result"]["issues"][0]["code"] == "F841"


def test_unknown_tool_is_422_and_unknown_run_404(tmp_path: Path) -> None:
    with running(make_settings(tmp_path)) as client:
        auth = login(client)
        cid = conversation(client, auth)
        assert client.post(f"/api/v1/conversations/{cid}/tools", json={"tool": "rm", "code": ""}, headers=auth).status_code == 422
        assert client.get("/api/v1/tool-runs/none", headers=auth).status_code == 404


def test_fault_worker_stuck_leaves_runs_queued_and_health_warns(tmp_path: Path) -> None:
    with running(make_settings(tmp_path, "worker-stuck")) as client:
        auth = login(client)
        cid = conversation(client, auth)
        run_id = client.post(f"/api/v1/conversations/{cid}/tools", json={"tool": "lint", "code": ""}, headers=auth).json()["run_id"]
        run = client.get(f"/api/v1/tool-runs/{run_id}", headers=auth).json()
        health = client.get("/health")
    assert run["status"] == "queued"
    assert health.status_code == 200 and health.json()["status"] == "warn"
    worker = health.json()["checks"]["worker:queue"][0]
    assert worker["status"] == "warn" and worker["observedValue"] == 1


def test_runs_left_queued_are_resumed_at_the_next_start(tmp_path: Path) -> None:
    # Given a run left queued by a stuck worker
    with running(make_settings(tmp_path, "worker-stuck")) as client:
        auth = login(client)
        cid = conversation(client, auth)
        run_id = client.post(f"/api/v1/conversations/{cid}/tools", json={"tool": "format", "code": "x=1"}, headers=auth).json()["run_id"]
    # When the service starts again on the same data without the fault, the run finishes
    with running(make_settings(tmp_path)) as client:
        auth = login(client)
        run = wait_for(lambda: (r := client.get(f"/api/v1/tool-runs/{run_id}", headers=auth).json())["status"] == "finished" and r)
    assert run["result"]["code"] == "x=1\n"
