"""The load gate end to end: `releasegate load` against the live reference deployment.

The healthy deployment promotes; each of the faults slow-api, error-burst and slow-sync rolls
back, naming the threshold it broke (k6-style thresholds with abort_on_fail, so a failing
release is not loaded for the whole profile); a host outside the allowlist is refused before a
single request. Short runs: a 3-second profile written for the test. Outcomes and names are
asserted, never speed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from releasegate.cli import main
from releasegate.reference.demo import SECOND_TOKEN_ENV, TOKEN_ENV, DemoDeployment, running

MESSAGES_P95 = "http_p95_ms{GET /api/v1/conversations/[id]/messages}"
# The smoke profile, shortened: the same mix as loadtests/profiles/smoke.yaml, 3 seconds.
SHORT_SMOKE = """\
description: the smoke mix for 3 seconds (tests)
user_classes: {ConversationUser: 4, SyncUser: 2}
stages:
  - {duration_s: 3, users: 6, spawn_rate: 6}
think_time_s: [0.3, 0.8]
sync_think_time_s: [0.05, 0.15]
sync_room_size: 2
sync_timeout_s: 5
max_duration_s: 20
"""
# Thresholds for the reference deployment (it answers in a few ms): each fault breaks one. The
# HTTP bound is scoped to a request made after the users' connections exist, so TLS handshakes
# on a busy machine do not count; abort_on_fail ends a failing run after one second.
GATES = f"""\
probe: {{timeout_s: 5, retry: {{timeout_s: 0}}}}
load:
  min_requests: 10
  thresholds:
    "{MESSAGES_P95}": {{condition: "<200", abort_on_fail: true, delay_abort_eval_s: 1}}
    fail_ratio: {{condition: "<0.01", abort_on_fail: true, delay_abort_eval_s: 1}}
    sync_p95_ms: {{condition: "<250", abort_on_fail: true, delay_abort_eval_s: 1}}
