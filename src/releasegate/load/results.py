"""What a load run measured, and the gate's judgement of it: pure, no Locust, no I/O.

The Locust subprocess (:mod:`releasegate.load.run`) records every request event as a raw
sample into a :class:`SampleBook`, summarises it into a :class:`LoadSummary` and writes that to
``results.json``; the gate process reads it back (:meth:`LoadSummary.from_json`) and
:func:`judge` turns it into one :class:`~releasegate.results.Finding`.

Samples are raw because Locust's own percentiles are bucketed to two significant digits
(147 ms is counted as 150). The book is bounded: it keeps at most ``cap`` samples of each kind
(HTTP, sync, arrival) as a uniform random sample of all of that kind's events (reservoir
sampling, Algorithm R, seeded so a run's artifacts are reproducible), so a long run's
percentiles describe the whole run and not only its first ``cap`` events; requests and failures
per name are counted exactly whatever the cap, and past ``max_names`` distinct names new names
are counted under ``(other names)``. It also keeps the last ``WINDOW`` samples of each kind
(:meth:`SampleBook.window_summary`): ``abort_on_fail`` is judged every second on those, so its
cost per evaluation is bounded however long the run; the final verdict uses every kept sample.

Sample kinds, from Locust's request type: ``WS`` is a sync event (edit -> event latency; a
failed one is lost, ``inf``, so it pushes the upper percentiles up instead of vanishing),
``ARRIVAL`` an open-model arrival that found no free user or was never made before the run
stopped (a dropped iteration, not a request) or, named ``iteration cut at stop``, an iteration
killed in flight when the run stopped (counted apart, ``cut_iterations``: work lost at the end,
not load the service refused), anything else an HTTP request. The sync latency metrics pool the sync samples that time a round
trip (names with ``->``, such as ``sync edit->event``); ``sync connect`` counts as a sync event
(its failures count) but its handshake time is not an event latency. ``fail_ratio`` counts HTTP and sync failures together;
``requests`` and ``rps`` are HTTP requests only; ``min_requests`` is about HTTP requests.

Judgement, collecting everything first and deciding once:

1. a run-level problem (workers never connected, the run overran its bound) -> error;
2. a saturated load generator (sustained CPU over ``max_generator_cpu_percent``) -> error:
   it measured itself, not the service;
3. an ``abort_on_fail`` threshold that stopped the run -> failed;
4. fewer HTTP requests than ``min_requests`` -> error (inconclusive);
5. any threshold failed -> failed; any that could not be judged (no data) -> error;
6. otherwise passed.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from releasegate.load.thresholds import Evaluation, Threshold, evaluate_all, format_value
from releasegate.results import Finding
from releasegate.stats import LatencySummary, summarize

SampleKind = Literal["http", "sync", "arrival"]
# (epoch seconds, request type, name, response time ms, failed)
Sample = tuple[float, str, str, float, bool]

DEFAULT_SAMPLE_CAP = 200_000  # per kind
# abort_on_fail is judged on at most this many of the latest samples per kind.
WINDOW = 5_000
RESERVOIR_SEED = 20_240_601
DEFAULT_MAX_NAMES = 200
OTHER_NAMES = "(other names)"
# The ARRIVAL sample of an open-model iteration killed in flight at stop (loadtests/rg_users.py).
CUT_AT_STOP = "iteration cut at stop"
# Evidence lists at most this many request names (the most frequent).
EVIDENCE_NAMES = 20
# A load generator is saturated when its CPU stays over the limit for this many 1-s readings
# in a row: Locust's own cpu_warning is a mean over its monitor interval as well, and a single
# busy second (spawning users, TLS handshakes) says nothing about the measurements.
CPU_WINDOW_S = 5


def kind_of(request_type: str) -> SampleKind:
    if request_type == "WS":
        return "sync"
    if request_type == "ARRIVAL":
        return "arrival"
    return "http"


def is_round_trip(name: str) -> bool:
    """A sync sample name that times an event's round trip ("sync edit->event"), not a handshake."""
    return "->" in name


@dataclass(frozen=True)
class NameStats:
    """One request name (per request type): counts over the whole run, latency of the kept samples."""

    request_type: str
    name: str
    requests: int
    failures: int
    latency: LatencySummary | None

    @property
    def kind(self) -> SampleKind:
        return kind_of(self.request_type)

    @property
    def label(self) -> str:
        return f"{self.request_type} {self.name}"

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.request_type,
            "name": self.name,
            "requests": self.requests,
            "failures": self.failures,
            "latency": _latency_json(self.latency),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NameStats:
        return cls(str(data["type"]), str(data["name"]), int(data["requests"]), int(data["failures"]), _latency_from(data.get("latency")))


