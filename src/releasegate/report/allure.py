"""The one place that talks to allure-pytest.

Labels go on as markers at collection (epic = stage, feature = family, story = check id,
severity mapped); evidence is attached as JSON while the check runs; at the end the decision
goes into the results folder (:func:`record_decision`), so the HTML report shows it beside the
tests. When allure-pytest is not installed, or no ``--alluredir`` was given, every call here
is a no-op.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from releasegate.registry import CheckSpec
from releasegate.results import Severity

# Any: allure's decorators are untyped, and the name is None when allure-pytest is missing.
allure: Any
try:
    import allure
except ImportError:  # pragma: no cover - allure-pytest is a dependency, but keep the gate usable without it
    allure = None

ALLURE_SEVERITY: dict[Severity, str] = {"blocking": "critical", "warning": "normal", "info": "minor"}


def label_item(item: pytest.Item, spec: CheckSpec, severity: Severity) -> None:
    if allure is None:
        return
    item.add_marker(allure.epic(spec.stage))
    item.add_marker(allure.feature(spec.family))
    item.add_marker(allure.story(spec.id))
    item.add_marker(allure.severity(allure.severity_level(ALLURE_SEVERITY[severity])))


def attach_evidence(name: str, payload: dict[str, Any]) -> None:
    if allure is None:
        return
    allure.attach(json.dumps(payload, indent=2, default=str), name=name, attachment_type=allure.attachment_type.JSON)


# Attachment types by file suffix; anything else goes as plain text.
_TYPES = {".png": "PNG", ".json": "JSON", ".html": "HTML", ".csv": "CSV", ".txt": "TEXT"}


def attach_file(path: Path, name: str) -> None:
    """Attach a file (by path) to the running test's Allure result, typed by its suffix."""
    if allure is None:
        return
    kind = _TYPES.get(path.suffix.lower(), "TEXT")
    allure.attach.file(str(path), name=name, attachment_type=getattr(allure.attachment_type, kind))


def record_decision(results_dir: Path | None, verdict: dict[str, Any]) -> None:
    """Put the decision of ``verdict`` (verdict.json's document, already redacted) into the Allure results.

    Allure shows a test per check, never the gate's answer; this writes it where Allure 2 and 3
    both show it on the report's first page: ``environment.properties`` (decision, stage, target,
    the ids that failed or could not be judged) and ``executor.json`` (one line, as the terminal
    prints it). Keys of environment.properties that are not the gate's are kept.
    """
    if allure is None or results_dir is None or not results_dir.is_dir():
        return
    decision = str(verdict["decision"]).upper()
    checks = verdict.get("checks", [])
    # Short keys: the report cuts longer ones off.
    entries = {
        "decision": f"{decision} (exit {verdict['exit_code']})",
        "stage": str(verdict["stage"]),
        "target": str(verdict["target"]),
        "failed": ", ".join(c["id"] for c in checks if c["outcome"] == "failed") or "none",
        "inconclusive": ", ".join(c["id"] for c in checks if c["outcome"] == "error") or "none",
    }
    path = results_dir / "environment.properties"
    kept = [] if not path.exists() else [line for line in path.read_text(encoding="utf-8").splitlines() if _key(line) not in entries]
    lines = kept + [f"{key}={_property_value(value)}" for key, value in entries.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    headline = f"{verdict['stage']} on {verdict['target']}: {decision}"
    executor = {"name": "releasegate", "type": "releasegate", "buildName": headline, "reportName": f"releasegate {headline}"}
    (results_dir / "executor.json").write_text(json.dumps(executor, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _key(line: str) -> str:
    return line.partition("=")[0].strip()


def _property_value(text: str) -> str:
    """``text`` as one line of a .properties value: backslashes escaped, line breaks as spaces."""
    return " ".join(text.replace("\\", "\\\\").split())
