"""The canary stage's interval loop: collect an interval, save it, judge everything so far, repeat.

::

    run = run_canary(loaded, gates, report_dir=folder, deadline=time.monotonic() + 600)
    run.judgement.decision      # promote | rollback | hold
    run.samples_path            # samples.json, rewritten after every interval
    run.plots                   # metric name -> PNG of both sides' latency distributions

For k = 1 .. ``max_intervals``: the collector (:class:`releasegate.canary.collect.CanaryCollector`)
gathers interval k from both sides, ``samples.json`` is rewritten (so a run cut short still leaves
every finished interval for ``releasegate canary replay``), and the judge looks at the cumulative
samples of intervals 1..k. The first look that does not say *continue* ends the run.

**Bounded by the run's deadline.** An interval is started only when it can finish before the
deadline: ``interval_s`` plus one probe timeout (the last request may take that long to answer)
plus one more for Prometheus when a metric reads it (:func:`interval_budget_s`). A run that stops
early (deadline, a collector that raised) is judged as incomplete: a trailing *continue* becomes
*hold*, with the reason first. The collector is always closed.

The checks (checks/canary) turn a :class:`CanaryRun` into findings with :func:`judge_finding` and
:func:`metric_finding`; a target and policy that cannot work together (:func:`setup_problems`) are
reported without probing anything, by :func:`setup_finding`. Nothing here prints a token: the
collector redacts its problem texts, and the gate redacts every finding and the report folder.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from releasegate.canary import judge
from releasegate.canary.model import (
    CanaryRecord,
    IntervalSamples,
    LookJudgement,
    MetricJudgement,
    MetricSamples,
    RunJudgement,
    cumulative,
    merge,
    save_record,
)
from releasegate.config import CanaryMetric, CanaryPolicy, Gates, LoadedTarget
from releasegate.results import Finding

__all__ = [
    "EXPLANATION_FILE",
    "SAMPLES_FILE",
    "CanaryRun",
    "Collector",
    "SetupProblem",
    "StageOutcome",
    "interval_budget_s",
    "judge_finding",
    "look_line",
    "metric_finding",
    "run_canary",
    "run_stage",
    "setup_finding",
    "setup_problems",
]

SAMPLES_FILE = "samples.json"
# The judge's table (releasegate.canary.judge.explain) as the terminal shows it.
EXPLANATION_FILE = "canary.txt"

Clock = Callable[[], float]
Progress = Callable[[str], None]


class Collector(Protocol):
    """What the loop needs of a collector (:class:`releasegate.canary.collect.CanaryCollector`)."""

    def open(self, budget_s: float) -> None: ...

    def collect(self, index: int, interval_s: float, *, budget_s: float) -> IntervalSamples: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------- target x policy


@dataclass(frozen=True)
class SetupProblem:
    """The target and the policy cannot work together: a key to add, and which metrics it starves."""

    key: str  # the target key to set, e.g. canary.baseline_url
    message: str
    fix: str
    metrics: tuple[str, ...]  # the policy's metrics this leaves without data

    def text(self) -> str:
        return f"{self.message} (key: {self.key}): {self.fix}"


def setup_problems(loaded: LoadedTarget, gates: Gates) -> tuple[SetupProblem, ...]:
    """What the target lacks for the policy's canary metrics; empty when a run can start.

    Only what the two files say: a missing token or a side that does not answer is a
    measurement (the collector reports it per metric as no data).
    """
    target, settings = loaded.target, loaded.target.canary
    metrics = gates.canary.metrics
    every = tuple(m.name for m in metrics)
    if settings is None:
        return (
            SetupProblem(
                "canary",
                "the target names no canary section",
                "add canary: {baseline_url: <stable version's URL>, canary_url: <new version's URL>} to the target file "
                "(docs/canary.md); without it there is nothing to compare, so the canary cannot be promoted",
                every,
            ),
        )
    problems: list[SetupProblem] = []
    http = tuple(m.name for m in metrics if m.source == "probe" and m.probe in ("http_latency", "http_errors"))
    if http and settings.baseline_url is None:
        problems.append(
            SetupProblem(
                "canary.baseline_url",
                f"the policy's probe metrics ({', '.join(http)}) compare against a baseline but the target names none",
                "set canary.baseline_url to the stable version's URL",
                http,
            )
        )
    sync = tuple(m.name for m in metrics if m.source == "probe" and m.probe == "sync_latency")
    if sync:
        needs = ", ".join(sync)
        if settings.baseline_ws_url is None:
            problems.append(
                SetupProblem(
                    "canary.baseline_ws_url",
                    f"the policy's sync metrics ({needs}) need the baseline's WebSocket URL",
                    "set canary.baseline_ws_url (e.g. wss://stable.example.test/ws)",
                    sync,
                )
            )
        if settings.canary_ws_url is None and target.ws_url is None:
            problems.append(
                SetupProblem(
                    "canary.canary_ws_url",
                    f"the policy's sync metrics ({needs}) need the canary's WebSocket URL",
                    "set canary.canary_ws_url (or ws_url)",
                    sync,
                )
            )
        if target.sync is None:
            problems.append(
                SetupProblem(
                    "sync", f"the policy's sync metrics ({needs}) need to know how to join a conversation", "add the sync section", sync
                )
            )
        if target.scenarios is None:
            problems.append(
                SetupProblem(
                    "scenarios",
                    f"the policy's sync metrics ({needs}) run the sync setup driver, which lives in the scenarios folder",
                    "set scenarios to the folder with drivers/",
                    sync,
                )
            )
    prometheus = tuple(m.name for m in metrics if m.source == "prometheus")
    if prometheus and settings.prometheus is None:
        problems.append(
            SetupProblem(
                "canary.prometheus",
                f"the policy's Prometheus metrics ({', '.join(prometheus)}) need a Prometheus and a selector per side",
                "set canary.prometheus: {url, baseline_selector, canary_selector}",
                prometheus,
            )
        )
    return tuple(problems)


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class CanaryRun:
    """What one canary run collected and decided, and where its artifacts are."""

    judgement: RunJudgement
    intervals: tuple[IntervalSamples, ...]
    samples_path: Path
    explanation_path: Path | None
    plots: Mapping[str, Path]  # latency metric name -> PNG (metrics with samples on a side)
    # Why collection ended before a look decided (deadline, a collector that failed), or None.
    stopped: str | None
    duration_s: float
    # Reported, not deciding: a chart that could not be drawn.
    notes: tuple[str, ...] = field(default=())

    @property
    def artifacts(self) -> tuple[Path, ...]:
        paths = [self.samples_path, *([self.explanation_path] if self.explanation_path else []), *self.plots.values()]
        return tuple(p for p in paths if p.is_file())


@dataclass(frozen=True)
class StageOutcome:
    """What the canary stage got: the setup problems that kept the run from starting, or the run."""

    problems: tuple[SetupProblem, ...]
    run: CanaryRun | None


def run_stage(loaded: LoadedTarget, gates: Gates, *, report_dir: Path, deadline: float, progress: Progress | None = None) -> StageOutcome:
    """The stage's one run: nothing is probed when the target cannot serve the policy (:func:`setup_problems`)."""
    problems = setup_problems(loaded, gates)
    if problems:
        return StageOutcome(problems, None)
    return StageOutcome((), run_canary(loaded, gates, report_dir=report_dir, deadline=deadline, progress=progress))


