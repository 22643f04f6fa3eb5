"""`releasegate serve`: real HTTP requests on loopback, in the shapes Flagger and Argo Rollouts send.

Flagger (pkg/controller/webhook.go) POSTs `{name, namespace, phase, checksum, metadata}` as
application/json and counts 200-202 as success; Argo's Web provider GETs (or POSTs its
`jsonBody`) with the template's headers and reads the JSON answer through `jsonPath`. The gate
behind the server is either the real one against the reference deployment (a fast post-deploy
selection, a few seconds a run) or a stand-in script whose behaviour a test controls.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from releasegate.cli import main
from releasegate.serve import (
    GateOutcome,
    GateServer,
    ServeSettings,
    flagger_status,
    interpret,
    only_patterns,
    parse_listen,
)

SUITE = Path(__file__).resolve().parents[2]
GO_AGENT = "Go-http-client/1.1"  # what both controllers' net/http clients send
SERVER_TOKEN = "serve-token-0123456789abcdef"
METADATA_SECRET = "flagger-metadata-secret-9f8e7d"

# A stand-in for `python -m releasegate run`: told by a plan file what verdict to write, it can
# wait (bounded) for a release file, so a test decides when the "run" ends.
FAKE_GATE = """\
import json, os, sys, time
plan_path, stage, run_dir = sys.argv[1], sys.argv[2], sys.argv[3]
plan = json.load(open(plan_path))
with open(os.path.join(os.path.dirname(plan_path), "started"), "a") as f:
    f.write(f"{os.getpid()} {stage} {' '.join(sys.argv[4:])}\\n")
deadline = time.monotonic() + plan.get("max_wait_s", 20)
while plan.get("wait_for") and not os.path.exists(plan["wait_for"]) and time.monotonic() < deadline:
    time.sleep(0.05)
decision = plan.get("decision", "promote")
code = {"pass": 0, "promote": 0, "rollback": 1, "hold": 2}[decision]
if plan.get("verdict", True):
    verdict = {"schema": "releasegate.verdict/v1", "stage": stage, "target": "fake", "decision": decision,
               "exit_code": code, "reasons": plan.get("reasons", [f"fake gate: {decision}"]), "checks": [],
               "counts": {"passed": 1}, "dry_run": False}
    json.dump(verdict, open(os.path.join(run_dir, "verdict.json"), "w"))
sys.exit(plan.get("exit", code))
"""


# --------------------------------------------------------------------------- helpers


class Answer:
    def __init__(self, status: int, headers: dict[str, str], raw: bytes) -> None:
        self.status, self.headers, self.raw = status, headers, raw
        self.body: dict[str, Any] = json.loads(raw) if raw else {}


def request(
    server: GateServer,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 90.0,
) -> Answer:
    host, port = str(server.server_address[0]), int(server.server_address[1])
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers={"User-Agent": GO_AGENT, "Accept-Encoding": "gzip", **(headers or {})})
        response = connection.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


def flagger_hook(server: GateServer, stage: str, *, metadata: dict[str, str] | None = None, checksum: str = "85d557f47b") -> Answer:
    """What Flagger's callWebhook sends: a JSON POST of the canary's identity and the hook's metadata."""
    payload = {"name": "podinfo", "namespace": "test", "phase": "Progressing", "checksum": checksum, "metadata": metadata or {}}
    return request(server, "POST", f"/flagger/{stage}", body=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Any]:
    servers: list[GateServer] = []
    threads: list[threading.Thread] = []

    def start(target: Path, gates: Path, *, command: Any = None, token: str | None = None, **overrides: Any) -> GateServer:
        settings = ServeSettings(
            target=target,
            gates=gates,
            suite=SUITE,
            report_root=tmp_path / f"reports-{len(servers)}",
            target_name="under-test",
            max_run_s=overrides.pop("max_run_s", 90.0),
            lock_wait_s=overrides.pop("lock_wait_s", 10.0),
            token=token,
            token_env="RELEASEGATE_SERVE_TOKEN" if token else None,
            **overrides,
        )
        logs: list[str] = []
        server = GateServer(("127.0.0.1", 0), settings, command=command, log=logs.append)
        server.logs = logs  # type: ignore[attr-defined]
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        servers.append(server)
        threads.append(thread)
        return server

    yield start
    for server in servers:
        server.shutdown_all()
    for thread in threads:
        thread.join(timeout=30)


