"""--baseline: an earlier verdict.json or a second target file, told apart by content."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from releasegate._exceptions import ConfigError
from releasegate.baseline import BaselineTarget, SavedVerdict, load_baseline
from releasegate.report.verdict import SCHEMA


def verdict(
    tmp_path: Path, checks: list[dict[str, object]], schema: str = SCHEMA, *, stage: str = "post-deploy", decision: str = "promote"
) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "verdict.json"
    document = {"schema": schema, "stage": stage, "target": "prod", "decision": decision, "checks": checks}
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_a_saved_verdict_gives_the_numbers_of_checks_that_measured(tmp_path: Path) -> None:
    path = verdict(
        tmp_path,
        [
            {"id": "slo.latency", "outcome": "passed", "evidence": {"p95_ms": 41.5, "samples": 60}},
            {"id": "business.model_quality", "outcome": "failed", "evidence": {"pass_rate": 0.8}},
            # A check that could not measure is no baseline: its numbers mean nothing.
            {"id": "slo.error_rate", "outcome": "error", "evidence": {"error_rate": 0.0}},
        ],
    )

    baseline = load_baseline(path)

    assert isinstance(baseline, SavedVerdict)
    assert baseline.number("slo.latency", "p95_ms") == 41.5
    assert baseline.number("business.model_quality", "pass_rate") == 0.8
    assert baseline.number("slo.error_rate", "error_rate") is None
    assert baseline.number("slo.latency", "missing") is None
    assert "prod" in baseline.describe()


def test_a_boolean_is_not_a_number(tmp_path: Path) -> None:
    baseline = load_baseline(verdict(tmp_path, [{"id": "slo.latency", "outcome": "passed", "evidence": {"p95_ms": True}}]))

    assert isinstance(baseline, SavedVerdict) and baseline.number("slo.latency", "p95_ms") is None


@pytest.mark.parametrize("text", ["{not json", '{"schema": "something/else", "checks": []}', "[1, 2]"])
def test_a_json_file_that_is_not_a_verdict_is_a_configuration_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "verdict.json"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(ConfigError) as info:
        load_baseline(path)
    assert info.value.problems[0].key == "--baseline"


def test_a_target_file_is_a_second_deployment(tmp_path: Path) -> None:
    path = tmp_path / "stable.yaml"
    path.write_text("name: stable\nbase_url: https://stable.example.test\n", encoding="utf-8")

    baseline = load_baseline(path)

    assert isinstance(baseline, BaselineTarget)
    assert baseline.loaded.target.name == "stable"


def test_a_missing_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_baseline(tmp_path / "nope.json")


def test_a_promoted_post_deploy_verdict_is_a_baseline_without_caveat(tmp_path: Path) -> None:
    baseline = load_baseline(verdict(tmp_path, []))

    assert isinstance(baseline, SavedVerdict)
    assert baseline.decision == "promote"
    assert "post-deploy, decision promote" in baseline.describe()
    assert baseline.caveat() is None


def test_a_verdict_that_was_not_promoted_or_of_another_stage_is_used_but_says_so(tmp_path: Path) -> None:
    rolled_back = load_baseline(verdict(tmp_path / "a", [], decision="rollback"))
    pre_deploy = load_baseline(verdict(tmp_path / "b", [], stage="pre-deploy", decision="pass"))

    assert isinstance(rolled_back, SavedVerdict) and isinstance(pre_deploy, SavedVerdict)
    assert "decision rollback" in rolled_back.describe()
    assert rolled_back.caveat() == "the saved run decided rollback, not promote: its figures may be a bad release's"
    assert pre_deploy.caveat() == "the saved run is of stage pre-deploy, not post-deploy: its figures were measured differently"
