"""Scenarios against the live reference deployment, and through the real gate.

One healthy reference service for the module (plus one with fault bad-model for the gate run
that proves business.scenario.conversation). Scenarios written here in tmp folders exercise
what the shipped ones cannot: a failing step's evidence, events claimed out of order, a
refused upgrade (failed) against a refused connection (error).
"""

from __future__ import annotations

import asyncio
import json
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loopback import refused_port
from releasegate.cli import main
from releasegate.config import LoadedTarget, load_target
from releasegate.probes.http import HttpSettings, ssl_context
from releasegate.reference.demo import PASSWORD_ENV, TOKEN_ENV, USER_ENV, DemoDeployment, running
from releasegate.scenarios import ScenarioSuite, load_scenarios, runner
from releasegate.scenarios.loader import LoadedScenario, load_folder

FAST_GATES = "probe: {timeout_s: 5, retry: {timeout_s: 0}}\n"
SHIPPED = ("collaboration", "conversation", "tool_run")

CREATE_AND_LISTEN = """\
steps:
  - name: create
    http: {method: POST, url: /api/v1/conversations, json: {title: "test ${run_id}"}}
    expect: {status: 201}
    save: {cid: "$.id"}
  - name: listen
    ws_connect: {connection: me, url: "${ws_url}?conversation=${cid}"}
"""


@pytest.fixture(scope="module")
def deployment() -> Iterator[DemoDeployment]:
    with running() as deployed:
        yield deployed


@pytest.fixture(scope="module")
def target(deployment: DemoDeployment) -> LoadedTarget:
    return load_target(deployment.target_path)


@pytest.fixture(scope="module")
def suite(target: LoadedTarget) -> ScenarioSuite:
    loaded = load_scenarios(target)
    assert loaded is not None
    return loaded


@pytest.fixture(scope="module")
def ctx(target: LoadedTarget) -> runner.RunContext:
    return runner.context_for(target, HttpSettings(timeout_s=5, max_body_bytes=1 << 20, verify=ssl_context(target.ca_bundle)))


