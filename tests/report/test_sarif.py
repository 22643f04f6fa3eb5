"""security.sarif: what a code-scanning UI needs — stable rule ids, levels, fingerprints, suppressions."""

from __future__ import annotations

import json
from typing import Any

from releasegate import registry
from releasegate.decision import Judgement
from releasegate.report.sarif import sarif_document
from releasegate.results import CheckResult, Decision


def judgement(*rows: CheckResult) -> Judgement:
    return Judgement(decision=Decision.ROLLBACK, reasons=("x",), results=rows, notes=())


def row(check_id: str, outcome: str, severity: str = "blocking", **evidence: Any) -> CheckResult:
    return CheckResult(
        id=check_id,
        outcome=outcome,
        severity=severity,
        summary=f"{check_id} {outcome}",
        observed="max-age=0",
        expected=">= 31536000",
        evidence=evidence,  # type: ignore[arg-type]
    )


def document(*rows: CheckResult, target: str = "staging") -> dict[str, Any]:
    return sarif_document(judgement(*rows), target_name=target, target_uri="targets/staging.yaml", version="0.1.0")


def test_every_security_check_is_a_rule_and_only_security_findings_are_results() -> None:
    doc = document(row("security.hsts", "failed"), row("security.headers", "passed"), row("health.readiness", "failed"))
    run = doc["runs"][0]
    assert doc["version"] == "2.1.0"
    assert {r["id"] for r in run["tool"]["driver"]["rules"]} == {s.id for s in registry.CHECKS if s.id.startswith("security.")}
    assert [r["ruleId"] for r in run["results"]] == ["security.hsts"]
    [result] = run["results"]
    assert result["level"] == "error"
    assert "observed: max-age=0" in result["message"]["text"]
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "targets/staging.yaml"
    json.dumps(doc)  # serialisable


def test_levels_follow_outcome_and_severity() -> None:
    doc = document(row("security.headers", "failed", "warning"), row("security.tls.protocols", "warned"), row("security.cookies", "error"))
    levels = {r["ruleId"]: r["level"] for r in doc["runs"][0]["results"]}
    assert levels == {"security.headers": "warning", "security.tls.protocols": "warning", "security.cookies": "note"}


def test_fingerprints_are_stable_per_check_and_target_and_differ_across_targets() -> None:
    first = document(row("security.hsts", "failed"))["runs"][0]["results"][0]["partialFingerprints"]
    again = document(row("security.hsts", "failed"))["runs"][0]["results"][0]["partialFingerprints"]
    other = document(row("security.hsts", "failed"), target="prod")["runs"][0]["results"][0]["partialFingerprints"]
    assert first == again and first != other


def test_a_waived_finding_is_reported_as_suppressed() -> None:
    [result] = document(row("security.hsts", "waived"))["runs"][0]["results"]
    assert result["suppressions"][0]["kind"] == "external"
