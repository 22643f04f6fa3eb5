"""Terminal lines: one progress line per check, then the decision and its reasons."""

from __future__ import annotations

from releasegate.decision import Judgement
from releasegate.results import CheckResult

_LABEL = {"passed": "PASS", "failed": "FAIL", "warned": "WARN", "error": "ERROR", "skipped": "SKIP", "waived": "WAIVED"}
_MARKUP = {
    "passed": {"green": True},
    "failed": {"red": True, "bold": True},
    "warned": {"yellow": True},
    "error": {"red": True},
    "skipped": {},
    "waived": {"cyan": True},
}
DECISION_MARKUP = {
    "pass": {"green": True, "bold": True},
    "promote": {"green": True, "bold": True},
    "hold": {"yellow": True, "bold": True},
    "rollback": {"red": True, "bold": True},
}


def progress_line(result: CheckResult) -> tuple[str, dict[str, bool]]:
    """``(text, markup)``: e.g. ``  FAIL   health.readiness  answered HTTP 503 (0.02 s)``."""
    summary = result.summary if len(result.summary) <= 140 else result.summary[:137] + "..."
    return f"  {_LABEL[result.outcome]:<6} {result.id:<28} {summary} ({result.duration_s:.2f} s)", _MARKUP[result.outcome]


def decision_lines(judgement: Judgement, *, stage: str, target: str, dry_run: bool) -> list[str]:
    dry = "  [dry run: would exit " + str(judgement.decision.exit_code) + ", exiting 0]" if dry_run else ""
    lines = [f"releasegate {stage} on {target}: {judgement.decision.value.upper()}{dry}"]
    lines += [f"  - {reason}" for reason in judgement.reasons]
    lines += [f"  note: {note}" for note in judgement.notes]
    return lines
