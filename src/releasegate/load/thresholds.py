"""k6-style load thresholds: parsed from gates.yaml and the profile, evaluated against a summary.

Pure: plain data in, plain data out. A threshold is ``metric[{scope}]: condition`` where the
condition is ``<800``, ``>=5``, ... (k6 writes ``p(95)<800``; the metric name carries the
statistic here: ``http_p95_ms``). The scope is one request name as Locust reports it, either
``TYPE name`` (``GET /api/v1/conversations/[id]/messages``) or the bare name when only one
request type uses it.

gates.yaml's ``load.thresholds`` and the profile's own are merged; on the same key the policy
wins (the profile may add thresholds, never loosen the gate's).

Evaluating a threshold gives one of:

- ``passed`` / ``failed``: the metric had data and the condition held or not;
- ``no data``: nothing to judge (no sync samples for ``sync_p95_ms``, no request with that
  name): the check cannot pass on it;
- ``not applicable``: a sync metric while the profile runs no SyncUser (ignored, and said so);
- ``ambiguous``: a bare name that several request types share (write ``TYPE name``).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from releasegate.load.results import LoadSummary, NameStats

Op = Literal["<", "<=", ">", ">=", "=="]
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
}
_CONDITION = re.compile(r"^\s*(<=|>=|==|<|>)\s*(-?[0-9]+(?:\.[0-9]+)?)\s*$")
_KEY = re.compile(r"^\s*([a-z0-9_]+)\s*(?:\{(.*)\})?\s*$", re.DOTALL)

LATENCY_METRICS: dict[str, tuple[Literal["http", "sync"], str]] = {
    "http_p50_ms": ("http", "p50_ms"),
    "http_p95_ms": ("http", "p95_ms"),
    "http_p99_ms": ("http", "p99_ms"),
    "http_max_ms": ("http", "max_ms"),
    "sync_p50_ms": ("sync", "p50_ms"),
    "sync_p95_ms": ("sync", "p95_ms"),
    "sync_p99_ms": ("sync", "p99_ms"),
}
SYNC_METRICS = frozenset(m for m, (kind, _) in LATENCY_METRICS.items() if kind == "sync")
COUNT_METRICS = frozenset({"fail_ratio", "rps", "requests", "dropped_iterations"})
# Counts that read 0 for a scope that names nothing (ratios and rates would divide by nothing).
ZERO_WHEN_ABSENT = frozenset({"requests", "dropped_iterations"})

EvaluationOutcome = Literal["passed", "failed", "no data", "not applicable", "ambiguous"]


@dataclass(frozen=True)
class Threshold:
    """One condition on one metric, globally or for one request name."""

    key: str  # as written, e.g. "http_p95_ms{GET /api/v1/me}"
    metric: str
    scope: str | None
    op: Op
    value: float
    abort_on_fail: bool = False
    delay_abort_eval_s: float = 0.0
    source: Literal["gates", "profile"] = "gates"

    @property
    def condition(self) -> str:
        return f"{self.op}{self.value:g}"

    def holds(self, observed: float) -> bool:
        return _OPS[self.op](observed, self.value)

    def __str__(self) -> str:
        return f"{self.key} {self.condition}"


@dataclass(frozen=True)
class Evaluation:
    """A threshold against one summary. ``observed`` is None without data; inf = lost samples."""

    threshold: Threshold
    outcome: EvaluationOutcome
    observed: float | None
    note: str = ""

    def describe(self) -> str:
        """One line for a summary: what was seen against what was expected."""
        t = self.threshold
        if self.outcome in ("passed", "failed"):
            return f"{t.key} {format_value(t.metric, self.observed)}, expected {t.condition}"
        return f"{t.key}: {self.note}"

    def evidence(self) -> dict[str, Any]:
        observed = self.observed
        return {
            "threshold": self.threshold.key,
            "condition": self.threshold.condition,
            "outcome": self.outcome,
            "observed": None if observed is None or math.isinf(observed) else round(observed, 4),
            **({"lost": True} if observed is not None and math.isinf(observed) else {}),
            **({"note": self.note} if self.note else {}),
            **({"abort_on_fail": True} if self.threshold.abort_on_fail else {}),
            "source": self.threshold.source,
        }


class ThresholdError(ValueError):
    """A threshold that cannot be read (config.py validates gates.yaml; this guards other callers)."""


def parse_key(key: str) -> tuple[str, str | None]:
    """``"http_p95_ms{GET /x}"`` -> ("http_p95_ms", "GET /x"); the bare metric -> (metric, None)."""
    match = _KEY.match(key)
    if match is None:
        raise ThresholdError(f"{key!r}: write metric or metric{{request name}}")
    scope = match.group(2)
    if scope is not None:
        scope = " ".join(scope.split())
        if not scope:
            raise ThresholdError(f"{key!r}: empty scope")
    metric = match.group(1)
    if metric not in LATENCY_METRICS and metric not in COUNT_METRICS:
        raise ThresholdError(f"{key!r}: unknown metric {metric!r}")
    return metric, scope


def _one(key: str, raw: Any, source: Literal["gates", "profile"]) -> Threshold:
    metric, scope = parse_key(key)
    if isinstance(raw, str):
        text, abort, delay = raw, False, 0.0
    elif isinstance(raw, Mapping):
        text, abort, delay = str(raw.get("condition", "")), bool(raw.get("abort_on_fail", False)), float(raw.get("delay_abort_eval_s", 0.0))
    else:  # a LoadThreshold model (config.py) or anything shaped like one
        text = str(getattr(raw, "condition", ""))
        abort = bool(getattr(raw, "abort_on_fail", False))
        delay = float(getattr(raw, "delay_abort_eval_s", 0.0))
    match = _CONDITION.match(text)
    if match is None:
        raise ThresholdError(f"{key}: {text!r} is not a condition such as '<800' or '>=5'")
    op: Op = match.group(1)  # type: ignore[assignment]  # the pattern admits only the five operators
    canonical = metric if scope is None else f"{metric}{{{scope}}}"
    return Threshold(canonical, metric, scope, op, float(match.group(2)), abort, max(0.0, delay), source)


def thresholds_of(raw: Mapping[str, Any], source: Literal["gates", "profile"]) -> list[Threshold]:
    """One mapping of ``key -> condition | [conditions] | {condition, abort_on_fail, ...}``."""
    parsed: list[Threshold] = []
    for key, value in raw.items():
        for item in value if isinstance(value, list) else [value]:
            parsed.append(_one(key, item, source))
    return parsed


def merge(policy: Mapping[str, Any], profile: Mapping[str, Any]) -> list[Threshold]:
    """gates.yaml's thresholds plus the profile's; on the same metric and scope the policy wins."""
    from_policy = thresholds_of(policy, "gates")
    taken = {t.key for t in from_policy}
    return from_policy + [t for t in thresholds_of(profile, "profile") if t.key not in taken]


# --------------------------------------------------------------------------- evaluation


def evaluate(threshold: Threshold, summary: LoadSummary, *, has_sync_users: bool = True) -> Evaluation:
    """Judge one threshold against a run's summary (see the module docstring for the outcomes)."""
    metric = threshold.metric
    if metric in SYNC_METRICS and not has_sync_users:
        return Evaluation(threshold, "not applicable", None, "not applicable: the profile runs no SyncUser")
    if threshold.scope is None:
        observed = _global(metric, summary)
        if observed is None:
            what = "sync events" if metric in SYNC_METRICS else "HTTP requests"
            return Evaluation(threshold, "no data", None, f"cannot be judged: no {what} were measured")
    else:
        matches = _scoped(threshold, summary)
        if isinstance(matches, str) and not matches.startswith("ambiguous") and metric in ZERO_WHEN_ABSENT:
            # A count of events no request was named for is zero, not missing: no drops is a measurement.
            return Evaluation(threshold, "passed" if threshold.holds(0.0) else "failed", 0.0)
        if isinstance(matches, str):
            return Evaluation(threshold, "ambiguous" if matches.startswith("ambiguous") else "no data", None, matches)
        observed = _of_name(metric, matches, summary.duration_s)
        if observed is None:
            return Evaluation(threshold, "no data", None, f"cannot be judged: no latency samples for {threshold.scope!r}")
    return Evaluation(threshold, "passed" if threshold.holds(observed) else "failed", observed)


