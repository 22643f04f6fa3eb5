"""The fault matrix: every check is proven against the live reference deployment.

Healthy, every stage that has checks passes or promotes with every check passed. For each
fault that the registry names as a proving fault, the checks it proves fail (or error), the
decision is rollback or hold, and no other blocking check fails: a fault that trips an
unrelated check means that check is imprecise. One service start per fault, on loopback, port 0.

The canary stage compares two deployments: it runs against ``running_canary`` (a healthy
baseline and a canary with the fault, the demo's fast canary policy); the other stages against
``running``. A canary fault must make its checks *fail* and roll back, and no other canary check
(of any severity: each one explains a metric) may fail unless the fault declares it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from releasegate import registry
from releasegate.cli import main
from releasegate.reference import faults as fault_catalog
from releasegate.reference.demo import CANARY_POLICY, running, running_canary

GATED_STAGES = sorted({spec.stage for spec in registry.CHECKS if spec.stage != "canary"})
CANARY = "canary"
# Faults of the reference deployment; fixture:<name> faults are proven in tests/ (test_fixture_proofs.py).
PROVING_FAULTS = sorted({spec.fault for spec in registry.CHECKS if spec.fault is not None and not registry.is_fixture_fault(spec.fault)})
# Checks proven by fixtures look at what the demo does not have (hosts, a Prometheus with scrape
# jobs): on the healthy demo they are skipped, with the reason, rather than passed.
FIXTURE_PROVEN = {spec.id for spec in registry.CHECKS if spec.fault is not None and registry.is_fixture_fault(spec.fault)}
# Fast policy for the matrix: one attempt per probe (the reference service never converges late).
# The reference's latency objective and load policy, as in the demo's (demo.DEMO_GATES).
MATRIX_GATES = """\
probe: {timeout_s: 5, retry: {timeout_s: 0}}
thresholds: {slo: {p95_ms: 200}, readiness: {oldest_client_version: "1.2.0"}}
load:
  thresholds: {http_p95_ms: "<200", fail_ratio: "<0.01", sync_p95_ms: "<250"}
  min_requests: 30
