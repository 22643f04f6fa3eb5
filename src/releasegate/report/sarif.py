"""security.sarif: security findings as SARIF 2.1.0 for code-scanning UIs (pure).

One rule per registered ``security.*`` check (ruleId = check id, stable across runs); one result
per non-passing row. A finding has no source line in a repository, so its location is the
target file that describes the deployment. ``partialFingerprints`` are derived from the check
id and the target, so the same finding on the same deployment is the same alert run after run
(GitHub's REST upload does not compute them).
"""

from __future__ import annotations

import hashlib
from typing import Any

from releasegate import registry
from releasegate.decision import Judgement
from releasegate.results import CheckResult, Severity

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
FAMILY_PREFIX = "security."
_LEVEL: dict[Severity, str] = {"blocking": "error", "warning": "warning", "info": "note"}


def is_security(check_id: str) -> bool:
    return check_id.startswith(FAMILY_PREFIX)


def sarif_document(judgement: Judgement, *, target_name: str, target_uri: str, version: str) -> dict[str, Any]:
    rules = [
        {
            "id": spec.id,
            "name": spec.id.replace(".", "_"),
            "shortDescription": {"text": spec.description},
            "fullDescription": {"text": f"{spec.description} Proven by the reference fault '{spec.fault}'."},
            "defaultConfiguration": {"level": _LEVEL[spec.severity]},
            "properties": {"tags": ["security", spec.family], "releasegate-stage": spec.stage},
        }
        for spec in registry.CHECKS
        if is_security(spec.id)
    ]
    results = [
        _result(row, target_name, target_uri)
        for row in judgement.results
        if is_security(row.id) and row.outcome not in ("passed", "skipped")
    ]
    return {
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "releasegate",
                        "version": version,
                        "informationUri": "https://releasegate.invalid/docs",
                        "rules": rules,
                    }
                },
                "automationDetails": {"id": f"releasegate/{target_name}/"},
                "results": results,
            }
        ],
    }


def _result(row: CheckResult, target_name: str, target_uri: str) -> dict[str, Any]:
    subject = str(row.evidence.get("subject", "")) if isinstance(row.evidence, dict) else ""
    if row.outcome == "error":
        level, text = "note", f"could not judge: {row.summary}"
    elif row.outcome == "warned":
        level, text = "warning", row.summary
    else:  # failed or waived
        level, text = _LEVEL[row.severity], row.summary
    if row.observed is not None or row.expected is not None:
        text += f" (observed: {_short(row.observed)}; expected: {_short(row.expected)})"
    fingerprint = hashlib.sha256(f"{row.id}\0{target_name}\0{subject}".encode()).hexdigest()
    result: dict[str, Any] = {
        "ruleId": row.id,
        "level": level,
        "message": {"text": text},
        "locations": [{"physicalLocation": {"artifactLocation": {"uri": target_uri}, "region": {"startLine": 1}}}],
        "partialFingerprints": {"releasegate/v1": fingerprint},
        "properties": {"outcome": row.outcome, "severity": row.severity, "target": target_name},
    }
    if row.outcome == "waived":
        result["suppressions"] = [{"kind": "external", "justification": row.summary}]
    return result


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 200 else text[:197] + "..."