def evaluate_all(thresholds: list[Threshold], summary: LoadSummary, *, has_sync_users: bool = True) -> list[Evaluation]:
    return [evaluate(t, summary, has_sync_users=has_sync_users) for t in thresholds]


def _global(metric: str, summary: LoadSummary) -> float | None:
    if metric in LATENCY_METRICS:
        kind, statistic = LATENCY_METRICS[metric]
        latency = summary.http if kind == "http" else summary.sync
        return None if latency is None else latency.value(statistic)
    if metric == "fail_ratio":
        return summary.fail_ratio if summary.requests + summary.sync_events > 0 else None
    if metric == "rps":
        return summary.rps if summary.duration_s > 0 else None
    if metric == "requests":
        return float(summary.requests)
    return float(summary.dropped_iterations)  # dropped_iterations: 0 is a measurement, not missing data


def _scoped(threshold: Threshold, summary: LoadSummary) -> NameStats | str:
    """The one name the scope selects, or why there is none."""
    scope = threshold.scope or ""
    exact = [n for n in summary.by_name if n.label == scope]
    if exact:
        return exact[0]
    bare = [n for n in summary.by_name if n.name == scope]
    if metric_kind := LATENCY_METRICS.get(threshold.metric):
        bare = [n for n in bare if n.kind == metric_kind[0]]
    if len(bare) == 1:
        return bare[0]
    if len(bare) > 1:
        labels = ", ".join(sorted(n.label for n in bare))
        return f"ambiguous: {scope!r} is the name of several request types ({labels}); write one of them in the braces"
    known = ", ".join(n.label for n in sorted(summary.by_name, key=lambda n: -n.requests)[:5]) or "none"
    return f"cannot be judged: no request named {scope!r} was made (most frequent: {known})"


def _of_name(metric: str, stats: NameStats, duration_s: float) -> float | None:
    if metric in LATENCY_METRICS:
        return None if stats.latency is None else stats.latency.value(LATENCY_METRICS[metric][1])
    if metric == "fail_ratio":
        return stats.failures / stats.requests if stats.requests else None
    if metric == "rps":
        return stats.requests / duration_s if duration_s > 0 else None
    return float(stats.requests)  # requests, dropped_iterations{name}: how many such events


def format_value(metric: str, value: float | None) -> str:
    if value is None:
        return "no data"
    if math.isinf(value):
        return "lost (never arrived)"
    if metric.endswith("_ms"):
        return f"{value:.1f} ms"
    if metric == "fail_ratio":
        return f"{value:.4f} ({value:.1%})"
    if metric == "rps":
        return f"{value:.1f}/s"
    return f"{value:g}"