@pytest.fixture
def fake_gate(tmp_path: Path) -> Any:
    """A command builder running FAKE_GATE with a plan the test writes."""
    folder = tmp_path / "fake"
    folder.mkdir()
    script = folder / "gate.py"
    script.write_text(FAKE_GATE, encoding="utf-8")
    plan_path = folder / "plan.json"

    class Fake:
        release = folder / "release"
        started = folder / "started"

        def plan(self, **plan: Any) -> None:
            plan_path.write_text(json.dumps(plan), encoding="utf-8")

        def command(self, stage: str, only: Sequence[str], run_dir: Path) -> list[str]:
            return [sys.executable, str(script), str(plan_path), stage, str(run_dir), *only]

        def wait_started(self, count: int = 1, timeout_s: float = 20.0) -> list[str]:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                lines = self.started.read_text().splitlines() if self.started.exists() else []
                if len(lines) >= count:
                    return lines
                time.sleep(0.05)
            raise AssertionError("the fake gate never started")

    fake = Fake()
    fake.plan(decision="promote")
    return fake


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    target = tmp_path / "target.yaml"
    target.write_text("name: unit\nbase_url: http://127.0.0.1:9\n", encoding="utf-8")
    gates = tmp_path / "gates.yaml"
    gates.write_text("version: 1\n", encoding="utf-8")
    return target, gates


