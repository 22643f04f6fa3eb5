"""Plain data of the canary stage: the samples collected per interval, and what the judge made of them.

The collector (:mod:`releasegate.canary.collect`) fills one :class:`IntervalSamples` per
interval; the run (:mod:`releasegate.canary.run`) keeps them in a :class:`CanaryRecord`, saved
as ``samples.json`` after every interval so that ``releasegate canary replay`` can judge them
again under another policy; the judge (:mod:`releasegate.canary.judge`, pure) turns the
cumulative samples of each look into a :class:`LookJudgement`. Nothing here does I/O except
:func:`save_record` and :func:`load_record`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from releasegate._exceptions import ConfigError, Problem

SAMPLES_SCHEMA = "releasegate.canary-samples/v1"

MetricKind = Literal["latency", "rate"]
# passed: shown within the allowed effect (or, at the last look, judged with enough samples and
# not worse); failed: significantly worse and beyond the allowed effect; undecided: neither yet;
# nodata: fewer than min_samples on a side (never a pass, never a fail).
MetricState = Literal["passed", "failed", "undecided", "nodata"]
# continue: only at a look before the last, when nothing is decided yet.
LookDecision = Literal["promote", "rollback", "hold", "continue"]
RunDecision = Literal["promote", "rollback", "hold"]


@dataclass(frozen=True)
class LatencySamples:
    """One side's values of a latency-like metric: positive and finite (milliseconds for the probes).

    ``dropped`` counts values the collector could not use (NaN or non-positive Prometheus points);
    a request that got no answer is not a latency sample: it is an error of the rate metric.
    """

    values: tuple[float, ...]
    dropped: int = 0

    @property
    def n(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class RateSamples:
    """One side's events out of trials (errors out of requests)."""

    events: int
    trials: int

    @property
    def n(self) -> int:
        return self.trials


Side = LatencySamples | RateSamples


@dataclass(frozen=True)
class MetricSamples:
    """Both sides of one metric, for one interval or (summed) for all intervals so far."""

    name: str
    kind: MetricKind
    baseline: Side
    canary: Side
    # What went wrong collecting (a probe error, an empty query): shown beside the judgement.
    problems: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        wanted = LatencySamples if self.kind == "latency" else RateSamples
        if not isinstance(self.baseline, wanted) or not isinstance(self.canary, wanted):
            raise TypeError(f"metric {self.name}: a {self.kind} metric holds {wanted.__name__} on both sides")


@dataclass(frozen=True)
class IntervalSamples:
    """What one interval collected, per metric name."""

    index: int  # 1-based
    started_at: str  # ISO 8601, UTC
    duration_s: float
    metrics: Mapping[str, MetricSamples]


def merge(first: MetricSamples, second: MetricSamples) -> MetricSamples:
    """Samples of two intervals as one (values concatenated, counts summed)."""
    if (first.name, first.kind) != (second.name, second.kind):
        raise ValueError(f"cannot merge {first.name} ({first.kind}) with {second.name} ({second.kind})")

    def side(a: Side, b: Side) -> Side:
        if isinstance(a, LatencySamples) and isinstance(b, LatencySamples):
            return LatencySamples(a.values + b.values, a.dropped + b.dropped)
        if isinstance(a, RateSamples) and isinstance(b, RateSamples):
            return RateSamples(a.events + b.events, a.trials + b.trials)
        raise TypeError("sides of different kinds")

    return MetricSamples(
        first.name,
        first.kind,
        side(first.baseline, second.baseline),
        side(first.canary, second.canary),
        tuple(dict.fromkeys(first.problems + second.problems)),  # the same problem each interval: once
    )


def cumulative(intervals: Sequence[IntervalSamples]) -> dict[str, MetricSamples]:
    """Everything the given intervals collected, per metric: what a look judges."""
    total: dict[str, MetricSamples] = {}
    for interval in intervals:
        for name, samples in interval.metrics.items():
            total[name] = merge(total[name], samples) if name in total else samples
    return total


# --------------------------------------------------------------------------- judgements


@dataclass(frozen=True)
class MetricJudgement:
    """One metric at one look: the figures of both sides, the test, and what it decided and why."""

    name: str
    kind: MetricKind
    state: MetricState
    critical: bool
    weight: float
    test: str  # "mann-whitney" | "fisher" | "none" (no data)
    direction: str
    n_baseline: int
    n_canary: int
    # latency: {"median": .., "p95": ..}; rate: {"rate": .., "events": .., "trials": ..}
    baseline: Mapping[str, float | int | None]
    canary: Mapping[str, float | int | None]
    # Canary over baseline: the Hodges-Lehmann ratio (latency) or the ratio of rates (rate).
    ratio: float | None
    # Confidence interval of that ratio at this look's confidence (two-sided 1 - 2 * alpha).
    ci: tuple[float, float] | None
    confidence: float | None
    statistic: float | None  # Mann-Whitney U of the canary, or the canary's event count (Fisher)
    p_value: float | None  # one-sided, toward "worse" (the smaller of the two sides for either)
    alpha: float  # the one-sided level this look tests at (after the correction for repeated looks)
    # latency: probability that a canary sample exceeds a baseline one (0.5 = no difference);
    # rate: canary rate minus baseline rate.
    effect_size: float | None
    allowed: float  # allowed_increase (or allowed_decrease for direction decrease)
    reason: str  # one line: why this state
    flip: str  # what would change the state

    def as_dict(self) -> dict[str, Any]:
        return _json_object(asdict(self))


