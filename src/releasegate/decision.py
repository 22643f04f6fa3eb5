"""Results + policy -> one decision and the reasons for it. Pure: no I/O, no clock.

The model (design.md, "Decision model"):
- a failed blocking check -> rollback;
- a blocking check that could not judge (error) -> ``on_error`` (hold by default; never promote);
- warnings (a warned check, or a non-pass of a warning-severity check) are reported and decide
  only when ``on_warning: hold``; info-severity results are only reported;
- a failure (or warning) covered by an unexpired waiver is ``waived``; an error is never waived
  (a waiver accepts a known failure, it is not evidence); an expired waiver is ignored and said so;
- a statistical result with fewer ``samples`` (in its evidence) than ``min_samples`` asks for is
  inconclusive: it becomes an error, neither pass nor fail;
- no evidence -> hold: nothing ran, everything was skipped, no *blocking* check produced evidence
  (a policy that downgrades every check can never roll back, so it cannot promote either), or a
  ``required`` check did not run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from releasegate import registry
from releasegate.config import Gates, Waiver
from releasegate.results import CheckResult, Decision, Stage

NON_PASSING = ("failed", "warned", "error")
# A waiver accepts a known failure; it cannot stand in for evidence the gate never got, so an
# error ("could not judge") stays an error under a waiver.
WAIVABLE = ("failed", "warned")


@dataclass(frozen=True)
class Judgement:
    decision: Decision
    # One line per check (or missing evidence) that decided; on success, one summary line.
    reasons: tuple[str, ...]
    # The results with waivers applied.
    results: tuple[CheckResult, ...]
    # Reported, not deciding: warnings, info findings, expired or unneeded waivers.
    notes: tuple[str, ...]


def success_for(stage: Stage) -> Decision:
    return Decision.PASS if stage == "pre-deploy" else Decision.PROMOTE


def decide(
    results: Sequence[CheckResult],
    gates: Gates,
    stage: Stage,
    *,
    today: date,
    selected: Iterable[str] | None = None,
) -> Judgement:
    """Judge one run. ``selected`` are the check ids the run was asked to run (for ``required``)."""
    waived, notes = _apply_waivers([_with_evidence_minimum(r, gates) for r in results], gates.waivers, today)
    rollback: list[str] = []
    hold: list[str] = []

    for result in waived:
        line = f"{result.id} {result.outcome}: {result.summary}"
        if result.outcome == "failed" and result.severity == "blocking":
            rollback.append(line)
        elif result.outcome == "error" and result.severity == "blocking":
            (rollback if gates.on_error == "rollback" else hold).append(f"{result.id} could not be judged (error): {result.summary}")
        elif result.outcome in NON_PASSING and result.severity != "info":
            warning = f"warning: {line}"
            (hold if gates.on_warning == "hold" else notes).append(warning)
        elif result.outcome in NON_PASSING:
            notes.append(f"info: {line}")

    ran = [r for r in waived if r.outcome != "skipped"]
    if not waived:
        hold.append("no checks ran: there is no evidence to judge, so the gate cannot pass")
    elif not ran:
        hold.append(f"all {len(waived)} checks were skipped: nothing applied to this target, so the gate cannot pass")
    elif not any(r.severity == "blocking" for r in ran):
        hold.append(
            f"no blocking check produced evidence ({len(ran)} results, all warning or info severity): nothing here can roll back, "
            "so nothing here can promote either"
        )
    hold.extend(_missing_required(waived, gates.required, stage, selected))

    if rollback:
        decision, reasons = Decision.ROLLBACK, rollback + hold
    elif hold:
        decision, reasons = Decision.HOLD, hold
    else:
        decision = success_for(stage)
        passed = sum(1 for r in waived if r.outcome == "passed")
        reasons = [f"{passed} of {len(waived)} checks passed; no blocking check failed or errored"]
    return Judgement(decision=decision, reasons=tuple(reasons), results=tuple(waived), notes=tuple(notes))


def _with_evidence_minimum(result: CheckResult, gates: Gates) -> CheckResult:
    """Too few samples make a statistical result inconclusive, whatever it concluded."""
    minimum = gates.min_samples_of(result.id)
    if minimum is None or result.outcome in ("error", "skipped"):
        return result
    samples = result.evidence.get("samples")
    if isinstance(samples, int) and not isinstance(samples, bool) and samples >= minimum:
        return result
    seen = "no sample count" if not isinstance(samples, int) else f"{samples} samples"
    return dataclasses.replace(result, outcome="error", summary=f"inconclusive: {seen}, policy needs at least {minimum} ({result.summary})")


def _apply_waivers(results: Sequence[CheckResult], waivers: Sequence[Waiver], today: date) -> tuple[list[CheckResult], list[str]]:
    out: list[CheckResult] = []
    notes: list[str] = []
    # A pattern waiver (or a check run once per subject) covers several rows: it is unneeded only
    # when none of them needed it.
    used: set[int] = set()
    passed: dict[int, list[str]] = {}
    for result in results:
        matching = [(i, w) for i, w in enumerate(waivers) if registry.matches(w.check, result.id)]
        active = [(i, w) for i, w in matching if w.expires >= today]
        if result.outcome == "error" and active:
            notes.append(f"waiver for {result.id} does not cover an error: the check could not judge")
            used.update(index for index, _ in active)
        elif result.outcome in WAIVABLE and active:
            index, waiver = active[0]
            used.add(index)
            summary = f"{result.summary} [waived until {waiver.expires.isoformat()}: {waiver.justification}]"
            out.append(dataclasses.replace(result, outcome="waived", summary=summary))
            continue
        elif result.outcome in NON_PASSING and matching and not active:
            expired = matching[0][1].expires.isoformat()
            notes.append(f"waiver for {result.id} expired on {expired}: not applied")
        elif result.outcome == "passed":
            for index, _ in active:
                passed.setdefault(index, []).append(result.id)
        out.append(result)
    for index, ids in passed.items():
        if index not in used:
            checks = ", ".join(dict.fromkeys(ids))
            notes.append(f"waiver for {waivers[index].check} is no longer needed: {checks} passed")
    return out, list(dict.fromkeys(notes))  # one note per check, not per subject row


def _missing_required(results: Sequence[CheckResult], required: Sequence[str], stage: Stage, selected: Iterable[str] | None) -> list[str]:
    if not required:
        return []
    asked = set(selected) if selected is not None else {s.id for s in registry.CHECKS if s.stage == stage}
    evidence = {r.id for r in results if r.outcome != "skipped"}
    missing: dict[str, None] = {}  # ordered set: overlapping patterns name a check once
    for pattern in required:
        for spec in registry.select(pattern):
            if spec.stage == stage and spec.id in asked and spec.id not in evidence:
                missing[f"required check {spec.id} produced no evidence (not run or skipped)"] = None
    return list(missing)
