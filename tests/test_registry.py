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
    # Either a fault of the reference deployment, or fixture:<name> (a test fixture in tests/).
    assert spec.fault is not None and re.fullmatch(r"(fixture:)?[a-z0-9]+(-[a-z0-9]+)*", spec.fault), spec


def test_a_users_scenario_is_registered_by_its_template() -> None:
    # Given a scenario file checkout.yaml of the user's own: its id is business.scenario.checkout
    spec = registry.get(registry.scenario_id("checkout"))

    assert registry.is_registered("business.scenario.checkout")
    assert (spec.id, spec.stage, spec.family, spec.severity, spec.fault) == (
        "business.scenario.checkout",
        "post-deploy",
        "scenario",
        "blocking",
        None,
    )
    # gates.yaml may name it (severity, waiver, required), and --only may select it
    assert [s.id for s in registry.select("business.scenario.checkout")] == ["business.scenario.checkout"]


@pytest.mark.parametrize("check_id", ["business.scenario", "business.scenario.", "business.scenario.Checkout", "business.scenario.a.b"])
def test_template_instances_need_a_proper_name(check_id: str) -> None:
    assert not registry.is_registered(check_id)


def test_a_shipped_scenario_is_the_registered_spec_with_its_fault() -> None:
    assert registry.get("business.scenario.conversation").fault == "bad-model"
    assert registry.select("business.scenario.*") == [s for s in registry.CHECKS if s.family == "scenario"]


def test_a_users_scenario_runs_after_the_shipped_ones_and_before_the_next_family() -> None:
    shipped = [registry.run_position(s.id) for s in registry.CHECKS if s.family == "scenario"]
    next_family = registry.run_position("business.collaboration")

    assert max(shipped) < registry.run_position("business.scenario.checkout") < next_family
