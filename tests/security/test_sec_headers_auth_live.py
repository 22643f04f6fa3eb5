"""Live proofs of the headers and auth families against the reference deployment.

Healthy, all five checks pass; under each proving fault (and short-hsts) the proven check fails
and the other four do not fail: a fault that trips a sibling check means that check is imprecise.
Under auth-bypass the expired-token half of security.auth.token_lifetime cannot be blamed on
expiry (nothing is authenticated at all), so it warns instead of failing twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from releasegate.cli import main
from releasegate.reference.demo import PASSWORD_ENV, TOKEN_ENV, running

IDS = ["security.hsts", "security.headers", "security.cookies", "security.auth.required", "security.auth.token_lifetime"]
GATES = "probe: {timeout_s: 5, retry: {timeout_s: 0}}\n"

# fault -> {check id: outcome}; checks not named must pass
PROOFS: dict[str | None, dict[str, str]] = {
    None: {},
    "no-hsts": {"security.hsts": "failed"},
    "short-hsts": {"security.hsts": "failed"},
    "no-security-headers": {"security.headers": "failed"},
    "insecure-cookie": {"security.cookies": "failed"},
    "auth-bypass": {"security.auth.required": "failed", "security.auth.token_lifetime": "warned"},
    "long-token-ttl": {"security.auth.token_lifetime": "failed"},
}


def gate(tmp_path: Path, faults: list[str]) -> tuple[dict[str, Any], list[str]]:
    gates = tmp_path / "gates.yaml"
    gates.write_text(GATES, encoding="utf-8")
    reports = tmp_path / "reports"
    with running(faults) as deployment:
        secrets = [os.environ[TOKEN_ENV], os.environ[PASSWORD_ENV]]
        code = main(
            [
                "run",
                "--stage",
                "pre-deploy",
                "--target",
                str(deployment.target_path),
                "--gates",
                str(gates),
                "--only",
                *IDS,
                "--report-dir",
                str(reports),
            ]
        )
    verdict: dict[str, Any] = json.loads((reports / "verdict.json").read_text(encoding="utf-8"))
    assert verdict["exit_code"] == code
    leaked = [str(f) for f in reports.rglob("*") if f.is_file() and any(s in f.read_text(errors="replace") for s in secrets)]
    return verdict, leaked


@pytest.mark.parametrize("fault", list(PROOFS), ids=lambda f: f or "healthy")
def test_each_fault_fails_its_check_and_no_sibling(fault: str | None, tmp_path: Path) -> None:
    verdict, leaked = gate(tmp_path, [fault] if fault else [])
    outcomes = {c["id"]: c["outcome"] for c in verdict["checks"]}
    expected = {check_id: PROOFS[fault].get(check_id, "passed") for check_id in IDS}
    assert outcomes == expected, [(c["id"], c["summary"]) for c in verdict["checks"] if c["outcome"] != expected[c["id"]]]
    assert leaked == []
    for check in verdict["checks"]:
        assert check["observed"] is not None and check["expected"] is not None, check["id"]
