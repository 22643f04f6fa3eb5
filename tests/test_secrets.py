"""The bearer token never reaches a report, the terminal or the GitHub step summary.

The loopback server echoes the Authorization header back, in its body and in a response
header, on every health path, so without redaction the token would land in evidence,
summaries, failure messages, JUnit properties and Allure attachments. Every file under the
report dir and everything printed is then searched for it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from loopback import LoopbackServer, Route, serve
from releasegate.cli import main

TOKEN_ENV = "RG_TEST_SECRET_TOKEN"
TOKEN = "tok-7Hq2ZpXw9RmVb4KsUe1N"  # distinctive: found only if leaked
RELEASE = "2026.11.26-1"
REDACTED = f"[redacted:{TOKEN_ENV}]"
FAST_GATES = "probe: {timeout_s: 1, retry: {timeout_s: 0}}\n"


def echoing_routes(*, healthy: bool) -> dict[str, Route | object]:
    """Every route repeats the Authorization header it got; the unhealthy variant fails every check."""

    def auth(request: BaseHTTPRequestHandler) -> str:
        return request.headers.get("Authorization", "")

    def liveness(request: BaseHTTPRequestHandler) -> Route:
        return Route(200 if healthy else 500, f"alive, you sent {auth(request)}", headers={"X-Echo-Authorization": auth(request)})

    def readiness(request: BaseHTTPRequestHandler) -> Route:
        return Route(200 if healthy else 503, f"ready? you sent {auth(request)}", headers={"X-Echo-Authorization": auth(request)})

    def deep(request: BaseHTTPRequestHandler) -> Route:
        status = "pass" if healthy else "fail"
        component = f"db ({auth(request)})"
        body = {"status": status, "releaseId": RELEASE, "checks": {component: [{"status": status, "output": f"saw {auth(request)}"}]}}
        return Route(200 if healthy else 503, body, content_type="application/health+json", headers={"X-Echo-Authorization": auth(request)})

    def version(request: BaseHTTPRequestHandler) -> Route:
        release = RELEASE if healthy else f"{RELEASE}-{auth(request)}"
        return Route(
            200, {"version": "1.4.0", "releaseId": release, "echo": auth(request)}, headers={"X-Echo-Authorization": auth(request)}
        )

    return {"/healthz": liveness, "/readyz": readiness, "/health": deep, "/version": version}


@pytest.fixture
def token_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The token in its environment variable, and a GitHub step summary file to append to."""
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    step_summary = tmp_path / "github-step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    return step_summary


@pytest.fixture(params=[False, True], ids=["failing", "passing"])
def echo_server(request: pytest.FixtureRequest) -> Iterator[tuple[LoopbackServer, bool]]:
    with serve(echoing_routes(healthy=request.param)) as server:  # type: ignore[arg-type]
        yield server, request.param


def write_config(tmp_path: Path, base_url: str) -> tuple[Path, Path]:
    target = tmp_path / "target.yaml"
    target.write_text(
        f"name: secretive\nbase_url: {base_url}\n"
        f"auth: {{token_env: {TOKEN_ENV}}}\n"
        "health: {liveness: /healthz, readiness: /readyz, deep: /health, version: /version}\n"
        f'expected_release: "{RELEASE}"\n',
        encoding="utf-8",
    )
    gates = tmp_path / "gates.yaml"
    gates.write_text(FAST_GATES, encoding="utf-8")
    return target, gates


def assert_token_nowhere(report_dir: Path, *texts: str) -> None:
    files = sorted(p for p in report_dir.rglob("*") if p.is_file())
    names = {p.name for p in files}
    assert {"verdict.json", "summary.md", "junit.xml"} <= names
    assert any(p.parent.name == "allure-results" for p in files)
    for path in files:
        data = path.read_bytes().decode("utf-8", errors="replace")
        assert not leaked(data), f"token (or a piece of it) leaked into {path}"
    for text in texts:
        assert not leaked(text)


def leaked(text: str) -> list[str]:
    """Pieces of the token found in ``text``: pytest shortens long reprs as 'tok-7Hq...KsUe1N'."""
    return [TOKEN[i : i + 8] for i in range(len(TOKEN) - 7) if TOKEN[i : i + 8] in text]


def test_token_never_written_or_printed(
    tmp_path: Path, token_env: Path, echo_server: tuple[LoopbackServer, bool], capfd: pytest.CaptureFixture[str]
) -> None:
    server, healthy = echo_server
    target, gates = write_config(tmp_path, server.base_url)
    report_dir = tmp_path / "report"

    code = main(["run", "--stage", "post-deploy", "--target", str(target), "--gates", str(gates), "--report-dir", str(report_dir), "-v"])

    out, err = capfd.readouterr()
    assert code == (0 if healthy else 1), out + err
    # The token was really sent, so the echo really put it into what the checks saw...
    assert all(headers.get("authorization") == f"Bearer {TOKEN}" for _, headers in server.requests)
    verdict = (report_dir / "verdict.json").read_text(encoding="utf-8")
    assert REDACTED in verdict
    # ...and yet it is nowhere.
    assert_token_nowhere(report_dir, out, err, token_env.read_text(encoding="utf-8"))
    assert token_env.read_text(encoding="utf-8").startswith("## ")
    if not healthy:
        # every health check fails (the business and SLO checks need target sections this one lacks)
        assert {c["outcome"] for c in json.loads(verdict)["checks"] if c["id"].startswith("health.")} == {"failed"}
        assert REDACTED in out


