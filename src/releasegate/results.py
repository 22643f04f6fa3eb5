"""Plain data that flows from probes through the gate to the reports.

A probe turns what it saw into a :class:`Finding`; the plugin stamps it with the check id,
the effective severity and the duration, giving a :class:`CheckResult`. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any, Literal

Outcome = Literal["passed", "failed", "warned", "error", "skipped", "waived"]
OUTCOMES: tuple[Outcome, ...] = ("passed", "failed", "warned", "error", "skipped", "waived")

Severity = Literal["blocking", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("blocking", "warning", "info")

Stage = Literal["pre-deploy", "post-deploy", "canary", "load"]
# "load": a load profile against the deployment (`releasegate load`), judged like post-deploy.
STAGES: tuple[Stage, ...] = ("pre-deploy", "post-deploy", "canary", "load")


class Decision(StrEnum):
    """The one answer a gate run gives. ``pass`` is pre-deploy's word for ``promote``."""

    PASS = "pass"
    PROMOTE = "promote"
    HOLD = "hold"
    ROLLBACK = "rollback"

    @property
    def exit_code(self) -> int:
        return int(EXIT_CODE_BY_DECISION[self])


class ExitCode(IntEnum):
    """Process exit codes; part of the contract (design.md)."""

    OK = 0
    ROLLBACK = 1
    HOLD = 2
    CONFIG_ERROR = 3
    INTERNAL_ERROR = 4


EXIT_CODE_BY_DECISION: dict[Decision, ExitCode] = {
    Decision.PASS: ExitCode.OK,
    Decision.PROMOTE: ExitCode.OK,
    Decision.HOLD: ExitCode.HOLD,
    Decision.ROLLBACK: ExitCode.ROLLBACK,
}


@dataclass(frozen=True)
class Finding:
    """What a check concluded, before the gate knows its id, severity or duration.

    ``observed`` and ``expected`` are short human-readable values; ``evidence`` is bounded,
    JSON-serialisable raw probe data (status, headers, body excerpt, latencies, attempts).
    """

    outcome: Literal["passed", "failed", "warned", "error"]
    summary: str
    observed: Any = None
    expected: Any = None
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckResult:
    """One row of verdict.json ``checks``."""

    id: str
    outcome: Outcome
    severity: Severity
    summary: str
    observed: Any = None
    expected: Any = None
    evidence: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "outcome": self.outcome,
            "severity": self.severity,
            "summary": self.summary,
            "observed": self.observed,
            "expected": self.expected,
            "evidence": self.evidence,
            "duration_s": round(self.duration_s, 4),
        }
