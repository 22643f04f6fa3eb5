"""The one list of check ids: ids are an API, so their shape and the pattern language are pinned."""

from __future__ import annotations

import re

import pytest

from releasegate import registry
from releasegate.results import SEVERITIES, STAGES

DOTTED_LOWERCASE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")


def test_ids_are_unique() -> None:
    ids = registry.ids()

    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("spec", registry.CHECKS, ids=lambda spec: spec.id)
def test_every_spec_is_complete(spec: registry.CheckSpec) -> None:
    assert DOTTED_LOWERCASE.fullmatch(spec.id), f"{spec.id} is not a dotted lowercase id"
    assert spec.stage in STAGES
    assert spec.severity in SEVERITIES
    assert spec.family
    assert spec.description.strip()
    assert registry.get(spec.id) is spec
    assert registry.is_registered(spec.id)


def test_unknown_id_is_not_registered() -> None:
    assert not registry.is_registered("health")
    with pytest.raises(KeyError):
        registry.get("health.livenes")


@pytest.mark.parametrize(
    ("pattern", "check_id", "expected"),
    [
        ("health.liveness", "health.liveness", True),  # exact
        ("health", "health.liveness", True),  # dotted prefix
        ("health.", "health.liveness", True),  # a trailing dot is the same prefix
        ("health.live", "health.liveness", False),  # a prefix stops at a dot, not mid-word
        ("heal", "health.liveness", False),
        ("health.liveness.extra", "health.liveness", False),
        ("health.*", "health.liveness", True),  # glob
        ("health.r*", "health.liveness", False),
        ("*.liveness", "health.liveness", True),
        ("health.?eadiness", "health.readiness", True),
        ("health.[lr]*", "health.readiness", True),
        ("Health", "health.liveness", False),  # ids are case-sensitive
        ("", "health.liveness", False),
    ],
)
def test_matches(pattern: str, check_id: str, expected: bool) -> None:
    assert registry.matches(pattern, check_id) is expected


def test_select_returns_the_specs_a_pattern_selects() -> None:
    assert [s.id for s in registry.select("health.liveness")] == ["health.liveness"]
    assert {s.id for s in registry.select("health")} == {s.id for s in registry.CHECKS if s.id.startswith("health.")}
    assert registry.select("health.live") == []
    assert registry.select("nothing.*") == []


@pytest.mark.parametrize("spec", registry.CHECKS, ids=lambda s: s.id)
def test_every_check_names_the_fault_that_proves_it(spec: registry.CheckSpec) -> None:
    # A check with no proving fault is not done (design.md, "Proving every check").
    assert spec.fault is not None and re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", spec.fault), spec