def interval_budget_s(gates: Gates) -> float:
    """Wall time one interval may take: interval_s, the last probe's answer, and Prometheus' if asked.

    The last HTTP request of an interval may take a probe timeout to answer, the last sync
    round trip up to the sync timeout; the Prometheus queries come after both.
    """
    policy = gates.canary
    tail = gates.probe.timeout_s
    if any(m.source == "probe" and m.probe == "sync_latency" for m in policy.metrics):
        tail = max(tail, gates.thresholds.sync_latency.timeout_ms / 1000.0)
    prometheus = gates.probe.timeout_s if any(m.source == "prometheus" for m in policy.metrics) else 0.0
    return policy.interval_s + tail + prometheus


def run_canary(
    loaded: LoadedTarget,
    gates: Gates,
    *,
    report_dir: Path,
    deadline: float,
    clock: Clock = time.monotonic,
    collector: Collector | None = None,
    progress: Progress | None = None,
) -> CanaryRun:
    """Collect and judge interval by interval until a look decides, the looks run out, or time does.

    ``deadline`` is on ``clock`` (monotonic seconds, like the gate run's deadline). ``collector``
    defaults to a :class:`~releasegate.canary.collect.CanaryCollector` of the target; ``progress``
    gets one line per look (default: stderr). Never raises for a measurement: a collector that
    fails ends the run (hold, with the reason).
    """
    policy = gates.canary
    began = clock()
    say = progress if progress is not None else _stderr
    if collector is None:
        from releasegate.canary.collect import CanaryCollector

        collector = CanaryCollector(loaded, gates)
    report_dir.mkdir(parents=True, exist_ok=True)
    samples_path = report_dir / SAMPLES_FILE
    record = CanaryRecord(loaded.target.name, policy.model_dump(mode="json", by_alias=True), ())
    save_record(samples_path, record)  # the policy is on file even if no interval finishes

    need = interval_budget_s(gates)
    intervals: list[IntervalSamples] = []
    total: dict[str, MetricSamples] = {}
    stopped: str | None = None
    say(_opening_line(loaded, policy))
    # Whatever the collector raises ends the run without evidence (hold), never the gate: a crash
    # of the probes is not a verdict on the canary. Only the collector's own calls are guarded.
    try:
        left = deadline - clock()
        if left < need:
            stopped = _no_time(1, left, need, gates)
        else:
            try:
                # Setup may use what is left after one interval: a run that cannot look once is no run.
                collector.open(left - need)
            except Exception as exc:  # noqa: BLE001 - see above
                stopped = _failed("setup", exc)
        for k in range(1, policy.max_intervals + 1):
            if stopped is not None:
                break
            left = deadline - clock()
            if left < need:
                stopped = _no_time(k, left, need, gates)
                break
            try:
                interval = collector.collect(k, policy.interval_s, budget_s=need)
            except Exception as exc:  # noqa: BLE001 - see above
                stopped = _failed(f"interval {k}", exc)
                break
            intervals.append(interval)
            save_record(samples_path, dataclasses.replace(record, intervals=tuple(intervals)))
            for name, samples in interval.metrics.items():
                total[name] = merge(total[name], samples) if name in total else samples
            look = judge.judge_look(policy, total, k)
            say(look_line(look, elapsed_s=clock() - began))
            if look.decision != "continue":
                break
    finally:
        try:
            collector.close()
        except Exception as exc:  # noqa: BLE001 - closing must not hide the run's outcome
            say(f"canary: closing the collector failed: {type(exc).__name__}: {exc}")

    judgement = judge.judge_run(policy, intervals, complete=stopped is None)
    if stopped is not None:
        judgement = dataclasses.replace(judgement, reasons=(stopped, *judgement.reasons))
    say(f"canary: {judgement.decision.upper()} after {len(judgement.looks)} look(s) in {clock() - began:.1f} s")

    explanation_path = report_dir / EXPLANATION_FILE
    explanation_path.write_text(judge.explain(judgement) + "\n", encoding="utf-8")
    notes: list[str] = []
    plots: dict[str, Path] = {}
    judged = cumulative(intervals[: len(judgement.looks)])
    try:
        from releasegate.canary import plots as charts

        plots = charts.draw_latencies(judged, judgement.last, report_dir)
    except Exception as exc:  # noqa: BLE001 - a chart is an explanation, not evidence: report it, keep the verdict
        notes.append(f"the latency charts could not be drawn: {type(exc).__name__}: {exc}")
    return CanaryRun(
        judgement=judgement,
        intervals=tuple(intervals),
        samples_path=samples_path,
        explanation_path=explanation_path,
        plots=plots,
        stopped=stopped,
        duration_s=clock() - began,
        notes=tuple(notes),
    )