@dataclass(frozen=True)
class CpuReading:
    """The load generator's CPU (percent of one core) per process, one reading a second."""

    by_process: Mapping[str, Sequence[float]] = field(default_factory=dict)

    @property
    def sustained_max(self) -> float | None:
        """The highest mean over CPU_WINDOW_S consecutive readings of any one process."""
        means = [_window_max(values, CPU_WINDOW_S) for values in self.by_process.values() if values]
        return max(means) if means else None

    @property
    def peak(self) -> float | None:
        values = [max(v) for v in self.by_process.values() if v]
        return max(values) if values else None

    @property
    def mean(self) -> float | None:
        values = [x for v in self.by_process.values() for x in v]
        return sum(values) / len(values) if values else None


def _window_max(values: Sequence[float], window: int) -> float:
    if len(values) <= window:
        return sum(values) / len(values)
    total = sum(values[:window])
    best = total
    for i in range(window, len(values)):
        total += values[i] - values[i - window]
        best = max(best, total)
    return best / window


@dataclass(frozen=True)
class LoadSummary:
    """What one load run measured (interface for the gate, infra.capacity and the reports)."""

    requests: int  # HTTP requests
    failures: int  # failed HTTP requests
    sync_events: int
    sync_failures: int
    fail_ratio: float  # (failures + sync_failures) / (requests + sync_events); 0 with neither
    rps: float  # HTTP requests per second over duration_s
    http: LatencySummary | None
    sync: LatencySummary | None
    dropped_iterations: int
    peak_users: int
    concurrent_conversations: int  # peak of ConversationUsers + SyncUsers at the same time
    duration_s: float
    generator_cpu_percent_max: float | None  # sustained (CPU_WINDOW_S mean), busiest process
    generator_cpu_percent_peak: float | None  # highest single 1-s reading
    generator_cpu_percent_mean: float | None
    cpu_warning: bool  # Locust's own cpu_warning fired (master or any worker)
    workers: int  # worker processes (0: one local process)
    by_name: tuple[NameStats, ...] = ()
    samples_kept: int = 0
    samples_dropped: int = 0  # counted, but not in the kept (reservoir) sample: no latency kept
    aborted: str | None = None  # "<threshold> <observed>" when abort_on_fail stopped the run
    problem: str | None = None  # the run itself went wrong (workers missing, bound overrun)
    # Time-weighted means over the load (user-seconds / seconds, sampled once a second), beside
    # the peaks: a whole-run cost (CPU seconds over the run) divides by these, not by a peak
    # reached only for part of the run. None: not measured (results written before they existed).
    mean_users: float | None = None
    mean_conversations: float | None = None
    cut_iterations: int = 0  # open-model iterations killed in flight when the run stopped

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "failures": self.failures,
            "sync_events": self.sync_events,
            "sync_failures": self.sync_failures,
            "fail_ratio": self.fail_ratio,
            "rps": self.rps,
            "http": _latency_json(self.http),
            "sync": _latency_json(self.sync),
            "dropped_iterations": self.dropped_iterations,
            "cut_iterations": self.cut_iterations,
            "peak_users": self.peak_users,
            "concurrent_conversations": self.concurrent_conversations,
            "mean_users": _round(self.mean_users),
            "mean_conversations": _round(self.mean_conversations),
            "duration_s": round(self.duration_s, 3),
            "generator_cpu_percent_max": _round(self.generator_cpu_percent_max),
            "generator_cpu_percent_peak": _round(self.generator_cpu_percent_peak),
            "generator_cpu_percent_mean": _round(self.generator_cpu_percent_mean),
            "cpu_warning": self.cpu_warning,
            "workers": self.workers,
            "samples_kept": self.samples_kept,
            "samples_dropped": self.samples_dropped,
            "aborted": self.aborted,
            "problem": self.problem,
            "by_name": [n.to_json() for n in self.by_name],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LoadSummary:
        """The summary written by :meth:`to_json`; KeyError/TypeError/ValueError when it is not one."""
        return cls(
            requests=int(data["requests"]),
            failures=int(data["failures"]),
            sync_events=int(data["sync_events"]),
            sync_failures=int(data["sync_failures"]),
            fail_ratio=float(data["fail_ratio"]),
            rps=float(data["rps"]),
            http=_latency_from(data.get("http")),
            sync=_latency_from(data.get("sync")),
            dropped_iterations=int(data["dropped_iterations"]),
            cut_iterations=int(data.get("cut_iterations", 0)),
            peak_users=int(data["peak_users"]),
            concurrent_conversations=int(data["concurrent_conversations"]),
            mean_users=_float_or_none(data.get("mean_users")),
            mean_conversations=_float_or_none(data.get("mean_conversations")),
            duration_s=float(data["duration_s"]),
            generator_cpu_percent_max=_float_or_none(data.get("generator_cpu_percent_max")),
            generator_cpu_percent_peak=_float_or_none(data.get("generator_cpu_percent_peak")),
            generator_cpu_percent_mean=_float_or_none(data.get("generator_cpu_percent_mean")),
            cpu_warning=bool(data.get("cpu_warning", False)),
            workers=int(data.get("workers", 0)),
            by_name=tuple(NameStats.from_json(n) for n in data.get("by_name", [])),
            samples_kept=int(data.get("samples_kept", 0)),
            samples_dropped=int(data.get("samples_dropped", 0)),
            aborted=data.get("aborted"),
            problem=data.get("problem"),
        )

    def evidence(self) -> dict[str, Any]:
        """Bounded: the totals and the most frequent request names."""
        top = sorted(self.by_name, key=lambda n: (-n.requests, n.label))[:EVIDENCE_NAMES]
        data = self.to_json()
        data["by_name"] = [
            {
                "name": n.label,
                "requests": n.requests,
                "failures": n.failures,
                **({"p95_ms": _ms(n.latency.p95_ms)} if n.latency else {}),
            }
            for n in top
        ]
        if len(self.by_name) > len(top):
            data["by_name_omitted"] = len(self.by_name) - len(top)
        return data


