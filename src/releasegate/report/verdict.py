"""verdict.json: the machine-readable contract (design.md, schema releasegate.verdict/v1)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from releasegate.decision import Judgement
from releasegate.results import Stage

SCHEMA = "releasegate.verdict/v1"


@dataclass(frozen=True)
class RunFacts:
    """What the report needs to know about the run besides the judgement."""

    stage: Stage
    target: str
    started_at: datetime
    finished_at: datetime
    dry_run: bool = False


def iso(moment: datetime) -> str:
    """UTC with a Z; an aware time in another zone is converted first (a naive one is taken as UTC)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def verdict_document(facts: RunFacts, judgement: Judgement) -> dict[str, Any]:
    document: dict[str, Any] = {
        "schema": SCHEMA,
        "stage": facts.stage,
        "target": facts.target,
        "decision": judgement.decision.value,
        "exit_code": judgement.decision.exit_code,
        "reasons": list(judgement.reasons),
        "checks": [result.to_json() for result in judgement.results],
        "started_at": iso(facts.started_at),
        "finished_at": iso(facts.finished_at),
    }
    # Additions to v1 (documented in docs/contract.md): readers must ignore keys they do not know.
    document["dry_run"] = facts.dry_run
    document["notes"] = list(judgement.notes)
    document["counts"] = dict(Counter(r.outcome for r in judgement.results))
    return document
