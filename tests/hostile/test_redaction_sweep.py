"""Secret redaction across every artifact of every stage, for secrets from env vars, headers and scenario variables.

tests/test_secrets.py proves one token (auth.token_env) stays out of a post-deploy run's reports
against an echoing server. This sweep runs the real stages (post-deploy, pre-deploy security,
load with the smoke profile) against the reference deployment, as `releasegate run` in child
processes, and then searches every file under every report dir (verdict.json, summary.md,
junit.xml, allure-results/, SARIF, load-smoke/ with Locust's HTML and CSV and its logs) and
everything the processes printed (and the GitHub step summary) for each secret and for every
piece of it of :data:`releasegate.redact.FRAGMENT_LENGTH` characters.

The secrets, all random per run:

- env vars: the primary, second and really expired tokens (auth.token_env, second_token_env,
  expired_token_env) and the login password (auth.login.password_env); the users' passwords are
  random (secrets.token_urlsafe) rather than the reference's fixed demo ones;
- headers: the same tokens go out as ``Authorization: Bearer ...`` on every request, and a
  workflow sends its session token in a header of its own (``X-Session-Token``);
- scenario variables: a workflow logs in itself, saves the token from the login response
  (``save: {session_token: "$.access_token"}``), and then fails on purpose while expecting to
  see that token in a body, so the token sits in the failure's expected value.
"""

from __future__ import annotations

import functools
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from releasegate.redact import FRAGMENT_LENGTH
from releasegate.reference import demo
from releasegate.reference.settings import ServiceSettings

REPO = Path(__file__).resolve().parents[2]
LEAKY_WORKFLOW = """\
description: Log in as a client would, keep the session token, use it, and fail with it in sight.
steps:
  - name: log in
    http:
      method: POST
      url: /api/v1/auth/login
      as: anonymous
      json: {{username: "{username}", password: "{password}"}}
    expect: {{status: 200}}
    save: {{session_token: "$.access_token"}}
  - name: use the session token, expecting to see it echoed (it is not)
    http:
      method: GET
      url: /api/v1/me
      as: anonymous
      headers: {{Authorization: "Bearer ${{session_token}}", X-Session-Token: "${{session_token}}"}}
    expect: {{status: 200, body_contains: "session ${{session_token}}"}}
"""


@dataclass(frozen=True)
class Run:
    stage: str
    report_dir: Path
    code: int
    stdout: str
    stderr: str


def fragments(secret: str) -> set[str]:
    return {secret[i : i + FRAGMENT_LENGTH] for i in range(len(secret) - FRAGMENT_LENGTH + 1)}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[demo.DemoDeployment, dict[str, str]]]:
    """The reference deployment with random passwords; its secrets by variable name."""
    users = tuple((name, f"pw-{secrets.token_urlsafe(18)}") for name in ("alice", "bob", "carol"))
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(demo, "ServiceSettings", functools.partial(ServiceSettings, users=users))
    try:
        with demo.running(data_dir=tmp_path_factory.mktemp("demo")) as deployment:
            yield deployment, {name: os.environ[name] for name in demo.DEMO_ENVS if name != demo.USER_ENV}
    finally:
        monkeypatch.undo()


def leaky_target(deployment: demo.DemoDeployment, folder: Path) -> Path:
    """The demo's target, with a scenario folder that also holds the leaky login workflow."""
    scenarios = folder / "scenarios"
    shutil.copytree(REPO / "scenarios", scenarios, dirs_exist_ok=True)
    username, password = os.environ[demo.USER_ENV], os.environ[demo.PASSWORD_ENV]
    (scenarios / "leaky_login.yaml").write_text(LEAKY_WORKFLOW.format(username=username, password=password), encoding="utf-8")
    text = deployment.target_path.read_text(encoding="utf-8")
    # The demo names its CA bundle and backups by absolute path, so only the folder changes.
    text, count = re.subn(r"(?m)^scenarios: .*$", f"scenarios: {scenarios}", text)
    assert count == 1
    target = folder / "target.yaml"
    target.write_text(text, encoding="utf-8")
    return target