def scenario(tmp_path: Path, text: str, name: str = "flow") -> LoadedScenario:
    (tmp_path / f"{name}.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    return load_folder(tmp_path).workflows[name]


def gate(deployment_target: Path, tmp_path: Path, *only: str, scenarios: Path | None = None) -> tuple[int, dict[str, Any]]:
    target = deployment_target
    if scenarios is not None:
        # The demo target without its business sections (they name the shipped drivers), pointing at our folder.
        text = deployment_target.read_text(encoding="utf-8")
        target = tmp_path / "target.yaml"
        target.write_text(text[: text.index("scenarios:")] + f"scenarios: {scenarios}\n", encoding="utf-8")
    gates = tmp_path / "gates.yaml"
    gates.write_text(FAST_GATES, encoding="utf-8")
    report = tmp_path / "report"
    code = main(["run", "--stage", "post-deploy", "--target", str(target), "--gates", str(gates), "--report-dir", str(report), *only])
    return code, json.loads((report / "verdict.json").read_text(encoding="utf-8"))


def test_the_shipped_workflows_pass_on_the_healthy_reference(suite: ScenarioSuite, ctx: runner.RunContext) -> None:
    outcomes = {name: runner.run_blocking(suite.workflows[name], ctx) for name in SHIPPED}

    assert {name: o.finding().outcome for name, o in outcomes.items()} == dict.fromkeys(SHIPPED, "passed")
    assert all(step.ok for o in outcomes.values() for step in o.steps)
    assert outcomes["collaboration"].saved["second_user"] != ""


def test_events_are_claimed_out_of_order_and_a_missing_one_shows_what_arrived(tmp_path: Path, ctx: runner.RunContext) -> None:
    # Given a scenario that waits for the assistant's reply before its own message's echo,
    # then for an event that never comes
    flow = scenario(
        tmp_path,
        CREATE_AND_LISTEN
        + """\
  - name: post
    http: {method: POST, url: "/api/v1/conversations/${cid}/messages", json: {text: "how to sort?"}}
    save: {mid: "$.id"}
  - name: reply first
    ws_expect: {connection: me, match: {"$.sender": assistant}}
  - name: then the echo, which arrived earlier
    ws_expect: {connection: me, match: {"$.data.id": "${mid}"}}
  - name: post again
    http: {method: POST, url: "/api/v1/conversations/${cid}/messages", json: {text: "thanks"}}
  - name: never
    ws_expect: {connection: me, match: {"$.type": no.such.event}, within_ms: 400}
""",
    )

    outcome = runner.run_blocking(flow, ctx)

    # Then the out-of-order steps pass, and the last one fails with the events it skipped
    assert [s.ok for s in outcome.steps] == [True] * 6 + [False]
    finding = outcome.finding()
    assert finding.outcome == "failed"
    failing = finding.evidence["failing_step"]
    assert failing["name"] == "never" and "no matching event within 400 ms" in failing["reason"]
    assert any('"thanks"' in event for event in failing["events_seen"])
    assert failing["expected"]["match"] == {"$.type": "no.such.event"}


def test_a_refused_upgrade_is_failed_but_a_refused_connection_is_error(tmp_path: Path, ctx: runner.RunContext) -> None:
    unknown_room = scenario(tmp_path, "steps:\n  - name: join\n    ws_connect: {connection: c, url: '${ws_url}?conversation=nope'}\n")

    refused = runner.run_blocking(unknown_room, ctx)
    closed = runner.run_blocking(
        unknown_room, runner.RunContext("https://127.0.0.1:1", f"wss://127.0.0.1:{refused_port()}/ws", ctx.tokens, ctx.http)
    )

    assert refused.finding().outcome == "failed"
    assert refused.failure is not None and refused.failure.response is not None and refused.failure.response["status"] == 404
    assert closed.finding().outcome == "error"
    assert closed.failure is not None and closed.failure.response is None
    assert closed.failure.reason.startswith("cannot connect")


def test_an_unreachable_service_is_error_not_failed(suite: ScenarioSuite, ctx: runner.RunContext) -> None:
    port = refused_port()
    elsewhere = runner.RunContext(f"https://127.0.0.1:{port}", f"wss://127.0.0.1:{port}/ws/sync", ctx.tokens, ctx.http)

    finding = runner.run_blocking(suite.workflows["conversation"], elsewhere).finding()

    assert finding.outcome == "error"
    assert "step 1 of 5 'start a conversation' (http) could not run: cannot connect" in finding.summary
    assert finding.evidence["failing_step"]["request"]["url"] == f"https://127.0.0.1:{port}/api/v1/conversations"
    assert "response" not in finding.evidence["failing_step"]


def test_a_driver_returns_its_outputs_or_fails_naming_the_step(tmp_path: Path, suite: ScenarioSuite, ctx: runner.RunContext) -> None:
    outputs = asyncio.run(runner.run_driver(suite, "post_marker", ctx, {"marker": "rg-marker-1"}))
    assert set(outputs) == {"conversation_id", "message_id"}

    (tmp_path / "drivers").mkdir()
    broken = "outputs: [user]\nsteps:\n  - name: who am i\n    http: {url: /api/v1/me}\n    expect: {status: 418}\n"
    (tmp_path / "drivers" / "broken.yaml").write_text(broken + "    save: {user: $.username}\n", encoding="utf-8")
    with pytest.raises(runner.DriverFailed) as caught:
        asyncio.run(runner.run_driver(load_folder(tmp_path), "broken", ctx, {}))
    assert str(caught.value) == "driver broken: step 1 'who am i' failed: status: expected 418, got 200"
    assert caught.value.outcome is not None and caught.value.evidence()["driver"]["failing_step"]["response"]["status"] == 200

    with pytest.raises(ValueError, match="needs the input marker"):
        asyncio.run(runner.run_driver(suite, "post_marker", ctx, {}))


# --------------------------------------------------------------------------- through the gate


def test_the_gate_runs_one_check_per_workflow_and_promotes(deployment: DemoDeployment, tmp_path: Path) -> None:
    code, verdict = gate(deployment.target_path, tmp_path, "--only", "business.scenario")

    assert code == 0 and verdict["decision"] == "promote"
    rows = {c["id"]: c for c in verdict["checks"]}
    assert {i: c["outcome"] for i, c in rows.items()} == {f"business.scenario.{n}": "passed" for n in SHIPPED}
    assert rows["business.scenario.tool_run"]["evidence"]["subject"] == "tool_run"


def test_a_failing_step_is_reported_with_request_and_response_and_never_the_token(
    deployment: DemoDeployment, tmp_path: Path, ctx: runner.RunContext
) -> None:
    folder = tmp_path / "scenarios"
    folder.mkdir()
    (folder / "checkout.yaml").write_text(
        "steps:\n  - name: who am i\n    http: {url: /api/v1/me, as: primary}\n    expect: {status: 200, json: {$.username: nobody}}\n",
        encoding="utf-8",
    )

    # The runner's own evidence holds no token (the gate's redactor would hide a leak in verdict.json)
    outcome = runner.run_blocking(load_folder(folder).workflows["checkout"], ctx)
    assert outcome.finding().outcome == "failed"
    assert outcome.failure is not None and outcome.failure.response is not None and outcome.failure.response["status"] == 200
    assert os.environ[TOKEN_ENV] not in json.dumps([outcome.evidence(), outcome.finding().summary, outcome.finding().observed])

    code, verdict = gate(deployment.target_path, tmp_path, "--only", "business.scenario", scenarios=folder)

    assert code == 1 and verdict["decision"] == "rollback"
    [row] = verdict["checks"]
    assert (row["id"], row["outcome"]) == ("business.scenario.checkout", "failed")
    failing = row["evidence"]["failing_step"]
    assert failing["request"] == {"method": "GET", "url": deployment_url(deployment) + "/api/v1/me", "as": "primary"}
    assert failing["response"]["status"] == 200 and '"username"' in failing["response"]["body_excerpt"]
    assert row["observed"] == ["$.username: expected 'nobody', got 'alice'"]
    assert os.environ[TOKEN_ENV] not in (tmp_path / "report" / "verdict.json").read_text(encoding="utf-8")


LOGIN = """\
inputs: {{user: "{user}", password: "{password}"}}
steps:
  - name: log in
    http: {{method: POST, url: /api/v1/auth/login, as: anonymous, json: {{username: "${{user}}", password: "${{password}}"}}}}
    expect: {{status: {status}}}
    save: {{access_token: "$.access_token", kind: "$.token_type"}}
"""


def login_flow(tmp_path: Path, *, status: int, then: str = "") -> LoadedScenario:
    text = LOGIN.format(user=os.environ[USER_ENV], password=os.environ[PASSWORD_ENV], status=status) + then
    (tmp_path / "login.yaml").write_text(text, encoding="utf-8")
    return load_folder(tmp_path).workflows["login"]


def test_a_token_saved_during_a_run_never_reaches_the_evidence(tmp_path: Path, ctx: runner.RunContext) -> None:
    # Given a scenario that logs in, saves the token, then puts it in a URL and a header of a failing step
    flow = login_flow(
        tmp_path,
        status=200,
        then=(
            "  - name: use it where it shows\n"
            '    http: {url: "/api/v1/me?debug=${access_token}", as: anonymous, headers: {X-Trace: "${access_token}"}}\n'
            "    expect: {status: 418}\n"
        ),
    )
    outcome = runner.run_blocking(flow, ctx)
    # Then the second step failed, and neither its URL, its headers nor anything else shows the token
    assert outcome.failure is not None and outcome.failure.index == 1
    token = outcome.saved["access_token"]
    shown = json.dumps([outcome.evidence(), outcome.finding().summary, outcome.finding().observed])
    assert token not in shown and token[8:30] not in shown
    request = outcome.failure.request
    assert request is not None and request["url"].endswith("/api/v1/me?debug=[redacted:access_token]")
    assert request["headers"] == {"X-Trace": "[redacted:access_token]"}
    # ... and a later run in the same context still knows it
    assert ("access_token", token) in ctx.learned
    assert ("kind", "Bearer") not in ctx.learned  # only variables named like credentials


def test_a_token_saved_under_an_innocent_name_is_still_redacted(tmp_path: Path, ctx: runner.RunContext) -> None:
    # Given a login whose token is saved as "sid" (from $.access_token), then shown in a failing step's URL
    text = LOGIN.format(user=os.environ[USER_ENV], password=os.environ[PASSWORD_ENV], status=200).replace(
        'access_token: "$.access_token"', 'sid: "$.access_token"'
    )
    text += '  - name: use it\n    http: {url: "/api/v1/me?debug=${sid}", as: anonymous}\n    expect: {status: 418}\n'
    (tmp_path / "login.yaml").write_text(text, encoding="utf-8")
    outcome = runner.run_blocking(load_folder(tmp_path).workflows["login"], ctx)
    # Then where it came from marks it a credential: the evidence shows no piece of it
    token = outcome.saved["sid"]
    assert outcome.failure is not None and token not in json.dumps(outcome.evidence())
    assert ("sid", token) in ctx.learned


def test_a_failing_login_step_shows_neither_the_password_it_sent_nor_the_token_it_got(tmp_path: Path, ctx: runner.RunContext) -> None:
    outcome = runner.run_blocking(login_flow(tmp_path, status=201), ctx)
    assert outcome.failure is not None and outcome.failure.problems == ("status: expected 201, got 200",)
    request, response = outcome.failure.request, outcome.failure.response
    assert request is not None and response is not None
    # (the key itself may be scrubbed too: the demo's password contains the word)
    assert request["body_excerpt"].startswith('{"username": "alice", "') and request["body_excerpt"].endswith('": "[redacted]"}')
    assert '"access_token":"[redacted]"' in response["body_excerpt"].replace(" ", "")
    assert os.environ[PASSWORD_ENV] not in json.dumps(outcome.evidence())


def deployment_url(deployment: DemoDeployment) -> str:
    return load_target(deployment.target_path).target.base_url


def test_bad_model_fails_only_the_conversation_workflow(tmp_path: Path) -> None:
    with running(["bad-model"]) as broken:
        code, verdict = gate(broken.target_path, tmp_path, "--only", "business.scenario")

    assert code == 1 and verdict["decision"] == "rollback"
    outcomes = {c["id"]: c["outcome"] for c in verdict["checks"]}
    assert outcomes == {
        "business.scenario.conversation": "failed",
        "business.scenario.tool_run": "passed",
        "business.scenario.collaboration": "passed",
    }


def test_a_target_without_scenarios_collects_no_scenario_check(deployment: DemoDeployment, tmp_path: Path) -> None:
    text = deployment.target_path.read_text(encoding="utf-8")
    target = tmp_path / "bare.yaml"
    target.write_text(text[: text.index("scenarios:")], encoding="utf-8")

    code, verdict = gate(target, tmp_path, "--only", "business.scenario")

    # Not a misconfigured suite (exit 3): simply nothing to judge, so the gate holds.
    assert (code, verdict["exit_code"], verdict["checks"]) == (2, 2, [])
    assert any("no checks ran" in reason for reason in verdict["reasons"])


def test_a_broken_scenario_file_stops_the_run_with_exit_3_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "scenarios"
    folder.mkdir()
    broken = folder / "flow.yaml"
    broken.write_text("steps:\n  - name: post\n    http: {method: POST, url: '/c/${cid}/messages'}\n", encoding="utf-8")
    target = tmp_path / "target.yaml"
    target.write_text(f"name: t\nbase_url: https://127.0.0.1:{refused_port()}\nscenarios: {folder}\n", encoding="utf-8")
    gates = tmp_path / "gates.yaml"
    gates.write_text(FAST_GATES, encoding="utf-8")

    code = main(["run", "--stage", "post-deploy", "--target", str(target), "--gates", str(gates), "--report-dir", str(tmp_path / "r")])

    assert code == 3
    assert f"{broken}:3: key 'steps[0].http.url' undefined variable ${{cid}}" in capsys.readouterr().err


def test_a_wait_cut_short_by_the_run_budget_is_error_not_failed(tmp_path: Path, ctx: runner.RunContext) -> None:
    # Given a wait of 5 s, but only half a second left for the whole scenario
    flow = scenario(tmp_path, CREATE_AND_LISTEN + "  - name: wait\n    ws_expect: {connection: me, match: {$.type: never}}\n")

    outcome = runner.run_blocking(flow, ctx, deadline_s=0.5)

    # Then nothing was judged: the gate must hold, not roll back on a missing event
    finding = outcome.finding()
    assert finding.outcome == "error"
    assert "budget ran out" in finding.evidence["failing_step"]["reason"]