def _failed(when: str, exc: Exception) -> str:
    return f"collection failed during {when}: {type(exc).__name__}: {exc}"


def _no_time(k: int, left: float, need: float, gates: Gates) -> str:
    policy = gates.canary
    return (
        f"the run's deadline leaves {max(left, 0.0):.1f} s, less than interval {k} of {policy.max_intervals} needs ({need:g} s: "
        f"interval_s {policy.interval_s:g} plus the last probes' timeout): raise deadline_s in gates.yaml, or shorten "
        "canary.interval_s or canary.max_intervals"
    )


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _opening_line(loaded: LoadedTarget, policy: CanaryPolicy) -> str:
    settings = loaded.target.canary
    sides = ""
    if settings is not None:
        sides = f" baseline {settings.baseline_url or '?'} vs canary {settings.canary_url or loaded.target.base_url}:"
    names = ", ".join(m.name for m in policy.metrics)
    return f"canary:{sides} up to {policy.max_intervals} interval(s) of {policy.interval_s:g} s; metrics {names}"


# --------------------------------------------------------------------------- one line per look


def look_line(look: LookJudgement, *, elapsed_s: float | None = None) -> str:
    """One look for the terminal: each metric's state and figures, the score and the decision."""
    parts = [_metric_brief(j) for j in look.metrics]
    when = f" ({elapsed_s:.1f} s)" if elapsed_s is not None else ""
    return (
        f"canary look {look.look}/{look.max_looks}{when}: "
        + " | ".join(parts)
        + f" | score {look.score:.0f} (max {look.max_score:.0f}) -> {look.decision}"
    )


