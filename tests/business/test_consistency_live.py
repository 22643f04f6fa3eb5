"""business.data_consistency through ``releasegate run`` against the reference deployment with
the fault stale-read (reads see the state of 5 s ago): the write is never visible within the
2 s window, so the check fails with every read's last answer, and its two neighbours pass.

The healthy case is in test_golden_live.py (one healthy start serves all three checks).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from releasegate.cli import main
from releasegate.reference.demo import running

CHECKS = ("business.data_consistency", "business.model_quality", "business.integrations")
FAST_GATES = "probe: {timeout_s: 5, retry: {timeout_s: 0}}\n"


@pytest.fixture(scope="module")
def stale_read(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("stale-read")
    gates = folder / "gates.yaml"
    gates.write_text(FAST_GATES, encoding="utf-8")
    with running(["stale-read"]) as deployment:
        args = ["run", "--stage", "post-deploy", "--target", str(deployment.target_path), "--gates", str(gates)]
        code = main([*args, "--report-dir", str(folder / "report"), "--only", *CHECKS])
    verdict: dict[str, Any] = json.loads((folder / "report" / "verdict.json").read_text(encoding="utf-8"))
    assert verdict["exit_code"] == code
    yield verdict


def row(verdict: dict[str, Any], check_id: str) -> dict[str, Any]:
    return next(c for c in verdict["checks"] if c["id"] == check_id)


def test_stale_reads_fail_data_consistency_and_nothing_else(stale_read: dict[str, Any]) -> None:
    outcomes = {c["id"]: c["outcome"] for c in stale_read["checks"]}
    assert outcomes == {"business.data_consistency": "failed", "business.model_quality": "passed", "business.integrations": "passed"}
    assert stale_read["decision"] == "rollback"


def test_the_failure_names_each_stale_read_and_what_it_answered(stale_read: dict[str, Any]) -> None:
    result = row(stale_read, "business.data_consistency")
    marker = result["evidence"]["write"]["marker"]
    assert result["summary"].startswith("stale or lost write: /api/v1/conversations/")
    assert "still did not show the write after 2 s" in result["summary"]
    reads = result["evidence"]["reads"]
    assert [(r["as"], r["result"]) for r in reads] == [("primary", "stale"), ("second", "stale")]
    for read in reads:
        # The write itself succeeded (the driver's outputs are there) but no read shows the marker.
        assert read["url"] == f"/api/v1/conversations/{result['evidence']['write']['outputs']['conversation_id']}/messages"
        assert read["last_status"] == 200 and read["last_problems"] == [f"body: does not contain '{marker}'"]
        assert marker not in read["last_answer_excerpt"]
        assert 2 <= read["attempts"] <= 22  # bounded: one poll per 100 ms across the 2 s window
