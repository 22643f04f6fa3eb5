"""Checks whose fault the reference deployment cannot carry are proven by test fixtures.

A host's kernel settings, a process's open-file limit or a Prometheus scrape job are not
something the reference service can break about itself. Such a check names ``fixture:<name>``
as its proving fault (registry.py), and somewhere under tests/ a test called
``test_fixture_proof_<name>`` (dashes as underscores) shows the check passing on a healthy
fixture and failing on the broken one, through the same code the gate runs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from releasegate import registry

TESTS = Path(__file__).resolve().parent
FIXTURE_CHECKS = [spec for spec in registry.CHECKS if spec.fault is not None and registry.is_fixture_fault(spec.fault)]


def _proof_functions() -> set[str]:
    names: set[str] = set()
    for path in TESTS.rglob("test_*.py"):
        names.update(re.findall(r"^(?:async )?def (test_fixture_proof_[a-z0-9_]+)\(", path.read_text(encoding="utf-8"), re.MULTILINE))
    return names


@pytest.mark.parametrize("spec", FIXTURE_CHECKS, ids=lambda s: s.id)
def test_every_fixture_fault_has_its_proof(spec: registry.CheckSpec) -> None:
    assert spec.fault is not None
    wanted = "test_fixture_proof_" + spec.fault.removeprefix(registry.FIXTURE_PREFIX).replace("-", "_")

    assert wanted in _proof_functions(), f"{spec.id} names {spec.fault}, but no test under tests/ is called {wanted}"
