"""business.integrations through ``releasegate run`` against the reference deployment with the
fault cache-degraded (deep health reports the cache component warn): the target lists the cache
without allow_degraded, so the check fails; with allow_degraded it warns. The neighbouring checks
pass. The healthy case is in test_golden_live.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from releasegate.cli import main
from releasegate.reference.demo import DemoDeployment, running

CHECKS = ("business.data_consistency", "business.model_quality", "business.integrations")
FAST_GATES = "probe: {timeout_s: 5, retry: {timeout_s: 0}}\n"
CACHE_ENTRY = '{name: suggestion cache, component: "cache:utilization"}'


def gate(target: Path, report_dir: Path, *only: str) -> dict[str, Any]:
    gates = report_dir.parent / "gates.yaml"
    gates.write_text(FAST_GATES, encoding="utf-8")
    args = ["run", "--stage", "post-deploy", "--target", str(target), "--gates", str(gates), "--report-dir", str(report_dir)]
    code = main([*args, "--only", *(only or CHECKS)])
    verdict: dict[str, Any] = json.loads((report_dir / "verdict.json").read_text(encoding="utf-8"))
    assert verdict["exit_code"] == code
    return verdict


@pytest.fixture(scope="module")
def degraded() -> Iterator[DemoDeployment]:
    with running(["cache-degraded"]) as deployment:
        yield deployment


def test_a_degraded_cache_fails_integrations_and_nothing_else(degraded: DemoDeployment, tmp_path: Path) -> None:
    verdict = gate(degraded.target_path, tmp_path / "report")
    outcomes = {c["id"]: c["outcome"] for c in verdict["checks"]}
    assert outcomes == {"business.data_consistency": "passed", "business.model_quality": "passed", "business.integrations": "failed"}
    row = next(c for c in verdict["checks"] if c["id"] == "business.integrations")
    assert row["summary"] == (
        "suggestion cache (cache:utilization): status warn, 99.0 percent: the cache is full and evicting "
        "(degraded; set allow_degraded: true to accept this)"
    )
    statuses = {entry["name"]: entry["status"] for entry in row["evidence"]["integrations"]}
    assert statuses == {"database": "ok", "suggestion cache": "failed", "model backend": "ok", "metrics endpoint": "ok"}


def test_allow_degraded_turns_the_degraded_cache_into_a_warning(degraded: DemoDeployment, tmp_path: Path) -> None:
    # Given the same deployment, with the target accepting a degraded cache
    text = degraded.target_path.read_text(encoding="utf-8")
    assert CACHE_ENTRY in text
    lenient = degraded.target_path.with_name("target-allow-degraded.yaml")
    lenient.write_text(text.replace(CACHE_ENTRY, CACHE_ENTRY[:-1] + ", allow_degraded: true}"), encoding="utf-8")
    # When integrations alone is gated
    verdict = gate(lenient, tmp_path / "report", "business.integrations")
    # Then it warns (reported, not deciding) and the deployment is promoted
    row = verdict["checks"][0]
    assert row["outcome"] == "warned"
    assert row["summary"].startswith("degraded but allowed: suggestion cache (cache:utilization): status warn")
    assert verdict["decision"] == "promote"