class SampleBook:
    """Every request event of a run, bounded (see the module docstring)."""

    def __init__(self, *, cap: int = DEFAULT_SAMPLE_CAP, max_names: int = DEFAULT_MAX_NAMES, window: int = WINDOW) -> None:
        self.cap = cap
        self.max_names = max_names
        self.reservoirs: dict[SampleKind, list[Sample]] = {"http": [], "sync": [], "arrival": []}
        self.seen: dict[SampleKind, int] = {"http": 0, "sync": 0, "arrival": 0}
        self.recent: dict[SampleKind, deque[Sample]] = {k: deque(maxlen=window) for k in self.reservoirs}
        self.counts: dict[tuple[str, str], list[int]] = {}
        self.dropped = 0
        self.random = random.Random(RESERVOIR_SEED)

    @property
    def samples(self) -> list[Sample]:
        """The kept samples of every kind, in time order."""
        return sorted((s for kept in self.reservoirs.values() for s in kept), key=lambda s: s[0])

    def _key(self, request_type: str, name: str) -> tuple[str, str]:
        key = (request_type, name)
        if key not in self.counts and len(self.counts) >= self.max_names:
            key = (request_type, OTHER_NAMES)
        return key

    def add(self, t: float, request_type: str, name: str, response_time_ms: float, failed: bool) -> None:
        # Called for every request of a run (Locust's request event): the common case, a name
        # already counted, takes one dict lookup and allocates nothing but the sample.
        key = (request_type, name)
        row = self.counts.get(key)
        if row is None:
            key = self._key(request_type, name)
            row = self.counts.setdefault(key, [0, 0])
        row[0] += 1
        row[1] += int(failed)
        sample: Sample = (t, key[0], key[1], float(response_time_ms), bool(failed))
        kind = kind_of(key[0])
        self.recent[kind].append(sample)
        self.seen[kind] += 1
        kept = self.reservoirs[kind]
        if len(kept) < self.cap:
            kept.append(sample)
            return
        # Algorithm R: the n-th event replaces a random kept one with probability cap / n.
        self.dropped += 1
        slot = self.random.randrange(self.seen[kind])
        if slot < self.cap:
            kept[slot] = sample

    def add_counts(self, request_type: str, name: str, requests: int, failures: int) -> None:
        """Events counted elsewhere (a worker over its batch cap) without their latencies."""
        key = self._key(request_type, name)
        row = self.counts.setdefault(key, [0, 0])
        row[0] += requests
        row[1] += failures
        self.dropped += requests

    def summary(
        self,
        *,
        duration_s: float,
        peak_users: int = 0,
        concurrent_conversations: int = 0,
        mean_users: float | None = None,
        mean_conversations: float | None = None,
        cpu: CpuReading | None = None,
        cpu_warning: bool = False,
        workers: int = 0,
        aborted: str | None = None,
        problem: str | None = None,
    ) -> LoadSummary:
        return summarize_samples(
            (s for kept in self.reservoirs.values() for s in kept),
            self.counts,
            duration_s=duration_s,
            peak_users=peak_users,
            concurrent_conversations=concurrent_conversations,
            mean_users=mean_users,
            mean_conversations=mean_conversations,
            cpu=cpu or CpuReading(),
            cpu_warning=cpu_warning,
            workers=workers,
            dropped=self.dropped,
            aborted=aborted,
            problem=problem,
        )

    def window_summary(self, *, duration_s: float) -> LoadSummary:
        """Exact counts, latencies of the last ``window`` samples per kind only: what
        ``abort_on_fail`` is judged on every second, at a cost that does not grow with the run."""
        return summarize_samples(
            (s for recent in self.recent.values() for s in recent),
            self.counts,
            duration_s=duration_s,
            dropped=self.dropped,
        )


