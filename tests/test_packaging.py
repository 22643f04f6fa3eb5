"""The installed package carries the gate suite: checks/ and gates.yaml travel inside the wheel.

An engineer who `pip install`s releasegate has no checkout; `releasegate run` must still find
its checks. This builds the real wheel, unpacks it, and gates a loopback deployment with it
from a folder that has no suite of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from loopback import healthy_routes, serve

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    [path] = out.glob("releasegate-*.whl")
    return path


def test_the_wheel_carries_the_suite_and_the_default_policy(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "releasegate/_suite/gates.yaml" in names
    assert "releasegate/_suite/checks/pytest.ini" in names
    assert "releasegate/_suite/checks/postdeploy/health/test_health.py" in names
    assert any(n.endswith("entry_points.txt") for n in names)
    entry_points = next(zipfile.ZipFile(wheel).read(n) for n in names if n.endswith("entry_points.txt")).decode()
    assert "[pytest11]" in entry_points and "releasegate.plugin = releasegate.plugin" in entry_points


def test_the_installed_copy_gates_a_deployment_from_an_empty_folder(wheel: Path, tmp_path: Path) -> None:
    # Given the wheel unpacked ahead of everything else on sys.path, and a folder with no suite
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("RELEASEGATE_SUITE", None)
    with serve(healthy_routes("r-7")) as server:
        (work / "target.yaml").write_text(
            f"name: installed\nbase_url: {server.base_url}\nhealth: {{liveness: /healthz, readiness: /readyz, deep: /health}}\n"
            "expected_release: r-7\n"
        )
        # When the installed CLI runs with no --suite and no --gates
        run = subprocess.run(
            [sys.executable, "-m", "releasegate", "run", "--stage", "post-deploy", "--target", "target.yaml", "--report-dir", "out"],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    # Then it used its own bundled checks and default gates.yaml, and promoted
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    verdict = json.loads((work / "out" / "verdict.json").read_text())
    assert verdict["decision"] == "promote"
    assert len([c for c in verdict["checks"] if c["outcome"] == "passed"]) == 4  # health; the rest need target sections
    found = subprocess.run(
        [sys.executable, "-c", "from releasegate.suite import find_suite; print(find_suite())"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert found.stdout.strip() == str(site / "releasegate" / "_suite")
