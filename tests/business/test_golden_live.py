"""business.model_quality (and its two neighbours) through ``releasegate run`` against the live
reference deployment: healthy, and with the fault bad-model (empty assistant replies).

One service start per deployment (module-scoped fixtures). The three checks of this family run
together, as the fault matrix runs them: the fault must fail its own check and no other. Every
test that talks to the healthy deployment comes before the first bad-model test: starting a
deployment puts its tokens in the environment, over the other one's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from releasegate.cli import main
from releasegate.reference.demo import DemoDeployment, running

CHECKS = ("business.data_consistency", "business.model_quality", "business.integrations")
FAST_GATES = "probe: {timeout_s: 5, retry: {timeout_s: 0}}\n"


@dataclass(frozen=True)
class Live:
    deployment: DemoDeployment
    verdict: dict[str, Any]
    verdict_path: Path

    def row(self, check_id: str) -> dict[str, Any]:
        return next(c for c in self.verdict["checks"] if c["id"] == check_id)


def gate(deployment: DemoDeployment, report_dir: Path, *extra: str, gates_text: str = FAST_GATES) -> tuple[dict[str, Any], Path]:
    gates = report_dir.parent / f"{report_dir.name}-gates.yaml"
    gates.write_text(gates_text, encoding="utf-8")
    args = ["run", "--stage", "post-deploy", "--target", str(deployment.target_path), "--gates", str(gates)]
    code = main([*args, "--report-dir", str(report_dir), "--only", *CHECKS, *extra])
    path = report_dir / "verdict.json"
    verdict: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    assert verdict["exit_code"] == code
    return verdict, path


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with running() as deployment:
        verdict, path = gate(deployment, tmp_path_factory.mktemp("healthy") / "report")
        yield Live(deployment, verdict, path)


@pytest.fixture(scope="module")
def bad_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with running(["bad-model"]) as deployment:
        verdict, path = gate(deployment, tmp_path_factory.mktemp("bad-model") / "report")
        yield Live(deployment, verdict, path)


def test_the_healthy_reference_passes_all_three(healthy: Live) -> None:
    assert {c["id"]: c["outcome"] for c in healthy.verdict["checks"]} == dict.fromkeys(CHECKS, "passed")
    assert healthy.verdict["decision"] == "promote"


def test_a_healthy_assistant_passes_every_golden_case(healthy: Live) -> None:
    row = healthy.row("business.model_quality")
    assert row["summary"] == "pass rate 100 % (5 of 5 golden cases)"
    assert row["evidence"]["pass_rate"] == 1.0 and row["evidence"]["samples"] == 5
    sorting = row["evidence"]["cases"][0]
    assert sorting["name"] == "sorting" and sorting["passed"] and "sorted(items" in sorting["reply_excerpt"]


def test_a_baseline_deployment_is_asked_the_same_golden_cases(healthy: Live, tmp_path: Path) -> None:
    # Given the healthy deployment's own target file as the baseline deployment
    verdict, _ = gate(healthy.deployment, tmp_path / "report", "--baseline", str(healthy.deployment.target_path))
    row = next(c for c in verdict["checks"] if c["id"] == "business.model_quality")
    # Then both were asked and they agree
    assert row["outcome"] == "passed"
    assert row["summary"] == "pass rate 100 % (5 of 5 golden cases), baseline 100 %"
    assert row["evidence"]["baseline"]["source"].startswith("target reference-demo")
    assert len(row["evidence"]["baseline"]["cases"]) == 5


def test_empty_replies_fail_model_quality_and_nothing_else(bad_model: Live) -> None:
    outcomes = {c["id"]: c["outcome"] for c in bad_model.verdict["checks"]}
    assert outcomes == {"business.data_consistency": "passed", "business.model_quality": "failed", "business.integrations": "passed"}
    assert bad_model.verdict["decision"] == "rollback"
    row = bad_model.row("business.model_quality")
    assert row["summary"].startswith("pass rate 0 % (0 of 5 golden cases) is below the 90 % minimum; failing: python_basics/sorting")
    assert row["evidence"]["pass_rate"] == 0.0
    assert all(case["reply_excerpt"] == "" and not case["passed"] for case in row["evidence"]["cases"])


def test_a_drop_against_a_saved_baseline_fails_even_when_the_minimum_is_met(healthy: Live, bad_model: Live, tmp_path: Path) -> None:
    # Given a policy whose absolute minimum any rate meets, and the healthy run's verdict as baseline
    lenient = FAST_GATES + "thresholds: {model_quality: {min_pass_rate: 0, max_drop_points: 5}}\n"
    # When the bad-model deployment is gated against it
    verdict, _ = gate(bad_model.deployment, tmp_path / "report", "--baseline", str(healthy.verdict_path), gates_text=lenient)
    # Then model quality fails on the 100-point drop alone
    row = next(c for c in verdict["checks"] if c["id"] == "business.model_quality")
    assert row["outcome"] == "failed"
    assert "pass rate 0 % is 100 points behind the baseline's 100 % (at most 5 allowed)" in row["summary"]
    assert row["evidence"]["baseline"]["pass_rate"] == 1.0