def wait_until(predicate: Any, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


# --------------------------------------------------------------------------- the real gate, via the reference deployment


def test_flagger_and_argo_on_a_healthy_deployment_get_success(start_server: Any) -> None:
    from releasegate.reference.demo import running

    with running() as demo:
        server = start_server(demo.target_path, demo.gates_path)

        # Given Flagger's pre-rollout hook with a fast selection in its metadata (and a secret there,
        # as Flagger users put tokens in metadata)
        answer = flagger_hook(server, "post-deploy", metadata={"only": "health.liveness", "token": METADATA_SECRET})
        # Then 200, the decision in the body, and the canary named back; the metadata never is
        assert answer.status == 200, answer.body
        assert answer.body["decision"] == "promote" and answer.body["success"] is True and answer.body["exit_code"] == 0
        assert answer.body["flagger"] == {"name": "podinfo", "namespace": "test", "phase": "Progressing", "checksum": "85d557f47b"}
        assert METADATA_SECRET not in answer.raw.decode()
        assert Path(answer.body["report_dir"], "verdict.json").is_file()

        # And Argo's Web provider, a GET with the template's headers, reads success from the JSON
        argo = request(server, "GET", "/argo/post-deploy?only=health.liveness", headers={"Accept": "application/json"})
        assert argo.status == 200
        assert {"decision", "exit_code", "success", "reasons", "stage", "target", "report_dir"} <= set(argo.body)
        assert argo.body["decision"] == "promote" and argo.body["success"] is True
        assert argo.body["stage"] == "post-deploy" and argo.body["target"] == "reference-demo"


def test_a_broken_deployment_is_a_non_2xx_for_flagger_and_a_rollback_for_argo(start_server: Any) -> None:
    from releasegate.reference.demo import running

    with running(["liveness-fail"]) as demo:
        server = start_server(demo.target_path, demo.gates_path)

        answer = flagger_hook(server, "post-deploy", metadata={"only": "health.liveness"}, checksum="rev-2")
        assert answer.status == 412, answer.body  # rollback: a 4xx, so Flagger's retries do not rerun the gate
        assert answer.body["decision"] == "rollback" and answer.body["success"] is False
        assert any("health.liveness" in reason for reason in answer.body["reasons"])

        # Flagger's rollback hook now signals a rollback for this revision, and only for it
        same = request(
            server, "POST", "/flagger/rollback", body=json.dumps({"name": "podinfo", "namespace": "test", "checksum": "rev-2"}).encode()
        )
        other = request(
            server, "POST", "/flagger/rollback", body=json.dumps({"name": "podinfo", "namespace": "test", "checksum": "rev-3"}).encode()
        )
        assert same.status == 200 and same.body["rollback"] is True
        assert other.status == 409 and other.body["rollback"] is False

        # Argo's Web provider with method POST and a jsonBody: 200, success false, decision rollback
        argo = request(
            server,
            "POST",
            "/argo/post-deploy?only=health.liveness",
            body=json.dumps({"canary": "podinfo"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        assert argo.status == 200
        assert argo.body["decision"] == "rollback" and argo.body["success"] is False and argo.body["exit_code"] == 1


def test_flaggers_confirm_promotion_runs_the_canary_stage_and_its_rollback_hook_follows(start_server: Any) -> None:
    from releasegate.reference.demo import running_canary

    # Given a baseline and a canary that answers 300 ms late (the demo's fast canary policy)
    with running_canary(["slow-api"]) as demo:
        server = start_server(demo.target_path, demo.gates_path)

        # When Flagger's confirm-promotion hook asks
        answer = flagger_hook(server, "canary", checksum="rev-slow")

        # Then the statistical comparison rolls back: a 4xx with the judge's reason and samples.json
        assert answer.status == 412, answer.body
        assert answer.body["decision"] == "rollback" and answer.body["stage"] == "canary"
        assert any("http_latency" in reason for reason in answer.body["reasons"])
        assert Path(answer.body["report_dir"], "samples.json").is_file()
        # And Flagger's rollback hook turns it into a rollback of this revision
        hook = request(
            server, "POST", "/flagger/rollback", body=json.dumps({"name": "podinfo", "namespace": "test", "checksum": "rev-slow"}).encode()
        )
        assert hook.status == 200 and hook.body["rollback"] is True


# --------------------------------------------------------------------------- runs: one at a time, bounded, fail closed


def test_a_second_request_waits_for_the_lock_then_gets_503_with_retry_after(
    start_server: Any, fake_gate: Any, files: tuple[Path, Path]
) -> None:
    fake_gate.plan(decision="promote", wait_for=str(fake_gate.release))
    server = start_server(*files, command=fake_gate.command, lock_wait_s=0.3)
    first: list[Answer] = []
    thread = threading.Thread(target=lambda: first.append(flagger_hook(server, "canary")), daemon=True)
    thread.start()
    fake_gate.wait_started()
    assert request(server, "GET", "/healthz").body["busy"] is True

    second = request(server, "GET", "/argo/canary")

    assert second.status == 503
    assert int(second.headers["retry-after"]) >= 1
    fake_gate.release.touch()
    thread.join(timeout=30)
    assert first and first[0].status == 200
    # Once free, the next request runs
    assert request(server, "GET", "/argo/canary").body["success"] is True


def test_requests_within_the_lock_wait_are_serialized(start_server: Any, fake_gate: Any, files: tuple[Path, Path]) -> None:
    fake_gate.plan(decision="promote", wait_for=str(fake_gate.release))
    server = start_server(*files, command=fake_gate.command, lock_wait_s=30)
    answers: list[Answer] = []
    threads = [threading.Thread(target=lambda: answers.append(request(server, "GET", "/argo/canary")), daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    fake_gate.wait_started(1)
    time.sleep(0.3)  # give the second request time to (wrongly) start a run of its own
    assert len(fake_gate.started.read_text().splitlines()) == 1
    fake_gate.release.touch()
    for thread in threads:
        thread.join(timeout=30)
    assert [a.status for a in answers] == [200, 200]
    assert len(fake_gate.started.read_text().splitlines()) == 2


def test_a_run_past_max_run_s_is_stopped_and_holds(start_server: Any, fake_gate: Any, files: tuple[Path, Path]) -> None:
    fake_gate.plan(decision="promote", wait_for=str(fake_gate.release), max_wait_s=30)
    server = start_server(*files, command=fake_gate.command, max_run_s=0.5)

    flagger = flagger_hook(server, "canary")
    argo = request(server, "GET", "/argo/canary")

    assert flagger.status == 409 and flagger.body["decision"] == "hold"
    assert "max-run-s" in flagger.body["error"]
    assert argo.status == 200 and argo.body["decision"] == "hold" and argo.body["success"] is False


def test_a_client_that_hangs_up_stops_its_run_and_frees_the_lock(start_server: Any, fake_gate: Any, files: tuple[Path, Path]) -> None:
    # Given a webhook whose timeout is shorter than the run
    fake_gate.plan(decision="promote", wait_for=str(fake_gate.release), max_wait_s=30)
    server = start_server(*files, command=fake_gate.command)
    with pytest.raises((TimeoutError, socket.timeout)):
        request(server, "POST", "/flagger/canary", body=b'{"name": "podinfo", "namespace": "test"}', timeout=1.0)
    pid = int(fake_gate.wait_started()[0].split()[0])

    # Then the server notices, stops the run's process group and takes the next request
    wait_until(lambda: request(server, "GET", "/healthz").body["busy"] is False)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.parametrize(
    ("plan", "decision", "code"),
    [
        pytest.param({"decision": "promote", "verdict": False, "exit": 0}, "hold", 409, id="exit-0-without-verdict"),
        pytest.param({"decision": "promote", "exit": 4}, "hold", 409, id="promote-verdict-but-exit-4"),
        pytest.param({"decision": "promote", "exit": 1}, "hold", 409, id="codes-disagree"),
        pytest.param({"decision": "hold"}, "hold", 409, id="hold"),
        pytest.param({"decision": "rollback"}, "rollback", 412, id="rollback"),
    ],
)
def test_anything_but_a_consistent_pass_is_never_a_success(
    start_server: Any, fake_gate: Any, files: tuple[Path, Path], plan: dict[str, Any], decision: str, code: int
) -> None:
    fake_gate.plan(**plan)
    server = start_server(*files, command=fake_gate.command)

    flagger = flagger_hook(server, "canary")
    argo = request(server, "GET", "/argo/canary")

    assert (flagger.status, flagger.body["decision"]) == (code, decision)
    assert argo.status == 200 and argo.body["decision"] == decision and argo.body["success"] is False


def test_a_gate_that_cannot_start_holds(start_server: Any, tmp_path: Path, files: tuple[Path, Path]) -> None:
    server = start_server(*files, command=lambda stage, only, run_dir: [str(tmp_path / "no-such-program")])

    flagger = flagger_hook(server, "canary")

    assert flagger.status == 409 and flagger.body["decision"] == "hold"
    assert "could not start" in flagger.body["error"]


def test_only_reaches_the_run_from_the_query_and_from_flagger_metadata(start_server: Any, fake_gate: Any, files: tuple[Path, Path]) -> None:
    server = start_server(*files, command=fake_gate.command)

    request(server, "GET", "/argo/post-deploy?only=health.liveness,health.readiness")
    flagger_hook(server, "post-deploy", metadata={"only": "health.deep"})

    lines = fake_gate.wait_started(2)
    assert lines[0].split()[1:] == ["post-deploy", "health.liveness", "health.readiness"]
    assert lines[1].split()[1:] == ["post-deploy", "health.deep"]


# --------------------------------------------------------------------------- the HTTP surface


def test_routes_methods_bodies_and_payloads(start_server: Any, fake_gate: Any, files: tuple[Path, Path]) -> None:
    server = start_server(*files, command=fake_gate.command)

    assert request(server, "GET", "/healthz").status == 200
    assert request(server, "POST", "/flagger/production", body=b"{}").status == 404
    assert request(server, "GET", "/nowhere").status == 404
    wrong = request(server, "GET", "/flagger/canary")
    assert wrong.status == 405 and wrong.headers["allow"] == "POST"
    assert request(server, "DELETE", "/argo/canary").status == 405
    assert request(server, "POST", "/flagger/canary", body=b"not json").status == 400
    assert request(server, "POST", "/flagger/canary", body=b"[1, 2]").status == 400
    assert request(server, "POST", "/flagger/canary", body=b'{"name": 5}').status == 400
    assert request(server, "POST", "/flagger/canary", body=b'{"metadata": {"n": 1}}').status == 400
    assert request(server, "GET", "/argo/post-deploy?only=no.such.check").status == 400
    assert request(server, "GET", "/argo/post-deploy?only=-x").status == 400
    assert not fake_gate.started.exists()  # none of these ran the gate


def test_a_body_over_64_kib_is_refused_unread(start_server: Any, fake_gate: Any, files: tuple[Path, Path]) -> None:
    server = start_server(*files, command=fake_gate.command)
    payload = json.dumps({"name": "podinfo", "namespace": "test", "metadata": {"blob": "x" * (70 * 1024)}}).encode()

    answer = request(server, "POST", "/flagger/canary", body=payload, headers={"Content-Type": "application/json"})

    assert answer.status == 413
    assert not fake_gate.started.exists()


def test_a_token_is_required_when_configured_and_never_echoed(start_server: Any, fake_gate: Any, files: tuple[Path, Path]) -> None:
    server = start_server(*files, command=fake_gate.command, token=SERVER_TOKEN)
    near_miss = SERVER_TOKEN[:-1] + "x"

    missing = request(server, "GET", "/argo/canary")
    wrong = request(server, "GET", "/argo/canary", headers={"Authorization": f"Bearer {near_miss}"})
    basic = request(server, "GET", "/argo/canary", headers={"Authorization": f"Basic {SERVER_TOKEN}"})
    right = request(server, "GET", "/argo/canary", headers={"Authorization": f"Bearer {SERVER_TOKEN}"})
    flagger = flagger_hook(server, "canary")  # Flagger cannot send headers: refused like any other

    assert [missing.status, wrong.status, basic.status, flagger.status] == [401, 401, 401, 401]
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert right.status == 200 and right.body["success"] is True
    assert request(server, "GET", "/healthz").status == 200  # probes need no token
    for answer in (missing, wrong, basic, right, flagger):
        shown = answer.raw.decode() + json.dumps(answer.headers)
        assert SERVER_TOKEN not in shown and near_miss not in shown
    assert all(SERVER_TOKEN not in line for line in server.logs)  # type: ignore[attr-defined]


def test_the_gate_run_does_not_inherit_the_server_token(
    start_server: Any, tmp_path: Path, files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELEASEGATE_SERVE_TOKEN", SERVER_TOKEN)
    seen = tmp_path / "env.txt"

    def command(stage: str, only: Sequence[str], run_dir: Path) -> list[str]:
        code = f"import os, sys; open({str(seen)!r}, 'w').write(os.environ.get('RELEASEGATE_SERVE_TOKEN', 'absent')); sys.exit(2)"
        return [sys.executable, "-c", code]

    server = start_server(*files, command=command, token=SERVER_TOKEN)
    request(server, "GET", "/argo/canary", headers={"Authorization": f"Bearer {SERVER_TOKEN}"})

    assert seen.read_text() == "absent"


# --------------------------------------------------------------------------- the command line


def test_serve_refuses_to_start_on_a_bad_target_gates_address_or_token(
    tmp_path: Path, files: tuple[Path, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    target, gates = files
    bad_gates = tmp_path / "bad-gates.yaml"
    bad_gates.write_text("version: 1\ncanary: {interval_s: -1}\n", encoding="utf-8")
    monkeypatch.setenv("SHORT_TOKEN", "tiny-secret")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        cases = [
            (["--target", str(tmp_path / "missing.yaml")], "missing.yaml"),
            (["--target", str(target), "--gates", str(bad_gates)], "canary.interval_s"),
            (["--target", str(target), "--listen", "localhost"], "HOST:PORT"),
            (["--target", str(target), "--token-env", "UNSET_TOKEN_VARIABLE"], "UNSET_TOKEN_VARIABLE"),
            (["--target", str(target), "--token-env", "SHORT_TOKEN"], "SHORT_TOKEN"),
            (["--target", str(target), "--listen", f"127.0.0.1:{busy.getsockname()[1]}"], "cannot start"),
        ]
        for argv, expected in cases:
            assert main(["serve", "--suite", str(SUITE), "--report-dir", str(tmp_path / "r"), *argv]) == 3, argv
            err = capsys.readouterr().err
            assert expected in err and "Traceback" not in err, err
            assert "tiny-secret" not in err
    finally:
        busy.close()


def test_demo_canary_with_another_stage_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--canary", "--stage", "post-deploy"]) == 3
    assert "--canary runs the canary stage" in capsys.readouterr().err


def test_serve_runs_as_a_process_until_sigterm(tmp_path: Path, files: tuple[Path, Path]) -> None:
    target, gates = files
    process = subprocess.Popen(
        [sys.executable, "-m", "releasegate", "serve", "--target", str(target), "--gates", str(gates), "--listen", "127.0.0.1:0"]
        + ["--suite", str(SUITE), "--report-dir", str(tmp_path / "reports")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert "listening on http://127.0.0.1:" in first, first
        port = int(first.split("http://127.0.0.1:")[1].split()[0])
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/healthz")
        assert json.loads(connection.getresponse().read())["status"] == "ok"
        connection.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


# --------------------------------------------------------------------------- the pure part


def outcome_of(verdict: Any, returncode: int | None, killed: str | None = None) -> GateOutcome:
    return interpret(stage="canary", target="t", returncode=returncode, verdict=verdict, killed=killed, report_dir="/r", duration_s=1.0)


def verdict(decision: str, exit_code: int, **extra: Any) -> dict[str, Any]:
    return {"stage": "canary", "target": "t", "decision": decision, "exit_code": exit_code, "reasons": [decision], **extra}


@pytest.mark.parametrize(
    ("given", "returncode", "killed", "decision", "success"),
    [
        pytest.param(verdict("promote", 0), 0, None, "promote", True, id="promote"),
        pytest.param(verdict("pass", 0), 0, None, "pass", True, id="pass"),
        pytest.param(verdict("rollback", 1), 1, None, "rollback", False, id="rollback"),
        pytest.param(verdict("hold", 2), 2, None, "hold", False, id="hold"),
        pytest.param(None, 0, None, "hold", False, id="no-verdict"),
        pytest.param("garbage", 0, None, "hold", False, id="unreadable-verdict"),
        pytest.param(verdict("promote", 0), 2, None, "hold", False, id="exit-code-disagrees"),
        pytest.param(verdict("promote", 0, stage="post-deploy"), 0, None, "hold", False, id="other-stage"),
        pytest.param(verdict("promote", 0, dry_run=True), 0, None, "hold", False, id="dry-run"),
        pytest.param(verdict("maybe", 0), 0, None, "hold", False, id="unknown-decision"),
        pytest.param(verdict("hold", 4), 4, None, "hold", False, id="internal-error"),
        pytest.param(verdict("promote", 0), 0, "killed", "hold", False, id="killed-after-a-promote"),
        pytest.param(verdict("rollback", 1), 1, "killed", "rollback", False, id="killed-after-a-failure"),
    ],
)
def test_interpret_fails_closed(given: Any, returncode: int, killed: str | None, decision: str, success: bool) -> None:
    outcome = outcome_of(given, returncode, killed)
    assert (outcome.decision, outcome.success) == (decision, success)
    assert flagger_status(outcome) == (200 if success else (412 if decision == "rollback" else 409))


def test_listen_addresses_and_only_patterns() -> None:
    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen("[::1]:0") == ("::1", 0)
    assert parse_listen("0.0.0.0:80") == ("0.0.0.0", 80)
    for bad in ("localhost", ":80", "127.0.0.1:http", "127.0.0.1:70000"):
        with pytest.raises(ValueError):
            parse_listen(bad)
    assert only_patterns({"only": ["a,b", "c"]}, {"only": "d e", "token": "x"}) == ["a", "b", "c", "d", "e"]
    assert only_patterns({}, None) == []
