"""The canary stage through the CLI: `releasegate run --stage canary` and the demo pair.

A target without a canary section errors before anything is probed (fail closed: hold). Against
the demo pair (``running_canary``: a healthy baseline and canary on loopback), a short run
promotes and leaves its artifacts: samples.json that ``releasegate canary replay`` judges the same
way, the judge's table, a chart per latency metric, a canary table in summary.md, progress on
stderr, and no token anywhere. The faults (slow-api, error-burst, slow-sync) are proven in
tests/test_fault_matrix.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from releasegate.canary.model import load_record
from releasegate.cli import main
from releasegate.reference.demo import CANARY_POLICY, DEMO_ENVS, DEMO_GATES, running_canary

# The demo's policy, two looks instead of four: a healthy pair promotes at the last look.
SHORT_GATES = DEMO_GATES + CANARY_POLICY.replace("max_intervals: 4", "max_intervals: 2")


def run_stage(target: Path, gates: Path, report_dir: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    code = main(["run", "--stage", "canary", "--target", str(target), "--gates", str(gates), "--report-dir", str(report_dir), *extra])
    verdict: dict[str, Any] = json.loads((report_dir / "verdict.json").read_text(encoding="utf-8"))
    return code, verdict


def test_a_target_without_a_canary_section_holds_without_probing(tmp_path: Path) -> None:
    # Given a target that names no canary section (its host does not even resolve: nothing may be probed)
    target = tmp_path / "target.yaml"
    target.write_text("name: shop\nbase_url: https://canary.invalid\n", encoding="utf-8")
    gates = tmp_path / "gates.yaml"
    gates.write_text(SHORT_GATES, encoding="utf-8")
    # When the canary stage runs
    code, verdict = run_stage(target, gates, tmp_path / "report")
    # Then every canary check errors naming the key, and the gate holds (fail closed)
    assert code == 2 and verdict["decision"] == "hold"
    outcomes = {c["id"]: c for c in verdict["checks"]}
    assert set(outcomes) == {"canary.judge", "canary.metric.http_latency", "canary.metric.http_errors", "canary.metric.sync_latency"}
    assert all(c["outcome"] == "error" for c in outcomes.values())
    assert outcomes["canary.judge"]["summary"].startswith("the target names no canary section (key: canary)")
    assert any("canary.judge could not be judged" in reason for reason in verdict["reasons"])
    assert not (tmp_path / "report" / "samples.json").exists()


@pytest.fixture(scope="module")
def healthy_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One short gate run against a healthy demo pair; what the tests look at afterwards."""
    folder = tmp_path_factory.mktemp("healthy")
    gates = folder / "gates.yaml"
    gates.write_text(SHORT_GATES, encoding="utf-8")
    stderr = io.StringIO()
    with running_canary() as deployment, contextlib.redirect_stderr(stderr):
        secrets = [os.environ[name] for name in DEMO_ENVS if os.environ.get(name)]
        target_text = deployment.target_path.read_text(encoding="utf-8")
        code, verdict = run_stage(deployment.target_path, gates, folder / "report")
    return {
        "code": code,
        "verdict": verdict,
        "report": folder / "report",
        "secrets": secrets,
        "target": target_text,
        "stderr": stderr.getvalue(),
    }


def test_the_demo_pair_shares_one_token_and_one_ca_bundle(healthy_run: dict[str, Any]) -> None:
    target = healthy_run["target"]
    assert "canary:\n  baseline_url: https://localhost:" in target
    assert "requests_per_interval: 40" in target and "sync_round_trips: 20" in target
    assert "ca-bundle.pem" in target
    # One login (on the baseline) serves both sides: the canary answered the probes with it
    judge = next(c for c in healthy_run["verdict"]["checks"] if c["id"] == "canary.judge")
    first = judge["evidence"]["looks"][0]["metrics"]
    assert all(m["n_canary"] > 0 and m["n_baseline"] > 0 for m in first), first


def test_a_healthy_pair_promotes_and_leaves_its_artifacts(healthy_run: dict[str, Any]) -> None:
    verdict, report = healthy_run["verdict"], healthy_run["report"]
    assert healthy_run["code"] == 0 and verdict["decision"] == "promote", verdict["reasons"]
    judge = next(c for c in verdict["checks"] if c["id"] == "canary.judge")
    evidence = judge["evidence"]
    assert evidence["decision"] == "promote" and [look["look"] for look in evidence["looks"]] == [1, 2]
    assert Path(evidence["samples_json"]) == report / "samples.json"
    assert set(evidence["plots"]) == {"http_latency", "sync_latency"}
    for path in evidence["plots"].values():
        assert Path(path).read_bytes().startswith(b"\x89PNG")
    record = load_record(report / "samples.json")
    assert [i.index for i in record.intervals] == [1, 2] and record.target == "reference-demo"
    assert "decision: PROMOTE" in (report / "canary.txt").read_text(encoding="utf-8")
    summary = (report / "summary.md").read_text(encoding="utf-8")
    assert "### Canary" in summary and "| http_latency * | " in summary
    metric = next(c for c in verdict["checks"] if c["id"] == "canary.metric.http_latency")
    assert metric["outcome"] == "passed" and metric["evidence"]["state"] == "passed" and metric["evidence"]["samples"] >= 40


def test_the_artifacts_are_attached_to_allure(healthy_run: dict[str, Any]) -> None:
    names = set()
    for path in (healthy_run["report"] / "allure-results").glob("*-result.json"):
        names |= {a["name"] for a in json.loads(path.read_text(encoding="utf-8")).get("attachments", [])}
    wanted = {"canary: samples.json", "canary: canary.txt", "canary: canary-http_latency.png", "http_latency: canary-http_latency.png"}
    assert wanted <= names


def test_replay_of_the_saved_samples_decides_the_same(healthy_run: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["canary", "replay", str(healthy_run["report"] / "samples.json")])
    assert code == 0, capsys.readouterr().out
    assert "decision: PROMOTE" in capsys.readouterr().out


def test_progress_is_one_line_per_look_on_stderr(healthy_run: dict[str, Any]) -> None:
    looks = [line for line in healthy_run["stderr"].splitlines() if line.startswith("canary look")]
    assert [line.split(" ", 3)[2] for line in looks] == ["1/2", "2/2"], healthy_run["stderr"]
    assert all("http_latency" in line and "score" in line for line in looks)
    assert looks[-1].endswith("-> promote")


def test_no_token_reaches_any_report_file_or_the_terminal(healthy_run: dict[str, Any]) -> None:
    secrets = healthy_run["secrets"]
    assert secrets
    for secret in secrets:
        assert secret not in healthy_run["stderr"]
    for path in healthy_run["report"].rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in secrets:
                assert secret.encode() not in data, path
