"""The canary interval loop (releasegate.canary.run) with a fake collector and an injected clock.

The fake collector hands out scripted intervals and moves the fake clock on by interval_s each
time, so the loop's deadline arithmetic is exercised without a single sleep. It also reads
samples.json back at every interval, to show that the file is rewritten after each one. The
findings the checks conclude, and the setup problems reported before anything is probed, are
pure functions of the run and the two files: tested here on hand-made runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from releasegate._exceptions import ProbeError
from releasegate.canary.model import IntervalSamples, LatencySamples, MetricSamples, RateSamples, load_record
from releasegate.canary.run import (
    EXPLANATION_FILE,
    SAMPLES_FILE,
    CanaryRun,
    interval_budget_s,
    judge_finding,
    look_line,
    metric_finding,
    run_canary,
    setup_finding,
    setup_problems,
)
from releasegate.config import Gates, LoadedTarget, Target

INTERVAL_S = 10.0
TIMEOUT_S = 5.0


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


Interval = Callable[[int], dict[str, MetricSamples]]


class FakeCollector:
    """Scripted intervals; each collect() takes interval_s of fake time and may raise instead."""

    def __init__(
        self,
        clock: FakeClock,
        script: Interval,
        *,
        samples_path: Path | None = None,
        fail_at: int | None = None,
        open_error: Exception | None = None,
    ) -> None:
        self.clock = clock
        self.script = script
        self.samples_path = samples_path
        self.fail_at = fail_at
        self.open_error = open_error
        self.opened: list[float] = []
        self.collected: list[tuple[int, float, float]] = []  # (index, interval_s, budget_s)
        self.on_disk: list[int] = []  # intervals in samples.json when each collect() began
        self.closed = 0

    def open(self, budget_s: float) -> None:
        self.opened.append(budget_s)
        if self.open_error is not None:
            raise self.open_error

    def collect(self, index: int, interval_s: float, *, budget_s: float) -> IntervalSamples:
        if self.samples_path is not None:
            self.on_disk.append(len(load_record(self.samples_path).intervals))
        self.collected.append((index, interval_s, budget_s))
        self.clock.now += interval_s
        if index == self.fail_at:
            raise RuntimeError("the probe task crashed")
        return IntervalSamples(index, f"2026-06-01T12:00:{index:02d}.000Z", interval_s, self.script(index))

    def close(self) -> None:
        self.closed += 1


def policy(*metrics: dict[str, Any], max_intervals: int = 3, **canary: Any) -> Gates:
    chosen = list(metrics) or [LATENCY]
    return Gates.model_validate(
        {
            "probe": {"timeout_s": TIMEOUT_S, "retry": {"timeout_s": 0}},
            "canary": {"interval_s": INTERVAL_S, "max_intervals": max_intervals, "metrics": chosen, **canary},
        }
    )


LATENCY = {"name": "http_latency", "kind": "latency", "probe": "http_latency", "allowed_increase": 1.1, "critical": True, "min_samples": 20}
ERRORS = {"name": "http_errors", "kind": "rate", "probe": "http_errors", "allowed_increase": 1.5, "critical": True, "min_samples": 20}


def target(tmp_path: Path, **canary: Any) -> LoadedTarget:
    section = {"baseline_url": "https://stable.example.test", **canary}
    document = {"name": "shop", "base_url": "https://canary.example.test", "canary": section}
    return LoadedTarget(Target.model_validate(document), tmp_path / "t.yaml")


def lognormal(seed: int, n: int, *, median: float = 20.0, sigma: float = 0.1) -> tuple[float, ...]:
    return tuple(float(v) for v in np.random.default_rng(seed).lognormal(math.log(median), sigma, n))


def latency(name: str, base: Sequence[float], can: Sequence[float]) -> MetricSamples:
    return MetricSamples(name, "latency", LatencySamples(tuple(base)), LatencySamples(tuple(can)))


def same(n: int = 200) -> Interval:
    """Both sides draw from one distribution: shown within tolerance at once."""
    return lambda k: {"http_latency": latency("http_latency", lognormal(2 * k, n), lognormal(2 * k + 1, n))}


def slower(factor: float = 3.0, n: int = 50) -> Interval:
    return lambda k: {"http_latency": latency("http_latency", lognormal(2 * k, n), lognormal(2 * k + 1, n, median=20.0 * factor))}


def too_few(k: int) -> dict[str, MetricSamples]:
    return {"http_latency": latency("http_latency", lognormal(2 * k, 3), lognormal(2 * k + 1, 3))}


def run(
    tmp_path: Path, gates: Gates, collector: FakeCollector, clock: FakeClock, *, deadline_in: float = 600.0
) -> tuple[CanaryRun, list[str]]:
    lines: list[str] = []
    result = run_canary(
        target(tmp_path),
        gates,
        report_dir=tmp_path / "report",
        deadline=clock.now + deadline_in,
        clock=clock,
        collector=collector,
        progress=lines.append,
    )
    return result, lines


# --------------------------------------------------------------------------- the loop


def test_a_canary_clearly_worse_rolls_back_at_the_first_look(tmp_path: Path) -> None:
    # Given a canary three times slower than the baseline, 50 samples a side per interval
    clock = FakeClock()
    collector = FakeCollector(clock, slower(), samples_path=tmp_path / "report" / SAMPLES_FILE)
    # When the run starts
    result, lines = run(tmp_path, policy(), collector, clock)
    # Then the first look rolls back and no further interval is collected
    assert result.judgement.decision == "rollback"
    assert [look.look for look in result.judgement.looks] == [1]
    assert [c[0] for c in collector.collected] == [1]
    assert result.stopped is None and collector.closed == 1
    assert "http_latency (critical) failed" in result.judgement.reasons[0]
    # And the terminal got one line for the look, with the metric's state and the decision
    look_lines = [line for line in lines if line.startswith("canary look")]
    assert len(look_lines) == 1 and "look 1/3" in look_lines[0] and "http_latency failed" in look_lines[0]
    assert look_lines[0].endswith("-> rollback")


def test_a_canary_shown_within_tolerance_is_promoted_before_the_last_look(tmp_path: Path) -> None:
    clock = FakeClock()
    collector = FakeCollector(clock, same())
    result, _ = run(tmp_path, policy(max_intervals=5), collector, clock)
    assert result.judgement.decision == "promote"
    assert len(result.judgement.looks) < 5
    assert len(collector.collected) == len(result.judgement.looks)


def test_intervals_that_run_out_undecided_hold(tmp_path: Path) -> None:
    # Given intervals that never bring min_samples (3 values a side each, 20 needed, 3 intervals)
    clock = FakeClock()
    collector = FakeCollector(clock, too_few)
    result, lines = run(tmp_path, policy(), collector, clock)
    # Then every interval is collected and judged, and the last look holds
    assert [c[0] for c in collector.collected] == [1, 2, 3]
    assert [look.decision for look in result.judgement.looks] == ["continue", "continue", "hold"]
    assert result.judgement.decision == "hold" and result.stopped is None
    assert any("no data" in reason for reason in result.judgement.reasons)
    assert sum(line.startswith("canary look") for line in lines) == 3


def test_samples_json_is_rewritten_after_every_interval_and_loads(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "report" / SAMPLES_FILE
    collector = FakeCollector(clock, too_few, samples_path=path)
    result, _ = run(tmp_path, policy(), collector, clock)
    # When each interval began, the file held every interval before it
    assert collector.on_disk == [0, 1, 2]
    record = load_record(path)
    assert [i.index for i in record.intervals] == [1, 2, 3]
    assert record.target == "shop"
    assert record.policy["max_intervals"] == 3 and record.policy["score"]["pass"] == 95.0  # by alias
    assert record.intervals[0].metrics["http_latency"] == result.intervals[0].metrics["http_latency"]
    assert result.samples_path == path


def test_an_interval_that_cannot_finish_before_the_deadline_is_not_started(tmp_path: Path) -> None:
    # Given a deadline with room for two intervals (each needs interval_s 10 + probe timeout 5 = 15 s)
    gates = policy()
    assert interval_budget_s(gates) == INTERVAL_S + TIMEOUT_S
    clock = FakeClock()
    collector = FakeCollector(clock, too_few)
    result, _ = run(tmp_path, gates, collector, clock, deadline_in=30.0)
    # Then interval 3 is not started, and the run holds, saying why first
    assert [c[0] for c in collector.collected] == [1, 2]
    assert all(budget == 15.0 for _, _, budget in collector.collected)
    assert result.judgement.decision == "hold"
    assert result.stopped is not None and "less than interval 3 of 3 needs" in result.stopped
    assert result.judgement.reasons[0] == result.stopped
    assert "stopped after look 2 of 3" in result.judgement.reasons[1]
    assert collector.closed == 1


def test_a_deadline_too_short_for_one_interval_collects_nothing_and_holds(tmp_path: Path) -> None:
    clock = FakeClock()
    collector = FakeCollector(clock, too_few)
    result, _ = run(tmp_path, policy(), collector, clock, deadline_in=14.0)
    assert collector.opened == [] and collector.collected == []
    assert result.judgement.decision == "hold" and result.judgement.looks == ()
    assert result.stopped is not None and "leaves 14.0 s" in result.stopped
    assert load_record(result.samples_path).intervals == ()  # the policy is on file all the same


def test_setup_gets_what_is_left_after_one_interval(tmp_path: Path) -> None:
    clock = FakeClock()
    collector = FakeCollector(clock, slower())
    run(tmp_path, policy(), collector, clock, deadline_in=100.0)
    assert collector.opened == [85.0]


def test_a_collector_that_raises_mid_run_holds_with_the_reason_and_is_closed(tmp_path: Path) -> None:
    clock = FakeClock()
    collector = FakeCollector(clock, too_few, samples_path=tmp_path / "report" / SAMPLES_FILE, fail_at=2)
    result, _ = run(tmp_path, policy(), collector, clock)
    assert result.judgement.decision == "hold"
    assert result.stopped == "collection failed during interval 2: RuntimeError: the probe task crashed"
    assert result.judgement.reasons[0] == result.stopped
    assert collector.closed == 1
    assert len(load_record(result.samples_path).intervals) == 1  # what was collected is kept


def test_a_setup_that_fails_holds_without_collecting(tmp_path: Path) -> None:
    clock = FakeClock()
    collector = FakeCollector(clock, too_few, open_error=ProbeError("baseline: could not set up the sync conversation"))
    result, _ = run(tmp_path, policy(), collector, clock)
    assert collector.collected == [] and collector.closed == 1
    assert result.judgement.decision == "hold"
    assert result.stopped == "collection failed during setup: ProbeError: baseline: could not set up the sync conversation"


def test_artifacts_are_written_a_chart_per_latency_metric_with_samples(tmp_path: Path) -> None:
    clock = FakeClock()

    def both(k: int) -> dict[str, MetricSamples]:
        return {**slower()(k), "http_errors": MetricSamples("http_errors", "rate", RateSamples(0, 50), RateSamples(1, 50))}

    result, _ = run(tmp_path, policy(LATENCY, ERRORS), FakeCollector(clock, both), clock)
    assert set(result.plots) == {"http_latency"}
    png = result.plots["http_latency"]
    assert png.name == "canary-http_latency.png" and png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    explanation = (tmp_path / "report" / EXPLANATION_FILE).read_text(encoding="utf-8")
    assert "http_latency" in explanation and "decision: ROLLBACK" in explanation
    assert set(result.artifacts) == {result.samples_path, tmp_path / "report" / EXPLANATION_FILE, png}
    assert result.notes == ()


def test_a_metric_the_collector_never_returned_has_no_data(tmp_path: Path) -> None:
    clock = FakeClock()
    result, _ = run(tmp_path, policy(LATENCY, ERRORS, max_intervals=1), FakeCollector(clock, slower()), clock)
    errors = next(j for j in result.judgement.looks[-1].metrics if j.name == "http_errors")
    assert errors.state == "nodata"


# --------------------------------------------------------------------------- findings


def finished(tmp_path: Path, script: Interval, gates: Gates, *, deadline_in: float = 600.0) -> CanaryRun:
    clock = FakeClock()
    return run(tmp_path, gates, FakeCollector(clock, script), clock, deadline_in=deadline_in)[0]


def test_the_judge_check_passes_on_promote_fails_on_rollback_errors_on_hold(tmp_path: Path) -> None:
    gates = policy(max_intervals=5)
    promote = judge_finding(finished(tmp_path / "a", same(), gates), gates.canary)
    rollback = judge_finding(finished(tmp_path / "b", slower(), gates), gates.canary)
    hold = judge_finding(finished(tmp_path / "c", too_few, gates), gates.canary)
    assert (promote.outcome, rollback.outcome, hold.outcome) == ("passed", "failed", "error")
    assert rollback.summary.startswith("rollback at look 1/5: http_latency (critical) failed")
    assert hold.summary.startswith("hold at look 5/5")
    # The evidence is the whole run judgement plus where its artifacts are
    evidence = rollback.evidence
    assert evidence["decision"] == "rollback" and len(evidence["looks"]) == 1
    assert evidence["looks"][0]["metrics"][0]["state"] == "failed"
    assert evidence["samples_json"].endswith(SAMPLES_FILE)
    assert evidence["plots"]["http_latency"].endswith("canary-http_latency.png")
    assert evidence["samples"] == 50
    assert rollback.observed == f"rollback at look 1/5, score {evidence['looks'][0]['score']:.0f}"


def test_the_metric_check_is_the_deciding_looks_state(tmp_path: Path) -> None:
    gates = policy(LATENCY, ERRORS, max_intervals=4)
    metric = {m.name: m for m in gates.canary.metrics}

    def one_slow(k: int) -> dict[str, MetricSamples]:
        return {**slower()(k), "http_errors": MetricSamples("http_errors", "rate", RateSamples(0, 30), RateSamples(0, 30))}

    result = finished(tmp_path, one_slow, gates)
    failed = metric_finding(result, metric["http_latency"])
    undecided = metric_finding(result, metric["http_errors"])
    assert failed.outcome == "failed" and failed.summary.startswith("failed at look 1/4")
    assert failed.observed.startswith("ratio ") and "CI" in failed.observed and "median" in failed.observed
    assert failed.expected == "ratio canary/baseline not significantly above 1.1 (allowed_increase)"
    assert failed.evidence["state"] == "failed" and failed.evidence["samples"] == 50 and failed.evidence["look"] == 1
    # A metric still undecided when the run ended is an error, never a pass
    assert undecided.outcome == "error" and "undecided when the run ended at look 1/4 (rollback)" in undecided.summary
    nodata = metric_finding(finished(tmp_path / "n", too_few, policy()), metric["http_latency"])
    assert nodata.outcome == "error" and nodata.summary.startswith("no data at look 3/3")


def test_a_run_without_a_look_errors_every_check(tmp_path: Path) -> None:
    gates = policy()
    result = finished(tmp_path, too_few, gates, deadline_in=1.0)
    assert judge_finding(result, gates.canary).outcome == "error"
    finding = metric_finding(result, gates.canary.metrics[0])
    assert finding.outcome == "error" and finding.summary.startswith("not judged: no look was taken")
    assert finding.evidence["samples"] == 0


def test_look_line_names_every_metric_the_score_and_the_decision(tmp_path: Path) -> None:
    result = finished(tmp_path, slower(), policy(LATENCY, ERRORS))
    line = look_line(result.judgement.looks[0], elapsed_s=10.0)
    assert line.startswith("canary look 1/3 (10.0 s): http_latency failed (n 50/50, ratio ")
    assert "http_errors nodata (n 0/0)" in line and line.endswith("-> rollback")


# --------------------------------------------------------------------------- target x policy


def test_a_target_without_a_canary_section_names_the_key() -> None:
    loaded = LoadedTarget(Target.model_validate({"name": "shop", "base_url": "https://canary.example.test"}), Path("t.yaml"))
    problems = setup_problems(loaded, policy(LATENCY, ERRORS))
    assert [p.key for p in problems] == ["canary"]
    judge = setup_finding(problems)
    assert judge.outcome == "error"
    assert judge.summary.startswith("the target names no canary section (key: canary): add canary:")
    metric = setup_finding(problems, "http_errors")
    assert metric.outcome == "error" and "(key: canary)" in metric.summary


def test_probe_and_prometheus_metrics_need_their_keys(tmp_path: Path) -> None:
    prometheus = {"name": "api_errors", "kind": "rate", "source": "prometheus", "errors_query": "e", "total_query": "t"}
    sync = {"name": "sync_latency", "kind": "latency", "probe": "sync_latency"}
    loaded = LoadedTarget(
        Target.model_validate({"name": "shop", "base_url": "https://canary.example.test", "canary": {}}), tmp_path / "t.yaml"
    )
    problems = setup_problems(loaded, policy(LATENCY, prometheus, sync))
    keys = {p.key: p.metrics for p in problems}
    assert keys == {
        "canary.baseline_url": ("http_latency",),
        "canary.baseline_ws_url": ("sync_latency",),
        "canary.canary_ws_url": ("sync_latency",),
        "sync": ("sync_latency",),
        "scenarios": ("sync_latency",),
        "canary.prometheus": ("api_errors",),
    }
    own = setup_finding(problems, "api_errors")
    assert own.summary.startswith("the policy's Prometheus metrics (api_errors) need a Prometheus")
    assert "(key: canary.prometheus)" in own.summary
    # A metric without a problem of its own is still not judged: the run did not start
    assert setup_problems(target(tmp_path), policy(LATENCY, ERRORS)) == ()


def test_the_interval_budget_covers_the_sync_timeout_and_prometheus() -> None:
    sync = {"name": "sync_latency", "kind": "latency", "probe": "sync_latency"}
    prometheus = {"name": "p", "kind": "latency", "source": "prometheus", "query": "q"}
    assert interval_budget_s(policy(sync)) == INTERVAL_S + 5.0  # sync timeout 2 s < probe timeout 5 s
    assert interval_budget_s(policy(LATENCY, prometheus)) == INTERVAL_S + 2 * TIMEOUT_S


@pytest.mark.parametrize("values", [(), (float("nan"), -1.0)])
def test_no_chart_for_a_metric_without_usable_values(tmp_path: Path, values: tuple[float, ...]) -> None:
    from releasegate.canary.plots import draw_latencies

    assert draw_latencies({"m": latency("m", values, values)}, None, tmp_path) == {}