def test_token_never_printed_by_the_console_script(tmp_path: Path, token_env: Path) -> None:
    script = shutil.which("releasegate", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("console script not installed")
    report_dir = tmp_path / "report"
    with serve(echoing_routes(healthy=False)) as server:  # type: ignore[arg-type]
        target, gates = write_config(tmp_path, server.base_url)
        proc = subprocess.run(
            [
                script,
                "run",
                "--stage",
                "post-deploy",
                "--target",
                str(target),
                "--gates",
                str(gates),
                "--report-dir",
                str(report_dir),
                "-v",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ),
        )

    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert REDACTED in proc.stdout
    assert_token_nowhere(report_dir, proc.stdout, proc.stderr, token_env.read_text(encoding="utf-8"))


def test_token_never_printed_by_plain_pytest(tmp_path: Path, token_env: Path, pytester: pytest.Pytester) -> None:
    """The gate suite run by pytest directly (no CLI and so no redacting stream around it)."""
    checks = Path(__file__).resolve().parents[1] / "checks"
    report_dir = tmp_path / "report"
    with serve(echoing_routes(healthy=False)) as server:  # type: ignore[arg-type]
        target, gates = write_config(tmp_path, server.base_url)
        result = pytester.runpytest_subprocess(
            "-c",
            str(checks / "pytest.ini"),
            "--rootdir",
            str(checks.parent),
            "--stage",
            "post-deploy",
            "--target",
            str(target),
            "--gates",
            str(gates),
            "--report-dir",
            str(report_dir),
            "-v",
            "-rA",
            str(checks / "postdeploy"),
        )

    assert int(result.ret) == 1, result.stdout.str()
    assert_token_nowhere(report_dir, result.stdout.str(), result.stderr.str(), token_env.read_text(encoding="utf-8"))


def test_token_in_tracebacks_locals_and_captured_output_is_redacted_under_plain_pytest(
    tmp_path: Path, token_env: Path, pytester: pytest.Pytester
) -> None:
    """Assertion diffs, ``-l`` locals and captured prints of a failing check all hold the token."""
    pytester.makepyfile(
        test_leaky="""
        import pytest

        @pytest.mark.check("health.liveness")
        def test_prints_and_crashes(check, http_settings):
            print("sending", http_settings.headers)
            raise RuntimeError("crashed holding " + http_settings.headers["Authorization"])

        @pytest.mark.check("health.readiness")
        def test_compares_the_token(check, http_settings):
            token = http_settings.headers["Authorization"]
            assert token == "Bearer something-else"

        @pytest.mark.check("health.deep")
        def test_skips_with_it(check, http_settings):
            pytest.skip("not today, " + http_settings.headers["Authorization"])
        """
    )
    target, gates = write_config(tmp_path, "http://127.0.0.1:9")
    report_dir = tmp_path / "report"

    result = pytester.runpytest(
        "--stage", "post-deploy", "--target", str(target), "--gates", str(gates), "--report-dir", str(report_dir),
        "-l", "-rA", "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:anyio",
    )  # fmt: skip

    out = result.stdout.str()
    assert int(result.ret) == 1, out
    assert REDACTED in out and "Captured stdout call" in out
    assert "test_leaky.py::test_compares_the_token - AssertionError" in out
    assert_token_nowhere(report_dir, out, result.stderr.str(), token_env.read_text(encoding="utf-8"))


def test_suite_settings_keep_long_assertion_values_whole_so_they_redact(
    tmp_path: Path, token_env: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A check asserting on a long text that holds the token, run by the CLI with the suite's pytest.ini.

    pytest would show ``'xxx…tok-7Hq2…'`` cut in the middle; checks/pytest.ini asks for whole values.
    """
    suite = tmp_path / "suite"
    (suite / "checks" / "postdeploy").mkdir(parents=True)
    shutil.copy(Path(__file__).resolve().parents[1] / "checks" / "pytest.ini", suite / "checks" / "pytest.ini")
    (suite / "gates.yaml").write_text(FAST_GATES, encoding="utf-8")
    (suite / "checks" / "postdeploy" / "test_long.py").write_text(
        "import pytest\n\n"
        '@pytest.mark.check("health.liveness")\n'
        "def test_long_body(check, http_settings):\n"
        '    body = "x" * 100 + http_settings.headers["Authorization"] + "y" * 300\n'
        '    assert body.startswith("z")\n',
        encoding="utf-8",
    )
    target, _ = write_config(tmp_path, "http://127.0.0.1:9")
    report_dir = tmp_path / "report"

    code = main(["run", "--stage", "post-deploy", "--suite", str(suite), "--target", str(target), "--report-dir", str(report_dir)])

    out, err = capfd.readouterr()
    assert code == 1, out + err
    assert "FAIL   health.liveness" in out
    assert_token_nowhere(report_dir, out, err, token_env.read_text(encoding="utf-8"))