def latency_value(sample: Sample) -> float:
    """A sample's latency as the statistics count it: a failed sync event never arrived (inf)."""
    _, request_type, _, response_time_ms, failed = sample
    return math.inf if failed and kind_of(request_type) == "sync" else response_time_ms


def summarize_samples(
    samples: Iterable[Sample],
    counts: Mapping[tuple[str, str], Sequence[int]],
    *,
    duration_s: float,
    peak_users: int = 0,
    concurrent_conversations: int = 0,
    mean_users: float | None = None,
    mean_conversations: float | None = None,
    cpu: CpuReading | None = None,
    cpu_warning: bool = False,
    workers: int = 0,
    dropped: int = 0,
    aborted: str | None = None,
    problem: str | None = None,
) -> LoadSummary:
    by_key: dict[tuple[str, str], list[float]] = {}
    kept = 0
    for sample in samples:
        by_key.setdefault((sample[1], sample[2]), []).append(latency_value(sample))
        kept += 1
    totals = {"http": [0, 0], "sync": [0, 0], "arrival": [0, 0]}
    cut = 0
    pooled: dict[str, list[float]] = {"http": [], "sync": []}
    names: list[NameStats] = []
    for (request_type, name), (requests, failures) in sorted(counts.items()):
        kind = kind_of(request_type)
        if kind == "arrival" and name == CUT_AT_STOP:
            cut += requests
        else:
            totals[kind][0] += requests
        totals[kind][1] += failures
        latencies = by_key.get((request_type, name), [])
        if kind == "http" or (kind == "sync" and is_round_trip(name)):
            pooled[kind].extend(latencies)
        names.append(NameStats(request_type, name, requests, failures, summarize(latencies) if latencies else None))
    requests, failures = totals["http"]
    sync_events, sync_failures = totals["sync"]
    judged = requests + sync_events
    reading = cpu or CpuReading()
    return LoadSummary(
        requests=requests,
        failures=failures,
        sync_events=sync_events,
        sync_failures=sync_failures,
        fail_ratio=(failures + sync_failures) / judged if judged else 0.0,
        rps=requests / duration_s if duration_s > 0 else 0.0,
        http=summarize(pooled["http"]) if pooled["http"] else None,
        sync=summarize(pooled["sync"]) if pooled["sync"] else None,
        # An arrival event is a dropped iteration whether or not the locustfile marked it failed.
        dropped_iterations=totals["arrival"][0],
        cut_iterations=cut,
        peak_users=peak_users,
        concurrent_conversations=concurrent_conversations,
        duration_s=duration_s,
        mean_users=mean_users,
        mean_conversations=mean_conversations,
        generator_cpu_percent_max=reading.sustained_max,
        generator_cpu_percent_peak=reading.peak,
        generator_cpu_percent_mean=reading.mean,
        cpu_warning=cpu_warning,
        workers=workers,
        by_name=tuple(names),
        samples_kept=kept,
        samples_dropped=dropped,
        aborted=aborted,
        problem=problem,
    )


# --------------------------------------------------------------------------- judgement