@dataclass(frozen=True)
class LookJudgement:
    """Every metric at one look, the score, and the decision the look takes."""

    look: int  # 1-based
    max_looks: int
    decision: LookDecision
    score: float  # 0-100: weighted share of passed metrics
    max_score: float  # the score if every undecided and no-data metric passed
    metrics: tuple[MetricJudgement, ...]
    reasons: tuple[str, ...]

    @property
    def final(self) -> bool:
        return self.look >= self.max_looks

    def as_dict(self) -> dict[str, Any]:
        out = _json_object(asdict(self))
        out["final"] = self.final
        return out


@dataclass(frozen=True)
class RunJudgement:
    """All looks taken (the run stops at the first that decides) and the run's decision."""

    decision: RunDecision
    looks: tuple[LookJudgement, ...]
    reasons: tuple[str, ...] = field(default=())

    @property
    def last(self) -> LookJudgement | None:
        return self.looks[-1] if self.looks else None

    def as_dict(self) -> dict[str, Any]:
        return _json_object(asdict(self))


def _json_object(value: dict[str, Any]) -> dict[str, Any]:
    safe: dict[str, Any] = json_safe(value)
    return safe


def json_safe(value: Any) -> Any:
    """``value`` with tuples as lists and non-finite floats as strings ("inf", "nan"): JSON has neither."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


# --------------------------------------------------------------------------- samples.json


@dataclass(frozen=True)
class CanaryRecord:
    """What a canary run saves: enough to judge it again (``releasegate canary replay``)."""

    target: str
    policy: Mapping[str, Any]  # gates.yaml's canary section as the run used it (by alias)
    intervals: tuple[IntervalSamples, ...]


def record_to_json(record: CanaryRecord) -> dict[str, Any]:
    def side(s: Side) -> dict[str, Any]:
        if isinstance(s, LatencySamples):
            return {"values": list(s.values), "dropped": s.dropped}
        return {"events": s.events, "trials": s.trials}

    return {
        "schema": SAMPLES_SCHEMA,
        "target": record.target,
        "policy": json_safe(record.policy),
        "intervals": [
            {
                "index": i.index,
                "started_at": i.started_at,
                "duration_s": i.duration_s,
                "metrics": {
                    name: {"kind": m.kind, "baseline": side(m.baseline), "canary": side(m.canary), "problems": list(m.problems)}
                    for name, m in i.metrics.items()
                },
            }
            for i in record.intervals
        ],
    }


def save_record(path: Path, record: CanaryRecord) -> None:
    """Write samples.json atomically (a reader never sees half a file, even mid-run)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(record_to_json(record), separators=(",", ":")), encoding="utf-8")
    partial.replace(path)


def load_record(path: Path) -> CanaryRecord:
    """Read a samples.json; ConfigError naming the file and the first thing wrong with it."""
    shown = str(path)

    def problem(where: str, message: str, fix: str = "pass the samples.json a canary run wrote (in its report dir)") -> ConfigError:
        return ConfigError([Problem(shown, None, where, message, fix)])

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise problem("", "no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise problem("", f"not readable as JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != SAMPLES_SCHEMA:
        raise problem("schema", f"not a canary samples file (schema must be {SAMPLES_SCHEMA!r})")
    intervals: list[IntervalSamples] = []
    raw_intervals = data.get("intervals")
    if not isinstance(raw_intervals, list):
        raise problem("intervals", "must be a list")
    for i, raw in enumerate(raw_intervals):
        where = f"intervals[{i}]"
        try:
            metrics = {name: _metric_from_json(name, m) for name, m in raw["metrics"].items()}
            intervals.append(IntervalSamples(int(raw["index"]), str(raw["started_at"]), float(raw["duration_s"]), metrics))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise problem(where, f"malformed interval: {exc!r}") from None
    policy = data.get("policy")
    return CanaryRecord(str(data.get("target", "")), policy if isinstance(policy, dict) else {}, tuple(intervals))


def _metric_from_json(name: str, raw: Mapping[str, Any]) -> MetricSamples:
    kind = raw["kind"]
    if kind == "latency":
        sides: list[Side] = [
            LatencySamples(tuple(float(v) for v in raw[s]["values"]), int(raw[s].get("dropped", 0))) for s in ("baseline", "canary")
        ]
    elif kind == "rate":
        sides = [RateSamples(int(raw[s]["events"]), int(raw[s]["trials"])) for s in ("baseline", "canary")]
    else:
        raise ValueError(f"metric {name}: unknown kind {kind!r}")
    return MetricSamples(name, kind, sides[0], sides[1], tuple(str(p) for p in raw.get("problems", ())))