"""
# The canary stage: the demo's policy (4 looks of 2.5 s; a clear fault rolls back at the first).
CANARY_MATRIX_GATES = MATRIX_GATES + CANARY_POLICY


def gate(target: Path, gates: Path, stage: str, report_dir: Path) -> dict[str, Any]:
    code = main(["run", "--stage", stage, "--target", str(target), "--gates", str(gates), "--report-dir", str(report_dir)])
    verdict: dict[str, Any] = json.loads((report_dir / "verdict.json").read_text(encoding="utf-8"))
    assert verdict["exit_code"] == code
    return verdict


@pytest.fixture
def matrix_gates(tmp_path: Path) -> Path:
    path = tmp_path / "gates.yaml"
    path.write_text(MATRIX_GATES, encoding="utf-8")
    return path


@pytest.fixture
def canary_gates(tmp_path: Path) -> Path:
    path = tmp_path / "canary-gates.yaml"
    path.write_text(CANARY_MATRIX_GATES, encoding="utf-8")
    return path


def test_every_proving_fault_is_in_the_catalog() -> None:
    assert set(PROVING_FAULTS) <= fault_catalog.NAMES, set(PROVING_FAULTS) - fault_catalog.NAMES


@pytest.mark.parametrize("fault", [f for f in fault_catalog.CATALOG if f.also_breaks], ids=lambda f: f.name)
def test_declared_collateral_names_registered_checks_the_fault_does_not_prove(fault: fault_catalog.Fault) -> None:
    for pattern in fault.also_breaks:
        selected = registry.select(pattern)
        assert selected, f"{fault.name}: also_breaks {pattern!r} selects no check"
        assert all(spec.fault != fault.name for spec in selected), f"{fault.name} proves {pattern}: no need to declare it"


def test_the_healthy_reference_deployment_passes_every_stage(tmp_path: Path, matrix_gates: Path) -> None:
    with running() as deployment:
        verdicts = {stage: gate(deployment.target_path, matrix_gates, stage, tmp_path / stage) for stage in GATED_STAGES}
    for stage, verdict in verdicts.items():
        not_passed = [
            (c["id"], c["outcome"], c["summary"])
            for c in verdict["checks"]
            if c["outcome"] != "passed" and not (c["id"] in FIXTURE_PROVEN and c["outcome"] == "skipped")
        ]
        assert verdict["decision"] in ("pass", "promote"), (stage, verdict["reasons"])
        assert not_passed == [], stage
        assert {c["id"] for c in verdict["checks"]} == {s.id for s in registry.CHECKS if s.stage == stage}


def test_the_healthy_canary_pair_promotes_with_every_canary_check_passed(tmp_path: Path, canary_gates: Path) -> None:
    # Given a healthy baseline and a healthy canary
    with running_canary() as deployment:
        verdict = gate(deployment.target_path, canary_gates, CANARY, tmp_path / CANARY)
    # Then the canary is promoted, every metric of the policy judged and passed
    not_passed = [(c["id"], c["outcome"], c["summary"]) for c in verdict["checks"] if c["outcome"] != "passed"]
    assert verdict["decision"] == "promote", verdict["reasons"]
    assert not_passed == []
    metrics = {registry.canary_metric_id(name) for name in ("http_latency", "http_errors", "sync_latency")}
    assert {c["id"] for c in verdict["checks"]} == {s.id for s in registry.CHECKS if s.stage == CANARY} | metrics


@pytest.mark.parametrize("fault", PROVING_FAULTS)
def test_a_fault_breaks_the_checks_it_proves_and_nothing_else(fault: str, tmp_path: Path, matrix_gates: Path, canary_gates: Path) -> None:
    proven = {spec.id for spec in registry.CHECKS if spec.fault == fault}
    stages = sorted({registry.get(check_id).stage for check_id in proven})
    verdicts: list[dict[str, Any]] = []
    # Given the reference deployment with this one fault
    if set(stages) - {CANARY}:
        with running([fault]) as deployment:
            verdicts += [gate(deployment.target_path, matrix_gates, stage, tmp_path / stage) for stage in stages if stage != CANARY]
    # (and, for the canary stage, a healthy baseline beside a canary with the fault)
    if CANARY in stages:
        with running_canary([fault]) as deployment:
            canary = gate(deployment.target_path, canary_gates, CANARY, tmp_path / CANARY)
        verdicts.append(canary)
        assert canary["decision"] == "rollback", canary["reasons"]
        declared = fault_catalog.get(fault).also_breaks
        for check in canary["checks"]:
            if check["id"] in proven:  # a canary check must be shown to fail, not merely to be unable to judge
                assert check["outcome"] == "failed", check
            elif not any(registry.matches(pattern, check["id"]) for pattern in declared):
                assert check["outcome"] != "failed", f"fault {fault} also fails {check['id']}: {check['summary']}"
    for verdict in verdicts:
        outcomes = {c["id"]: c for c in verdict["checks"]}
        # Then every check it proves fails (or could not judge), and the decision says so
        for check_id in proven & outcomes.keys():
            # A load gate must be shown to *fail* on its fault: an inconclusive load run proves nothing.
            allowed = ("failed",) if check_id.startswith("load.") else ("failed", "error")
            assert outcomes[check_id]["outcome"] in allowed, outcomes[check_id]
        if any(outcomes[c]["severity"] == "blocking" for c in proven & outcomes.keys()):
            assert verdict["decision"] in ("rollback", "hold"), verdict["reasons"]
        else:  # a warning-severity check is reported, and decides only under on_warning: hold
            assert any(c in note for note in verdict["notes"] for c in proven), verdict["notes"]
        # And no blocking check that this fault does not prove *fails*. Another check may be unable
        # to judge (error): with an expired certificate nothing else can be probed securely, and
        # saying so is right; the healthy run shows every check can judge a healthy deployment.
        # A fault may declare, with its reason, checks it legitimately breaks as well (db-down:
        # no workflow works without the database); those alone may fail besides the proven ones.
        allowed = fault_catalog.get(fault).also_breaks
        collateral = [
            (c["id"], c["summary"])
            for c in verdict["checks"]
            if c["id"] not in proven
            and not any(registry.matches(pattern, c["id"]) for pattern in allowed)
            and c["severity"] == "blocking"
            and c["outcome"] == "failed"
        ]
        assert collateral == [], f"fault {fault} also trips {collateral}: an imprecise check"