def run_stage(stage: str, target: Path, gates: Path, report_dir: Path, *only: str) -> Run:
    argv = [sys.executable, "-m", "releasegate", "run", "--stage", stage, "--target", str(target), "--gates", str(gates)]
    argv += ["--report-dir", str(report_dir), "-v", *(f"--only={prefix}" for prefix in only)]
    env = {**os.environ, "GITHUB_STEP_SUMMARY": str(report_dir.parent / f"step-summary-{stage}.md")}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, cwd=REPO, check=False)
    return Run(stage, report_dir, proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="module")
def runs(deployment: tuple[demo.DemoDeployment, dict[str, str]], tmp_path_factory: pytest.TempPathFactory) -> list[Run]:
    running, _ = deployment
    folder = tmp_path_factory.mktemp("sweep")
    target = leaky_target(running, folder)
    return [
        run_stage("post-deploy", target, running.gates_path, folder / "post-deploy"),
        run_stage("pre-deploy", target, running.gates_path, folder / "pre-deploy", "security"),
        run_stage("load", target, running.gates_path, folder / "load", "load.smoke"),
    ]


def test_the_secrets_were_really_used(runs: list[Run]) -> None:
    # Every stage ran to a verdict (not a configuration error): the secrets were loaded and sent.
    for run in runs:
        assert run.code in (0, 1, 2), f"{run.stage}: exit {run.code}\n{run.stderr[-3000:]}"
        assert (run.report_dir / "verdict.json").is_file(), run.stage
    post = (runs[0].report_dir / "verdict.json").read_text(encoding="utf-8")
    # The leaky workflow ran, logged in, and failed with the saved token in its expectation.
    assert '"business.scenario.leaky_login"' in post
    assert "[redacted" in post


def test_every_artifact_of_every_stage_is_free_of_every_secret(
    runs: list[Run], deployment: tuple[demo.DemoDeployment, dict[str, str]], tmp_path: Path
) -> None:
    _, named = deployment
    # Given every artifact the three stages left: report files, the step summaries, the terminal
    load_dir = runs[2].report_dir / "load-smoke"
    artifacts = {"report.html", "locust_stats.csv", "locust.log", "results.json"}
    assert artifacts <= {p.name for p in load_dir.iterdir()}, sorted(p.name for p in load_dir.iterdir())
    files = sorted(p for run in runs for p in run.report_dir.rglob("*") if p.is_file())
    files += sorted(runs[0].report_dir.parent.glob("step-summary-*.md"))
    assert len(files) > len(runs) * 3
    kinds = {p.suffix for p in files}
    assert {".json", ".md", ".xml", ".html", ".csv", ".log"} <= kinds, kinds
    assert any(p.name.endswith(".sarif") or "sarif" in p.name for p in files), sorted(p.name for p in files)
    texts = {str(p): p.read_bytes().decode("utf-8", errors="replace") for p in set(files)}
    for run in runs:
        texts[f"{run.stage} stdout"] = run.stdout
        texts[f"{run.stage} stderr"] = run.stderr
    # When each is searched for each secret and every 8-character piece of it
    leaks = [
        f"{name} ({'whole' if piece == value else 'piece ' + piece!r}) in {where}"
        for name, value in named.items()
        for piece in {value} | fragments(value)
        for where, text in texts.items()
        if piece in text
    ]
    # Then none is found
    assert not leaks, "\n".join(sorted(leaks)[:40])


def test_a_token_saved_from_a_login_response_is_redacted(runs: list[Run]) -> None:
    """The leaky workflow's own session token is no env var: the runner learns it when it is saved."""
    post = runs[0]
    junit = (post.report_dir / "junit.xml").read_text(encoding="utf-8")
    # Its failure says what it expected, with the token taken out.
    assert "leaky_login" in junit
    tokens = set(
        re.findall(r"eyJ[\w-]+\.[\w-]+\.[\w-]+", "".join(p.read_text(errors="replace") for p in post.report_dir.rglob("*") if p.is_file()))
    )
    assert not tokens, f"a JWT is in the post-deploy reports: {sorted(tokens)[:3]}"
    assert not re.search(r"eyJ[\w-]+\.[\w-]+\.[\w-]+", post.stdout + post.stderr)
