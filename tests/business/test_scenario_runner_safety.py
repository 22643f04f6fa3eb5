"""The scenario runner facing a hostile service or a risky scenario, without the reference service.

Small loopback servers (HTTP from tests/loopback.py, one WebSocket server started here) answer
what a broken or hostile deployment might: JSON nested past the interpreter's recursion limit.
Scenarios that would send a token where it does not belong, or act as an identity without a
token, must stop with a step error before any request leaves: the reasons say so.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from loopback import LoopbackServer, Route, refused_port
from loopback import serve as serve_http
from releasegate.config import LoadedTarget, Target
from releasegate.probes.http import HttpSettings
from releasegate.scenarios import runner
from releasegate.scenarios.loader import LoadedScenario, load_folder

HTTP = HttpSettings(timeout_s=2, max_body_bytes=1 << 20, verify=False)
TOKEN = "tok-primary-0123456789abcdef"
DEEP = "[" * 100_000 + "]" * 100_000  # json.loads raises RecursionError, not ValueError


def scenario(tmp_path: Path, text: str, name: str = "flow") -> LoadedScenario:
    (tmp_path / f"{name}.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    return load_folder(tmp_path).workflows[name]


def context(base_url: str, ws_url: str | None = None, **tokens: str | None) -> runner.RunContext:
    given: dict[str, str | None] = {"primary": TOKEN, "second": None, "anonymous": None, **tokens}
    problems = {name: f"acts as {name} but auth.second_token_env is not set" for name, value in given.items() if value is None}
    problems.pop("anonymous")
    return runner.RunContext(base_url, ws_url, given, HTTP, secrets=(TOKEN,), token_problems=problems)


def failing_step(outcome: runner.ScenarioOutcome) -> dict[str, Any]:
    evidence = outcome.evidence()
    assert TOKEN not in json.dumps(evidence)
    failing: dict[str, Any] = evidence["failing_step"]
    return failing


@pytest.fixture(scope="module")
def hostile() -> Iterator[LoopbackServer]:
    routes: dict[str, Any] = {"/deep": Route(200, DEEP, content_type="application/json"), "/ok": Route(200, {"ok": True})}
    with serve_http(routes) as server:
        yield server


# --- hostile answers ----------------------------------------------------------------------------


def test_a_body_nested_past_the_recursion_limit_fails_the_step_instead_of_crashing(tmp_path: Path, hostile: LoopbackServer) -> None:
    flow = scenario(
        tmp_path,
        """\
        steps:
          - name: read the deep body
            http: {url: /deep, as: anonymous}
            expect: {json: {"$[0]": 1}}
        """,
    )
    outcome = runner.run_blocking(flow, context(hostile.base_url))
    failing = failing_step(outcome)
    assert (failing["kind"], failing["problems"]) == (
        "failed",
        ["body: not JSON ('the JSON is nested too deeply to read'), so $[0] cannot be checked"],
    )


def test_saving_from_a_body_nested_past_the_recursion_limit_fails_the_step(tmp_path: Path, hostile: LoopbackServer) -> None:
    flow = scenario(tmp_path, "steps:\n  - name: save\n    http: {url: /deep, as: anonymous}\n    save: {x: '$[0]'}\n")
    failing = failing_step(runner.run_blocking(flow, context(hostile.base_url)))
    assert failing["reason"] == "cannot save x: the body is not JSON (the JSON is nested too deeply to read)"


def test_a_websocket_frame_nested_past_the_recursion_limit_is_an_unclaimed_non_json_event(tmp_path: Path) -> None:
    flow = scenario(
        tmp_path,
        """\
        steps:
          - name: join
            ws_connect: {connection: c, url: "${ws_url}", as: anonymous}
          - name: the event after the hostile one
            ws_expect: {connection: c, match: {"$.type": ok}, within_ms: 2000}
        """,
    )

    async def handler(socket: ServerConnection) -> None:
        await socket.send(DEEP)
        await socket.send('{"type": "ok"}')
        await asyncio.sleep(2)

    async def go() -> runner.ScenarioOutcome:
        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            return await runner.run_scenario(flow, context(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/"))

    outcome = asyncio.run(go())
    assert outcome.passed, outcome.evidence()


def test_anything_unexpected_while_judging_is_a_step_error_not_a_traceback(
    tmp_path: Path, hostile: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: object) -> list[str]:
        raise RuntimeError("the judge tripped")

    monkeypatch.setattr(runner, "check_answer", boom)
    flow = scenario(tmp_path, "steps:\n  - name: read\n    http: {url: /ok, as: anonymous}\n")
    outcome = runner.run_blocking(flow, context(hostile.base_url))
    assert outcome.finding().outcome == "error"
    assert failing_step(outcome)["reason"] == "the step could not be judged: RuntimeError: the judge tripped"


# --- where the token may go ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "reason"),
    [
        ("http: {url: 'http://example.com/x', as: primary}", "the step would send the token in clear to example.com (http://)"),
        (
            "ws_connect: {connection: c, url: 'ws://example.com/ws', as: primary}",
            "the step would send the token in clear to example.com (ws://)",
        ),
        ("http: {url: 'https://example.com/x'}", "the step would send the token to example.com, which is neither the target's base_url"),
        ("ws_connect: {connection: c, url: 'wss://example.com/ws'}", "the step would send the token to example.com, which is neither"),
        ("http: {url: /x, as: second}", "the step acts as second but auth.second_token_env is not set"),
    ],
    ids=["http-clear", "ws-clear", "http-other-origin", "ws-other-origin", "second-without-token"],
)
def test_a_token_that_would_leave_the_target_or_go_missing_stops_the_step(tmp_path: Path, step: str, reason: str) -> None:
    flow = scenario(tmp_path, f"steps:\n  - name: risky\n    {step}\n")
    port = refused_port()
    outcome = runner.run_blocking(flow, context(f"https://127.0.0.1:{port}", f"wss://127.0.0.1:{port}/ws"))
    assert outcome.finding().outcome == "error"
    assert failing_step(outcome)["reason"].startswith(reason)


def test_an_explicit_identity_may_send_its_token_to_another_https_origin(tmp_path: Path) -> None:
    # Given a step that names `as:` for a URL on another origin (here: another port on loopback)
    other = refused_port()
    flow = scenario(tmp_path, f"steps:\n  - name: replica\n    http: {{url: 'https://127.0.0.1:{other}/x', as: primary}}\n")
    outcome = runner.run_blocking(flow, context(f"https://127.0.0.1:{refused_port()}"))
    # Then the request was attempted (nothing listens there), not refused by the runner
    assert failing_step(outcome)["reason"].startswith("cannot connect")


def test_the_same_target_over_its_ws_url_origin_and_anonymous_requests_anywhere_are_fine(tmp_path: Path, hostile: LoopbackServer) -> None:
    flow = scenario(tmp_path, f"steps:\n  - name: elsewhere\n    http: {{url: '{hostile.url('/ok')}', as: anonymous}}\n")
    assert runner.run_blocking(flow, context(f"https://127.0.0.1:{refused_port()}")).passed
    own = scenario(tmp_path, "steps:\n  - name: own\n    http: {url: /ok}\n", name="own")
    # The ws_url names the server's origin (ws:// is http://'s origin), the base_url another one
    assert runner.run_blocking(own, context(hostile.base_url, hostile.base_url.replace("http:", "ws:") + "/ws")).passed


def test_a_primary_identity_whose_variable_is_empty_is_an_error_not_an_anonymous_request(
    tmp_path: Path, hostile: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a target whose token variable exists but is empty (set after the target was loaded)
    monkeypatch.setenv("RG_TEST_EMPTY_TOKEN", "")
    target = LoadedTarget(
        Target.model_validate({"name": "t", "base_url": hostile.base_url, "auth": {"token_env": "RG_TEST_EMPTY_TOKEN"}}),
        tmp_path / "t.yaml",
    )
    assert runner.missing_token_problem("primary", target) == (
        "acts as primary but auth.token_env names RG_TEST_EMPTY_TOKEN, an empty or unset environment variable"
    )
    assert runner.missing_token_problem("second", target) == "acts as second but auth.second_token_env is not set"
    assert runner.missing_token_problem("anonymous", target) is None
    # When a step acts as primary
    flow = scenario(tmp_path, "steps:\n  - name: who am i\n    http: {url: /ok}\n")
    before = len(hostile.requests)
    outcome = runner.run_blocking(flow, runner.context_for(target, HTTP))
    # Then it is an error naming the variable, and nothing was sent
    assert outcome.finding().outcome == "error"
    assert failing_step(outcome)["reason"] == (
        "the step acts as primary but auth.token_env names RG_TEST_EMPTY_TOKEN, an empty or unset environment variable"
    )
    assert len(hostile.requests) == before
