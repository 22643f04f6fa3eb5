"""The one place that talks to allure-pytest.

Labels go on as markers at collection (epic = stage, feature = family, story = check id,
severity mapped); evidence is attached as JSON while the check runs. When allure-pytest is
not installed, or no ``--alluredir`` was given, every call here is a no-op.
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
