"""The canary section of summary.md: the judge's deciding look as a Markdown table.

Rendered from canary.judge's evidence (a :class:`releasegate.canary.model.RunJudgement` as a
dict, see releasegate.canary.run.judge_finding), so it shows whatever the verdict holds: per
metric n, both sides' median/p95 (latency) or rate (events/trials), the ratio canary/baseline and
its interval, p against this look's alpha, and the state; then the score, the looks taken and the
decision. Pure: data in, text out. Nothing is shown for a run without a canary.judge result or
without looks (its reasons are already in the summary).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from releasegate.results import CheckResult

JUDGE_ID = "canary.judge"
_STATE = {"passed": "✅ passed", "failed": "❌ failed", "undecided": "⏸️ undecided", "nodata": "⚠️ no data"}


def canary_blocks(results: Sequence[CheckResult]) -> list[str]:
    """Markdown blocks (each whole) for the canary judge's result; [] when there is none."""
    judge = next((r for r in results if r.id == JUDGE_ID), None)
    if judge is None:
        return []
    looks = judge.evidence.get("looks")
    if not isinstance(looks, list) or not looks or not isinstance(looks[-1], Mapping):
        return []
    last: Mapping[str, Any] = looks[-1]
    metrics = [m for m in last.get("metrics", []) if isinstance(m, Mapping)]
    history = ", ".join(f"{_get(look, 'look')}: {_get(look, 'decision')} ({_num(look.get('score'), 0)})" for look in looks)
    decision = str(judge.evidence.get("decision", "?"))
    blocks = [
        "",
        "### Canary",
        "",
        f"Decision **{decision}** at look {_get(last, 'look')} of {_get(last, 'max_looks')}: score {_num(last.get('score'), 1)}, "
        f"max score {_num(last.get('max_score'), 1)}. Looks (decision, score): {_inline(history)}.",
        "",
        "| metric | n baseline/canary | baseline | canary | ratio | CI | p | alpha | state |\n|---|---|---|---|---|---|---|---|---|",
    ]
    blocks += [_row(m) for m in metrics]
    blocks.append("\nbaseline/canary: median/p95 in ms (latency) or rate (events/trials); ratio canary/baseline; * critical.")
    return blocks


def _row(m: Mapping[str, Any]) -> str:
    ci = m.get("ci")
    interval = f"{_num(ci[0], 3)}-{_num(ci[1], 3)}" if isinstance(ci, list) and len(ci) == 2 else "—"
    confidence = m.get("confidence")
    if interval != "—" and isinstance(confidence, (int, float)):
        interval += f" ({confidence:.1%})"
    name = f"{m.get('name', '?')}{' *' if m.get('critical') else ''}"
    kind = str(m.get("kind", ""))
    cells = [
        name,
        f"{_get(m, 'n_baseline')}/{_get(m, 'n_canary')}",
        _side(kind, m.get("baseline")),
        _side(kind, m.get("canary")),
        _num(m.get("ratio"), 3),
        interval,
        _p(m.get("p_value")),
        _p(m.get("alpha")),
        _STATE.get(str(m.get("state")), str(m.get("state"))),
    ]
    return "| " + " | ".join(_inline(c) for c in cells) + " |"


def _side(kind: str, figures: Any) -> str:
    if not isinstance(figures, Mapping) or not figures:
        return "—"
    if kind == "latency":
        return f"{_num(figures.get('median'), 1)}/{_num(figures.get('p95'), 1)}"
    rate = figures.get("rate")
    shown = f"{rate:.2%}" if isinstance(rate, (int, float)) and math.isfinite(rate) else "—"
    return f"{shown} ({figures.get('events', '?')}/{figures.get('trials', '?')})"


def _num(value: Any, digits: int) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "—" if value is None else str(value)  # json_safe writes "inf" / "nan" as strings
    return f"{value:.{digits}f}"


def _p(value: Any) -> str:
    return f"{value:.2g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "—"


def _get(mapping: Mapping[str, Any], key: str) -> str:
    value = mapping.get(key)
    return "?" if value is None else str(value)


def _inline(text: str) -> str:
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")