"""


def only_threshold(name: str) -> str:
    """GATES with just one of its thresholds: on a busy machine another one (sync p95 under CPU
    starvation) could abort the run first and be the one named."""
    lines = [
        line
        for line in GATES.splitlines()
        if not line.startswith("    ") or line.lstrip().startswith(f'"{name}"') or line.lstrip().startswith(f"{name}:")
    ]
    return "\n".join(lines) + "\n"


def prepare(deployment: DemoDeployment, folder: Path, gates_text: str = GATES) -> tuple[Path, Path]:
    """The demo's target with the short profile, and the test's policy."""
    profiles = folder / "profiles"
    profiles.mkdir(parents=True)
    (profiles / "smoke.yaml").write_text(SHORT_SMOKE, encoding="utf-8")
    data = yaml.safe_load(deployment.target_path.read_text(encoding="utf-8"))
    data["load"]["profiles_dir"] = str(profiles)
    target = folder / "target.yaml"
    target.write_text(yaml.safe_dump(data), encoding="utf-8")
    gates = folder / "gates.yaml"
    gates.write_text(gates_text, encoding="utf-8")
    return target, gates


def load(target: Path, gates: Path, report_dir: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    code = main(["load", "--profile", "smoke", "--target", str(target), "--gates", str(gates), "--report-dir", str(report_dir), *extra])
    verdict: dict[str, Any] = json.loads((report_dir / "verdict.json").read_text(encoding="utf-8"))
    assert verdict["exit_code"] == code
    return code, verdict


def smoke_row(verdict: dict[str, Any]) -> dict[str, Any]:
    (row,) = [c for c in verdict["checks"] if c["id"] == "load.smoke"]
    return row


def leaked(folder: Path, secrets: list[str]) -> list[str]:
    """Files under ``folder`` holding a secret or a 12-character piece of one."""
    pieces = {s[i : i + 12] for s in secrets for i in range(0, len(s) - 11, 4)}
    found = []
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes().decode("utf-8", "replace")
            if any(piece in data for piece in pieces):
                found.append(str(path))
    return found


def test_the_healthy_reference_deployment_passes_with_its_artifacts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given the healthy reference deployment
    with running() as deployment:
        secrets = [os.environ[TOKEN_ENV], os.environ[SECOND_TOKEN_ENV]]
        target, gates = prepare(deployment, tmp_path)
        # When on-call runs `releasegate load --profile smoke`
        code, verdict = load(target, gates, tmp_path / "report")
    # Then it promotes, with every threshold met
    row = smoke_row(verdict)
    assert (code, verdict["decision"], row["outcome"]) == (0, "promote", "passed"), row["summary"]
    evidence = row["evidence"]
    assert {t["threshold"]: t["outcome"] for t in evidence["thresholds"]} == {
        MESSAGES_P95: "passed",
        "fail_ratio": "passed",
        "sync_p95_ms": "passed",
    }
    summary = evidence["summary"]
    assert summary["requests"] >= 10 and summary["sync_events"] > 0 and summary["failures"] == 0
    assert summary["peak_users"] == 6 and summary["concurrent_conversations"] == 6
    # And live progress went to the terminal
    assert "load smoke: started" in capsys.readouterr().out
    # And the artifacts are in the report folder: HTML, CSV, PNG, raw samples, results
    out = tmp_path / "report" / "load-smoke"
    assert "<html" in (out / "report.html").read_text(encoding="utf-8").lower()
    assert (out / "locust_stats.csv").read_text(encoding="utf-8").startswith("Type,Name,Request Count")
    assert (out / "latency.png").read_bytes().startswith(b"\x89PNG")
    assert len((out / "samples.csv").read_text(encoding="utf-8").splitlines()) == summary["samples_kept"] + 1
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["schema"] == "releasegate.load-results/v1" and results["summary"]["requests"] == summary["requests"]
    assert {str(out / name) for name in ("report.html", "latency.png", "results.json")} <= set(evidence["artifacts"])
    # And no token reached any file of the run
    assert leaked(tmp_path / "report", secrets) == []


@pytest.mark.parametrize(
    ("fault", "threshold"),
    [("slow-api", MESSAGES_P95), ("error-burst", "fail_ratio"), ("slow-sync", "sync_p95_ms")],
)
def test_a_fault_flips_the_load_gate_on_its_threshold(fault: str, threshold: str, tmp_path: Path) -> None:
    # Given the reference deployment with one fault
    with running([fault]) as deployment:
        target, gates = prepare(deployment, tmp_path, only_threshold(threshold))
        code, verdict = load(target, gates, tmp_path / "report")
    # Then the load gate rolls back, and says which threshold broke
    row = smoke_row(verdict)
    assert (code, verdict["decision"], row["outcome"]) == (1, "rollback", "failed"), row["summary"]
    assert f"{threshold} " in row["summary"], row["summary"]
    outcomes = {t["threshold"]: t["outcome"] for t in row["evidence"]["thresholds"]}
    assert outcomes[threshold] == "failed", outcomes


def test_a_host_outside_the_allowlist_is_refused_before_any_request(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "target.yaml"
    target.write_text("name: elsewhere\nbase_url: https://load-target.invalid\nload: {allowed_hosts: [staging.invalid]}\n")
    gates = tmp_path / "gates.yaml"
    gates.write_text(GATES, encoding="utf-8")
    # `releasegate load`: a configuration error, exit 3, nothing started
    code = main(["load", "--profile", "smoke", "--target", str(target), "--gates", str(gates), "--report-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 3
    assert "'load-target.invalid' is neither loopback nor in load.allowed_hosts" in err and "no request was sent" in err
    assert not (tmp_path / "r").exists()
    # `releasegate run --stage load`: the check could not run, with the same reason; the gate holds
    code = main(["run", "--stage", "load", "--target", str(target), "--gates", str(gates), "--report-dir", str(tmp_path / "g")])
    verdict = json.loads((tmp_path / "g" / "verdict.json").read_text(encoding="utf-8"))
    row = smoke_row(verdict)
    assert (code, row["outcome"]) == (2, "error")
    assert "load refused" in row["summary"] and not (tmp_path / "g" / "load-smoke").exists()