def _metric_brief(j: MetricJudgement) -> str:
    figures = f"n {j.n_baseline}/{j.n_canary}"
    if j.kind == "rate" and "events" in j.baseline and "events" in j.canary:
        figures = f"{j.baseline['events']}/{j.n_baseline} vs {j.canary['events']}/{j.n_canary}"
    if j.ratio is not None and j.ci is not None:
        figures += f", ratio {_ratio(j.ratio)} [{_ratio(j.ci[0])}-{_ratio(j.ci[1])}]"
    return f"{j.name} {j.state} ({figures})"


def _ratio(value: float) -> str:
    if value != value or value in (float("inf"), float("-inf")):  # NaN or infinite
        return str(value)
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


# --------------------------------------------------------------------------- findings


def setup_finding(problems: Sequence[SetupProblem], metric: str | None = None) -> Finding:
    """The error of a check that cannot run: every problem for the judge, the metric's own for a metric."""
    mine = [p for p in problems if metric is None or metric in p.metrics]
    if metric is not None and not mine:
        # This metric could be collected, but the run does not start while the setup is broken.
        summary = "not judged: the canary run did not start (" + "; ".join(p.text() for p in problems) + ")"
        keys = [p.key for p in problems]
    else:
        summary = "; ".join(p.text() for p in mine)
        keys = [p.key for p in mine]
    return Finding(
        "error",
        summary,
        observed="not run: " + ", ".join(f"{k} missing" for k in keys),
        expected="a target whose canary section covers every metric of gates.yaml canary.metrics",
        evidence={"problems": [dataclasses.asdict(p) for p in problems], "samples": 0},
    )


def judge_finding(run: CanaryRun, policy: CanaryPolicy) -> Finding:
    """canary.judge: promote -> passed, rollback -> failed, hold -> error with the reason."""
    judgement = run.judgement
    last = judgement.last
    where = f"look {last.look}/{last.max_looks}" if last is not None else "no look"
    reasons = "; ".join(judgement.reasons) or "no reason given"
    score = f", score {last.score:.0f}" if last is not None else ""
    observed = f"{judgement.decision} at {where}{score}"
    expected = f"promote: score >= {policy.score.pass_:g} with every critical metric passed"
    evidence: dict[str, Any] = {
        **judgement.as_dict(),
        "samples": _fewest_samples(last),
        "intervals": len(run.intervals),
        "duration_s": round(run.duration_s, 3),
        "stopped": run.stopped,
        "samples_json": str(run.samples_path),
        "explanation": str(run.explanation_path) if run.explanation_path else None,
        "plots": {name: str(path) for name, path in run.plots.items()},
        "notes": list(run.notes),
    }
    if judgement.decision == "promote":
        return Finding("passed", f"promote at {where}: {reasons}", observed, expected, evidence)
    if judgement.decision == "rollback":
        return Finding("failed", f"rollback at {where}: {reasons}", observed, expected, evidence)
    return Finding("error", f"hold at {where}: {reasons}", observed, expected, evidence)


