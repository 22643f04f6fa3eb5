"""``--baseline``: what a post-deploy check compares itself against.

Two kinds, told apart by content:

- a saved ``verdict.json`` of an earlier run (the last good release): each check's evidence is
  read back, e.g. ``slo.latency``'s ``p95_ms`` or ``business.model_quality``'s ``pass_rate``;
- a target file of a second deployment (the stable version running beside the new one): the
  check measures it the same way, at the same time, so both see the same conditions.

Relative thresholds (gates.yaml ``baseline_*``, ``max_drop_points``) apply only with a baseline;
a check that needs a number the baseline lacks says so in its evidence and judges absolutely.

A saved verdict is used whatever it decided and whatever its stage, but a run that was not
promoted, or of another stage than the one comparing against it, is a doubtful yardstick:
:meth:`SavedVerdict.caveat` says why, and the checks put it in their evidence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from releasegate._exceptions import ConfigError, Problem
from releasegate.config import LoadedTarget, load_target
from releasegate.report.verdict import SCHEMA

# Decisions of a run whose figures are a fair yardstick (pre-deploy says pass, post-deploy promote).
GOOD_DECISIONS = frozenset({"promote", "pass"})


@dataclass(frozen=True)
class SavedVerdict:
    """An earlier run's verdict.json: evidence per check id (the first row of each id), and what it decided."""

    path: Path
    stage: str
    target_name: str
    evidence: dict[str, dict[str, Any]]
    decision: str | None = None  # None: the file records none

    def number(self, check_id: str, key: str) -> float | None:
        """A numeric evidence value of one check, or None when the verdict has none."""
        value = self.evidence.get(check_id, {}).get(key)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def describe(self) -> str:
        return f"verdict {self.path} ({self.stage}, decision {self.decision or 'not recorded'}, target {self.target_name})"

    def caveat(self, stage: str = "post-deploy") -> str | None:
        """Why this verdict is a doubtful baseline for a check of ``stage`` (it is still used), or None."""
        notes = []
        if self.decision not in GOOD_DECISIONS:
            notes.append(f"the saved run decided {self.decision or 'nothing'}, not promote: its figures may be a bad release's")
        if self.stage != stage:
            notes.append(f"the saved run is of stage {self.stage}, not {stage}: its figures were measured differently")
        return "; ".join(notes) or None


@dataclass(frozen=True)
class BaselineTarget:
    """A second deployment, measured alongside the one being gated."""

    loaded: LoadedTarget

    def describe(self) -> str:
        return f"target {self.loaded.target.name} ({self.loaded.target.base_url})"


Baseline = SavedVerdict | BaselineTarget


def load_baseline(path: Path) -> Baseline:
    """Read ``path`` as a verdict.json or a target file; a ConfigError for anything else."""
    if not path.is_file():
        raise ConfigError([Problem(str(path), None, "--baseline", "file does not exist", "name a verdict.json or a target file")])
    if path.suffix.lower() == ".json":
        return _saved_verdict(path)
    return BaselineTarget(load_target(path))


def _saved_verdict(path: Path) -> SavedVerdict:
    def problem(message: str) -> ConfigError:
        return ConfigError([Problem(str(path), None, "--baseline", message, "name the verdict.json of an earlier releasegate run")])

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise problem(f"not readable as JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("checks"), list):
        raise problem(f"not a releasegate verdict (expected schema {SCHEMA!r} and a checks list)")
    evidence: dict[str, dict[str, Any]] = {}
    for row in data["checks"]:
        if isinstance(row, dict) and isinstance(row.get("id"), str) and isinstance(row.get("evidence"), dict):
            # A baseline measurement only counts when the check could measure at all.
            if row.get("outcome") in ("passed", "warned", "failed", "waived"):
                evidence.setdefault(row["id"], row["evidence"])
    decision = data.get("decision")
    return SavedVerdict(
        path=path.resolve(),
        stage=str(data.get("stage")),
        target_name=str(data.get("target")),
        evidence=evidence,
        decision=decision if isinstance(decision, str) else None,
    )
