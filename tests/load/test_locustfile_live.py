"""Plain ``locust -f loadtests/locustfile.py`` against the reference deployment, as on-call runs it.

Two real runs, each a Locust subprocess with a hard timeout (killed on overrun):
- the smoke profile against the healthy reference: every kind of sample arrives (HTTP with
  grouped names, WebSocket edit -> event), nothing fails, and no token reaches any output;
- the open model against fault slow-api with one virtual user: arrivals keep their schedule,
  so the ones that find the pool busy are counted as dropped iterations.
Only counts and names are asserted, never speed.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from releasegate.reference.demo import SECOND_TOKEN_ENV, TOKEN_ENV, DemoDeployment, running

REPO = Path(__file__).resolve().parents[2]
LOCUSTFILE = REPO / "loadtests" / "locustfile.py"
TIMEOUT_S = 60

MESSAGES = "/api/v1/conversations/[id]/messages"
KNOWN_NAMES = {
    ("POST", "/api/v1/conversations"),
    ("POST", MESSAGES),
    ("GET", MESSAGES),
    ("POST", "/api/v1/conversations/[id]/participants"),
    ("POST", "/api/v1/conversations/[id]/tools"),
    ("GET", "/api/v1/tool-runs/[id]"),
    ("POST", "/api/v1/assistant/completions"),
    ("GET", "/api/v1/me"),
    ("WS", "sync connect"),
    ("WS", "sync edit->event"),
    ("ARRIVAL", "dropped iteration"),
}


def run_locust(
    demo: DemoDeployment, out: Path, **env: str
) -> tuple[subprocess.CompletedProcess[str], dict[tuple[str, str], tuple[int, int]]]:
    """One headless run; (the process, {(type, name): (requests, failures)} from its CSV)."""
    out.mkdir()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RELEASEGATE_") or k.startswith("RELEASEGATE_DEMO")}
    environ.update(RELEASEGATE_TARGET=str(demo.target_path), **env)
    prefix = str(out / "run")
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary"]
    command += ["--csv", prefix, "--json-file", prefix, "--html", prefix + ".html"]
    # subprocess.run kills the child when the timeout expires.
    result = subprocess.run(command, env=environ, cwd=out, capture_output=True, text=True, timeout=TIMEOUT_S)
    with open(prefix + "_stats.csv", encoding="utf-8", newline="") as handle:
        rows = {(r["Type"], r["Name"]): (int(r["Request Count"]), int(r["Failure Count"])) for r in csv.DictReader(handle)}
    return result, rows


@pytest.fixture(scope="module")
def healthy() -> Iterator[DemoDeployment]:
    with running() as demo:
        yield demo


@pytest.fixture(scope="module")
def slow_api() -> Iterator[DemoDeployment]:
    with running(["slow-api"]) as demo:
        yield demo


def test_the_smoke_profile_runs_clean_against_the_healthy_reference(healthy: DemoDeployment, tmp_path: Path) -> None:
    result, rows = run_locust(healthy, tmp_path / "smoke", RELEASEGATE_PROFILE="smoke")

    assert result.returncode == 0, result.stderr[-3000:]
    samples = {key: value for key, value in rows.items() if key != ("", "Aggregated")}
    assert set(samples) <= KNOWN_NAMES, "a request name carries an id or a new name appeared"
    for key in [
        ("POST", "/api/v1/conversations"),
        ("POST", MESSAGES),
        ("GET", MESSAGES),
        ("WS", "sync connect"),
        ("WS", "sync edit->event"),
    ]:
        assert samples.get(key, (0, 0))[0] > 0, f"no {key} samples"
    assert rows[("", "Aggregated")][1] == 0, (tmp_path / "smoke" / "run_failures.csv").read_text(encoding="utf-8")
    stats = json.loads((tmp_path / "smoke" / "run.json").read_text(encoding="utf-8"))
    assert {(entry["method"], entry["name"]) for entry in stats} == set(samples)  # the JSON report agrees on the names

    secrets = [os.environ[TOKEN_ENV], os.environ[SECOND_TOKEN_ENV]]
    outputs = [p.read_text(encoding="utf-8", errors="replace") for p in (tmp_path / "smoke").iterdir()]
    for text in [*outputs, result.stdout, result.stderr]:
        assert not any(secret in text for secret in secrets)


def test_the_open_model_drops_arrivals_a_slow_service_cannot_take(slow_api: DemoDeployment, tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "arrivals.yaml").write_text(
        "description: five new conversations a second, one virtual user\n"
        "open_model: {arrival_rate_per_s: 5, max_vus: 1, duration_s: 2}\n"
        "max_duration_s: 10\n",
        encoding="utf-8",
    )

    result, rows = run_locust(slow_api, tmp_path / "out", RELEASEGATE_PROFILES_DIR=str(profiles), RELEASEGATE_PROFILE="arrivals")

    # Each iteration takes three slow answers (~1 s) while arrivals come every 200 ms.
    dropped, failed = rows.get(("ARRIVAL", "dropped iteration"), (0, 0))
    assert dropped > 0 and failed == dropped
    assert rows[("POST", "/api/v1/conversations")][0] >= 1  # the iterations that did run were measured
    assert result.returncode == 1  # Locust's exit code when anything failed
