"""The health family through the real gate: ``releasegate run`` against loopback servers.

Each test starts a real HTTP server on 127.0.0.1, writes a target file and a fast gates.yaml
(1 s probe timeout, no retries), runs the CLI in-process and reads the decision from the exit
code and verdict.json. One test runs the installed console script in a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from loopback import Route, healthy_routes, refused_port, serve
from releasegate.cli import main

RELEASE = "2026.11.26-1"
FAST_GATES = "probe: {timeout_s: 1, retry: {timeout_s: 0}}\n"
HEALTH_PATHS = "health: {liveness: /healthz, readiness: /readyz, deep: /health, version: /version}\n"


def write_target(tmp_path: Path, base_url: str, *, expected_release: str | None = RELEASE) -> Path:
    target = tmp_path / "target.yaml"
    text = f"name: loopback\nbase_url: {base_url}\n{HEALTH_PATHS}"
    if expected_release is not None:
        text += f'expected_release: "{expected_release}"\n'
    target.write_text(text, encoding="utf-8")
    return target


def gate(tmp_path: Path, base_url: str, *extra: str, expected_release: str | None = RELEASE) -> tuple[int, dict[str, Any]]:
    """Run the post-deploy gate in-process; (exit code, verdict.json)."""
    target = write_target(tmp_path, base_url, expected_release=expected_release)
    gates = tmp_path / "gates.yaml"
    gates.write_text(FAST_GATES, encoding="utf-8")
    report_dir = tmp_path / "report"
    # The health family alone: the stage's business and SLO checks need target sections this one lacks.
    only = [] if "--only" in extra else ["--only", "health"]
    code = main(
        ["run", "--stage", "post-deploy", "--target", str(target), "--gates", str(gates), "--report-dir", str(report_dir), *only, *extra]
    )
    verdict = json.loads((report_dir / "verdict.json").read_text(encoding="utf-8"))
    # A dry run records the would-be exit code and exits 0.
    assert code == (0 if verdict["dry_run"] else verdict["exit_code"])
    return code, verdict


def outcomes(verdict: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["outcome"] for c in verdict["checks"]}


def health_doc(**components: str) -> Route:
    checks = {name: [{"status": status, "output": f"{name} is {status}"}] for name, status in components.items()}
    worst = "fail" if "fail" in components.values() else "warn" if "warn" in components.values() else "pass"
    body = {"status": worst, "version": "1.4.0", "releaseId": RELEASE, "checks": checks}
    return Route(503 if worst == "fail" else 200, body, content_type="application/health+json")


def test_healthy_deployment_passes_all_four_and_promotes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with serve(healthy_routes(RELEASE)) as server:
        code, verdict = gate(tmp_path, server.base_url)

    assert code == 0
    assert verdict["decision"] == "promote"
    assert outcomes(verdict) == {name: "passed" for name in ("health.liveness", "health.readiness", "health.deep", "health.release_id")}
    out = capsys.readouterr().out
    assert "releasegate post-deploy on loopback: PROMOTE" in out
    assert out.count("PASS ") == 4


def test_readiness_503_fails_and_rolls_back(tmp_path: Path) -> None:
    routes = {**healthy_routes(RELEASE), "/readyz": Route(503, "not ready")}
    with serve(routes) as server:
        code, verdict = gate(tmp_path, server.base_url)

    assert code == 1
    assert verdict["decision"] == "rollback"
    assert outcomes(verdict)["health.readiness"] == "failed"
    ready = next(c for c in verdict["checks"] if c["id"] == "health.readiness")
    assert "503" in ready["summary"] and "503" in ready["observed"]
    assert ready["evidence"]["status"] == 503


def test_a_failed_component_fails_deep_health(tmp_path: Path) -> None:
    routes = {**healthy_routes(RELEASE), "/health": health_doc(**{"db:responseTime": "fail", "cache:responseTime": "pass"})}
    with serve(routes) as server:
        code, verdict = gate(tmp_path, server.base_url)

    assert code == 1
    assert outcomes(verdict) == {
        "health.liveness": "passed",
        "health.readiness": "passed",
        "health.deep": "failed",
        "health.release_id": "passed",
    }
    deep = next(c for c in verdict["checks"] if c["id"] == "health.deep")
    assert "db:responseTime" in deep["summary"]
    assert any(r.startswith("health.deep failed") for r in verdict["reasons"])


def test_a_warn_component_warns_and_still_promotes_with_a_note(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    routes = {**healthy_routes(RELEASE), "/health": health_doc(**{"db:responseTime": "pass", "cache:responseTime": "warn"})}
    with serve(routes) as server:
        code, verdict = gate(tmp_path, server.base_url)

    assert code == 0
    assert verdict["decision"] == "promote"
    assert outcomes(verdict)["health.deep"] == "warned"
    assert any("health.deep warned" in note and "cache:responseTime" in note for note in verdict["notes"])
    assert "note: warning: health.deep warned" in capsys.readouterr().out


def test_a_hanging_endpoint_errors_within_its_timeout_and_holds(tmp_path: Path) -> None:
    routes = {**healthy_routes(RELEASE), "/readyz": Route(200, "ready", delay_s=10)}
    with serve(routes) as server:
        started = time.monotonic()
        code, verdict = gate(tmp_path, server.base_url)
        elapsed = time.monotonic() - started

    assert code == 2
    assert verdict["decision"] == "hold"
    assert outcomes(verdict)["health.readiness"] == "error"
    ready = next(c for c in verdict["checks"] if c["id"] == "health.readiness")
    assert "within 1 s" in ready["summary"]
    assert ready["duration_s"] < 3
    assert elapsed < 8, "the probe timeout (1 s) must bound the hang (10 s)"


def test_connection_refused_is_an_error_and_holds_never_promotes(tmp_path: Path) -> None:
    code, verdict = gate(tmp_path, f"http://127.0.0.1:{refused_port()}")

    assert code == 2
    assert verdict["decision"] == "hold"
    assert set(outcomes(verdict).values()) == {"error"}
    assert all("cannot connect" in c["summary"] for c in verdict["checks"])


def test_wrong_release_rolls_back(tmp_path: Path) -> None:
    with serve(healthy_routes("2026.11.25-7")) as server:
        code, verdict = gate(tmp_path, server.base_url)

    assert code == 1
    assert outcomes(verdict)["health.release_id"] == "failed"
    release = next(c for c in verdict["checks"] if c["id"] == "health.release_id")
    assert release["expected"] == RELEASE
    assert "2026.11.25-7" in release["summary"]


def test_expect_release_flag_overrides_the_target(tmp_path: Path) -> None:
    with serve(healthy_routes("2026.11.25-7")) as server:
        code, verdict = gate(tmp_path, server.base_url, "--expect-release", "2026.11.25-7")

    assert code == 0
    assert outcomes(verdict)["health.release_id"] == "passed"


def test_without_an_expected_release_release_id_is_skipped(tmp_path: Path) -> None:
    with serve(healthy_routes(RELEASE)) as server:
        code, verdict = gate(tmp_path, server.base_url, expected_release=None)

    assert code == 0
    assert outcomes(verdict) == {
        "health.liveness": "passed",
        "health.readiness": "passed",
        "health.deep": "passed",
        "health.release_id": "skipped",
    }
    release = next(c for c in verdict["checks"] if c["id"] == "health.release_id")
    assert "no expected release" in release["summary"]


def test_only_runs_the_selected_health_checks(tmp_path: Path) -> None:
    routes = {**healthy_routes(RELEASE), "/readyz": Route(503, "not ready")}
    with serve(routes) as server:
        code, verdict = gate(tmp_path, server.base_url, "--only", "health.liveness", "health.deep")

    assert code == 0
    assert outcomes(verdict) == {"health.liveness": "passed", "health.deep": "passed"}


def test_dry_run_records_rollback_and_exits_0(tmp_path: Path) -> None:
    routes = {**healthy_routes(RELEASE), "/readyz": Route(503, "not ready")}
    with serve(routes) as server:
        code, verdict = gate(tmp_path, server.base_url, "--dry-run")

    assert code == 0
    assert verdict["decision"] == "rollback"
    assert verdict["exit_code"] == 1
    assert verdict["dry_run"] is True


@pytest.mark.skipif(shutil.which("releasegate", path=str(Path(sys.executable).parent)) is None, reason="console script not installed")
def test_console_script_gates_a_failing_deployment_in_a_subprocess(tmp_path: Path) -> None:
    routes = {**healthy_routes(RELEASE), "/health": health_doc(**{"db:responseTime": "fail"})}
    target = write_target(tmp_path, "http://placeholder.invalid")
    gates = tmp_path / "gates.yaml"
    gates.write_text(FAST_GATES, encoding="utf-8")
    script = shutil.which("releasegate", path=str(Path(sys.executable).parent))
    assert script is not None
    with serve(routes) as server:
        target.write_text(target.read_text(encoding="utf-8").replace("http://placeholder.invalid", server.base_url), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
        proc = subprocess.run(
            [script, "run", "--stage", "post-deploy", "--target", str(target), "--gates", str(gates), "--report-dir", str(tmp_path / "r")],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            env=env,
        )

    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL   health.deep" in proc.stdout
    assert "releasegate post-deploy on loopback: ROLLBACK" in proc.stdout
    verdict = json.loads((tmp_path / "r" / "verdict.json").read_text(encoding="utf-8"))
    assert verdict["decision"] == "rollback"
