"""readiness.rollback through the gate: real commands (process groups, timeouts, output) and a
real loopback HTTP server for the previous artifact (HEAD, GET fallback, redirects, the token).

Each test writes a target in tmp_path and runs ``releasegate run --stage pre-deploy --only
readiness.rollback`` in-process: the same CLI, plugin, check file and probe a pipeline runs.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from loopback import Route, refused_port, serve
from releasegate.cli import main

TOKEN_ENV = "RG_ROLLBACK_TEST_TOKEN"
TOKEN = "tQ9x7Lm2Zp4Vw8Rk3"


def gate(folder: Path, rollback: dict[str, Any], *, base_url: str = "http://127.0.0.1:9", deadline_s: float = 60) -> dict[str, Any]:
    """The readiness.rollback row of a pre-deploy run against a target with this rollback section."""
    folder.mkdir(parents=True, exist_ok=True)
    target = {"name": "rollback-proof", "base_url": base_url, "auth": {"token_env": TOKEN_ENV}, "rollback": rollback}
    (folder / "target.yaml").write_text(yaml.safe_dump(target), encoding="utf-8")
    policy = {"deadline_s": deadline_s, "probe": {"timeout_s": 2, "retry": {"timeout_s": 0}}}
    (folder / "gates.yaml").write_text(yaml.safe_dump(policy), encoding="utf-8")
    report = folder / "report"
    argv = ["run", "--stage", "pre-deploy", "--target", str(folder / "target.yaml"), "--gates", str(folder / "gates.yaml")]
    code = main([*argv, "--only", "readiness.rollback", "--report-dir", str(report)])
    verdict = json.loads((report / "verdict.json").read_text(encoding="utf-8"))
    assert verdict["exit_code"] == code
    (row,) = verdict["checks"]
    assert row["id"] == "readiness.rollback"
    row["decision"] = verdict["decision"]
    return dict(row)


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)


def python(code: str) -> list[str]:
    return [sys.executable, "-I", "-S", "-c", code]


# --------------------------------------------------------------------------- verify_command


def test_a_dry_run_that_exits_0_is_ready(tmp_path: Path) -> None:
    row = gate(tmp_path, {"verify_command": python("print('release api rolled back (dry run)')"), "timeout_s": 10})
    assert row["outcome"] == "passed" and row["decision"] == "pass"
    evidence = row["evidence"]["verify_command"]
    assert evidence["exit_status"] == 0 and evidence["stdout"].strip() == "release api rolled back (dry run)"


def test_a_dry_run_that_fails_fails_the_check_with_its_error(tmp_path: Path) -> None:
    code = "import sys; print('checking...'); sys.stderr.write('Error: no revision for release \"api\"\\n'); sys.exit(3)"
    row = gate(tmp_path, {"verify_command": python(code), "timeout_s": 10})
    assert row["outcome"] == "failed" and row["decision"] == "rollback"
    assert row["summary"] == 'verify_command exited 3: Error: no revision for release "api"'
    assert row["evidence"]["verify_command"]["stderr"].strip() == 'Error: no revision for release "api"'


def test_a_dry_run_past_its_timeout_fails_and_its_whole_process_group_is_killed(tmp_path: Path) -> None:
    # Given a command that starts a child and both hang
    pid_file = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time; "
        f"child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(pid_file)!r}, 'w').write(str(child.pid)); time.sleep(60)"
    )
    started = time.monotonic()
    row = gate(tmp_path / "gate", {"verify_command": python(code), "timeout_s": 1.5})
    # Then the check fails at its timeout, not after the command's minute
    assert row["outcome"] == "failed", row["summary"]
    assert row["summary"] == "verify_command did not finish within its timeout_s of 1.5 s"
    assert time.monotonic() - started < 20
    # And the child went with it (its process group was killed)
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie waits for its (killed) parent's reaper: it runs no more


def test_a_program_that_does_not_exist_cannot_judge(tmp_path: Path) -> None:
    row = gate(tmp_path, {"verify_command": ["releasegate-no-such-rollback-tool", "--dry-run"]})
    assert row["outcome"] == "error" and row["decision"] == "hold"
    assert row["summary"].startswith("verify_command could not run: cannot run releasegate-no-such-rollback-tool")


def test_a_relative_program_is_found_beside_the_target_file(tmp_path: Path) -> None:
    script = tmp_path / "scripts" / "can-rollback"
    script.parent.mkdir(parents=True)
    script.write_text(f"#!{sys.executable} -I\nprint('ok')\n", encoding="utf-8")
    script.chmod(0o755)
    row = gate(tmp_path, {"verify_command": ["scripts/can-rollback"]})
    assert row["outcome"] == "passed", row["summary"]


def test_the_token_the_command_may_print_is_redacted(tmp_path: Path) -> None:
    code = f"import os; print('using token', os.environ[{TOKEN_ENV!r}])"
    row = gate(tmp_path, {"verify_command": python(code)})
    assert row["outcome"] == "passed"
    assert TOKEN not in json.dumps(row) and "using token" in row["evidence"]["verify_command"]["stdout"]
    assert TOKEN not in (tmp_path / "report" / "verdict.json").read_text(encoding="utf-8")


# --------------------------------------------------------------------------- previous_artifact_url


def test_an_artifact_that_answers_200_is_there_and_get_replaces_a_refused_head(tmp_path: Path) -> None:
    # Given a server that answers GET only (HEAD gets 501 from http.server)
    with serve({"/releases/r0/manifest": Route(200, {"releaseId": "r0"})}) as server:
        row = gate(tmp_path, {"previous_artifact_url": "/releases/r0/manifest"}, base_url=server.base_url)
        requests = list(server.requests)
    assert row["outcome"] == "passed", row["summary"]
    assert row["summary"] == f"the previous artifact answers HTTP 200 (GET {server.url('/releases/r0/manifest')})"
    # The token goes to the target's own origin
    assert requests[-1][1]["authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in json.dumps(row)


def test_a_missing_artifact_fails(tmp_path: Path) -> None:
    with serve({}) as server:
        row = gate(tmp_path, {"previous_artifact_url": server.url("/releases/r0/manifest")}, base_url=server.base_url)
    assert row["outcome"] == "failed" and row["decision"] == "rollback"
    assert row["summary"].startswith("the previous artifact is not available: HTTP 404")


def test_redirects_are_followed_and_the_token_stays_with_the_target(tmp_path: Path) -> None:
    # Given an artifact stored on another origin, redirected to from the target's
    with serve({"/blobs/r0": Route(200, b"artifact bytes")}) as storage:
        redirect = Route(302, "", headers={"Location": storage.url("/blobs/r0")})
        with serve({"/releases/r0/manifest": redirect}) as app:
            row = gate(tmp_path, {"previous_artifact_url": "/releases/r0/manifest"}, base_url=app.base_url)
            app_requests, storage_requests = list(app.requests), list(storage.requests)
    assert row["outcome"] == "passed", row["summary"]
    hops = row["evidence"]["previous_artifact_url"]["hops"]
    assert [(h["request"].split()[0], h["status"], h["token_sent"]) for h in hops] == [("GET", 302, True), ("GET", 200, False)]
    assert app_requests[-1][1].get("authorization") == f"Bearer {TOKEN}"
    assert "authorization" not in storage_requests[-1][1]


def test_an_artifact_store_that_does_not_answer_cannot_judge(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{refused_port()}/releases/r0/manifest"
    row = gate(tmp_path, {"previous_artifact_url": url})
    assert row["outcome"] == "error" and row["decision"] == "hold"
    assert row["summary"].startswith("previous_artifact_url could not be measured: cannot connect")


def test_with_both_proofs_both_must_hold(tmp_path: Path) -> None:
    with serve({}) as server:
        row = gate(
            tmp_path,
            {"verify_command": python("pass"), "previous_artifact_url": server.url("/gone")},
            base_url=server.base_url,
        )
    assert row["outcome"] == "failed"
    assert row["observed"] == {"verify_command": "passed", "previous_artifact_url": "failed"}


def test_without_a_rollback_section_the_check_skips_naming_the_key(tmp_path: Path) -> None:
    folder = tmp_path
    (folder / "target.yaml").write_text("name: t\nbase_url: http://127.0.0.1:9\n", encoding="utf-8")
    report = folder / "report"
    main(
        [
            "run",
            "--stage",
            "pre-deploy",
            "--target",
            str(folder / "target.yaml"),
            "--only",
            "readiness.rollback",
            "--report-dir",
            str(report),
        ]
    )
    (row,) = json.loads((report / "verdict.json").read_text(encoding="utf-8"))["checks"]
    assert (row["outcome"], row["summary"]) == ("skipped", "the target has no rollback section (key: rollback)")