def metric_finding(run: CanaryRun, metric: CanaryMetric) -> Finding:
    """canary.metric.<name>: the deciding look's judgement of the metric; nodata or undecided -> error."""
    last = run.judgement.last
    expected = _allowed(metric)
    if last is None:
        reasons = "; ".join(run.judgement.reasons)
        return Finding("error", f"not judged: no look was taken ({reasons})", "no look", expected, {"samples": 0, "name": metric.name})
    mine = next((j for j in last.metrics if j.name == metric.name), None)
    if mine is None:  # pragma: no cover - the judge judges every metric of the policy
        return Finding("error", f"{metric.name}: the judge did not judge it", "not judged", expected, {"samples": 0})
    evidence = {
        **mine.as_dict(),
        "samples": min(mine.n_baseline, mine.n_canary),
        "look": last.look,
        "max_looks": last.max_looks,
        "run_decision": run.judgement.decision,
    }
    if metric.name in run.plots:
        evidence["plot"] = str(run.plots[metric.name])
    observed = _observed(mine)
    at = f"look {last.look}/{last.max_looks}"
    if mine.state == "passed":
        return Finding("passed", f"passed at {at}: {mine.reason}", observed, expected, evidence)
    if mine.state == "failed":
        return Finding("failed", f"failed at {at}: {mine.reason}", observed, expected, evidence)
    if mine.state == "nodata":
        return Finding("error", f"no data at {at}: {mine.reason}", observed, expected, evidence)
    ended = f"undecided when the run ended at {at} ({run.judgement.decision})"
    return Finding("error", f"{ended}: {mine.reason}; {mine.flip}", observed, expected, evidence)


def _fewest_samples(look: LookJudgement | None) -> int:
    """The weakest evidence of the deciding look: the smallest side of any metric (for gates.yaml min_samples)."""
    if look is None or not look.metrics:
        return 0
    return min(min(j.n_baseline, j.n_canary) for j in look.metrics)


def _allowed(metric: CanaryMetric) -> str:
    if metric.allowed_increase_ms and metric.direction == "increase":
        return (
            f"ratio canary/baseline not significantly above {metric.allowed_increase:g} (allowed_increase) "
            f"or +{metric.allowed_increase_ms:g} ms at the baseline median (allowed_increase_ms)"
        )
    if metric.direction == "increase":
        return f"ratio canary/baseline not significantly above {metric.allowed_increase:g} (allowed_increase)"
    if metric.direction == "decrease":
        return f"ratio canary/baseline not significantly below {metric.allowed_decrease:g} (allowed_decrease)"
    return f"ratio canary/baseline within {metric.allowed_decrease:g}-{metric.allowed_increase:g} (allowed_decrease, allowed_increase)"


def _observed(j: MetricJudgement) -> str:
    if j.ratio is None or j.ci is None:
        return f"{j.state}: n {j.n_baseline}/{j.n_canary}"
    conf = f"{j.confidence:.0%} " if j.confidence is not None else ""
    if j.kind == "latency":
        sides = f"median {_ms(j.baseline.get('median'))} -> {_ms(j.canary.get('median'))} ms"
    else:
        sides = f"{j.baseline.get('events')}/{j.n_baseline} -> {j.canary.get('events')}/{j.n_canary}"
    return f"ratio {_ratio(j.ratio)} ({conf}CI {_ratio(j.ci[0])}-{_ratio(j.ci[1])}), {sides}"


def _ms(value: float | int | None) -> str:
    return "?" if value is None else f"{float(value):.1f}"