def judge(
    summary: LoadSummary,
    thresholds: list[Threshold],
    *,
    profile: str,
    min_requests: int,
    max_generator_cpu_percent: float,
    has_sync_users: bool,
) -> Finding:
    """The load check's one finding (the order of the rules is in the module docstring)."""
    evaluations = evaluate_all(thresholds, summary, has_sync_users=has_sync_users)
    failed = [e for e in evaluations if e.outcome == "failed"]
    unjudged = [e for e in evaluations if e.outcome in ("no data", "ambiguous")]
    observed = {e.threshold.key: _observed(e) for e in evaluations}
    expected = {
        "thresholds": {e.threshold.key: e.threshold.condition for e in evaluations if e.outcome != "not applicable"},
        "min_requests": min_requests,
        "max_generator_cpu_percent": max_generator_cpu_percent,
    }
    evidence: dict[str, Any] = {
        "profile": profile,
        "samples": summary.requests,
        "summary": summary.evidence(),
        "thresholds": [e.evidence() for e in evaluations],
    }
    headline = (
        f"{summary.requests} requests in {summary.duration_s:.1f} s ({summary.rps:.1f}/s, "
        f"{summary.fail_ratio:.1%} failed, HTTP p95 {_p95(summary.http)}, sync p95 {_p95(summary.sync)})"
    )
    cpu = summary.generator_cpu_percent_max

    if summary.problem:
        return Finding("error", f"{profile}: {summary.problem}", observed, expected, evidence)
    if cpu is not None and cpu > max_generator_cpu_percent:
        return Finding(
            "error",
            f"{profile}: the load generator was saturated (CPU {cpu:.0f}% over {CPU_WINDOW_S} s, limit "
            f"{max_generator_cpu_percent:g}%): it measured itself, not the service; run with more --workers",
            observed,
            expected,
            evidence,
        )
    if summary.aborted:
        because = "; ".join(e.describe() for e in failed) or summary.aborted
        return Finding(
            "failed", f"{profile}: aborted after {summary.duration_s:.1f} s (abort_on_fail): {because}", observed, expected, evidence
        )
    if summary.requests < min_requests:
        return Finding(
            "error",
            f"{profile}: {summary.requests} HTTP requests, fewer than min_requests {min_requests}: inconclusive ({headline})",
            observed,
            expected,
            evidence,
        )
    if failed:
        listed = "; ".join(e.describe() for e in failed)
        return Finding(
            "failed", f"{profile}: {len(failed)} of {len(evaluations)} thresholds failed: {listed}", observed, expected, evidence
        )
    if unjudged:
        listed = "; ".join(e.describe() for e in unjudged)
        return Finding("error", f"{profile}: {listed}", observed, expected, evidence)
    judged = [e for e in evaluations if e.outcome == "passed"]
    ignored = [e for e in evaluations if e.outcome == "not applicable"]
    tail = f"; {', '.join(e.threshold.key for e in ignored)} not applicable (no SyncUser)" if ignored else ""
    return Finding("passed", f"{profile}: {len(judged)} thresholds met over {headline}{tail}", observed, expected, evidence)


def abort_reason(thresholds: list[Threshold], summary: LoadSummary, *, elapsed_s: float, has_sync_users: bool) -> str | None:
    """The first abort_on_fail threshold that fails once its warm-up is over, as text; None to go on."""
    due = [t for t in thresholds if t.abort_on_fail and elapsed_s >= t.delay_abort_eval_s]
    for evaluation in evaluate_all(due, summary, has_sync_users=has_sync_users):
        if evaluation.outcome == "failed":
            return evaluation.describe()
    return None


def _observed(evaluation: Evaluation) -> Any:
    if evaluation.outcome in ("passed", "failed"):
        return format_value(evaluation.threshold.metric, evaluation.observed)
    return evaluation.outcome


def _p95(latency: LatencySummary | None) -> str:
    if latency is None:
        return "n/a"
    return "lost" if math.isinf(latency.p95_ms) else f"{latency.p95_ms:.0f} ms"


# --------------------------------------------------------------------------- JSON helpers

_LATENCY_FIELDS = ("p50_ms", "p95_ms", "p99_ms", "max_ms", "min_ms", "mean_ms")


def _latency_json(latency: LatencySummary | None) -> dict[str, Any] | None:
    if latency is None:
        return None
    # inf (lost samples) is not JSON: null inside a latency object means "lost".
    return {"samples": latency.samples, "lost": latency.lost, **{f: _ms(getattr(latency, f)) for f in _LATENCY_FIELDS}}


def _latency_from(data: Any) -> LatencySummary | None:
    if data is None:
        return None
    values = {f: math.inf if data.get(f) is None else float(data[f]) for f in _LATENCY_FIELDS}
    return LatencySummary(samples=int(data["samples"]), lost=int(data["lost"]), **values)


def _ms(value: float) -> float | None:
    return None if math.isinf(value) else round(value, 3)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)
