"""The limits family proven live: the reference deployment, healthy and with each proving fault.

One gate run per deployment with all four checks in the registry's order, so the rate-limit
probes meet the bucket state their predecessors leave behind, as in a real pre-deploy stage.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from releasegate.cli import main
from releasegate.reference.demo import SECOND_TOKEN_ENV, TOKEN_ENV, running

IDS = ("security.request_size", "security.rate_limit.ip", "security.rate_limit.user", "security.rate_limit.endpoint")
GATES = "probe: {timeout_s: 5, retry: {timeout_s: 0}}\n"


def gate(tmp_path: Path, faults: list[str]) -> tuple[int, dict[str, Any]]:
    gates = tmp_path / "gates.yaml"
    gates.write_text(GATES, encoding="utf-8")
    report = tmp_path / "report"
    with running(faults) as deployment:
        secrets = [os.environ[TOKEN_ENV], os.environ[SECOND_TOKEN_ENV]]
        argv = ["run", "--stage", "pre-deploy", "--target", str(deployment.target_path), "--gates", str(gates)]
        code = main([*argv, "--only", "security.request_size", "security.rate_limit", "--report-dir", str(report)])
    text = (report / "verdict.json").read_text(encoding="utf-8")
    assert not any(secret in text for secret in secrets), "a token reached the verdict"
    verdict: dict[str, Any] = json.loads(text)
    return code, verdict


@pytest.mark.parametrize(
    ("fault", "broken"),
    [
        (None, None),
        ("no-body-limit", "security.request_size"),
        ("no-rate-limit", "security.rate_limit.ip"),
        ("no-user-rate-limit", "security.rate_limit.user"),
        ("no-endpoint-rate-limit", "security.rate_limit.endpoint"),
    ],
)
def test_each_fault_fails_its_own_check_and_only_that(tmp_path: Path, fault: str | None, broken: str | None) -> None:
    # Given the reference deployment, healthy or with one fault, gated by the whole family in one run
    code, verdict = gate(tmp_path, [fault] if fault else [])
    outcomes = {c["id"]: c["outcome"] for c in verdict["checks"]}
    # Then the proven check fails, and every other check of the family passes
    assert outcomes == {check_id: "failed" if check_id == broken else "passed" for check_id in IDS}, verdict["reasons"]
    assert (code, verdict["decision"]) == ((1, "rollback") if broken else (0, "pass"))
