"""Benchmark: the canary judge's speed, false rollbacks and power, against Flagger- and Kayenta-style judges.

Three questions from issue 7, all on simulated samples (seeded: the same command prints the same
figures on any machine, except the timings):

1. **Speed.** ``judge_metric`` (the whole metric judgement: Mann-Whitney U, the Hodges-Lehmann
   ratio, its confidence intervals, percentiles) on 100,000 latency samples per side. Goal:
   under 100 ms.
2. **The simulation table.** False-rollback rate on A/A and detection power (rollback rate) for
   +10 % and +25 % latency and a 0.5 % -> 2 % error rate, at n = 100, 500 and 2,000 samples per
   side at the last look (split evenly over K = 5 intervals), for our judge (haybittle-peto,
   obrien-fleming, and no correction), a Flagger-style fixed-threshold judge and a single-test
   Kayenta-style judge, all on the same samples.
3. **The physical limit.** The optimal fixed-sample test (one-sided t-test on log latency,
   alpha 0.01) needs about 870 samples per side for 95 % power at +10 % (sigma 0.5); the n at which
   our whole judge (K = 5 looks, haybittle-peto) reaches 95 % power, its A/A false-rollback rate
   there, and a single-look Mann-Whitney at 98 % confidence at n = 500. Goal: within 15 % of the
   limit (<= 1,000 per side) with at most 1 % false rollbacks over all looks.

It writes its section into bench/RESULTS.md between markers (``results_file.py``), replacing an
earlier one and keeping the rest of the file; ``make bench`` (``bench/run_all.py``) runs every benchmark.

Run: ``.venv/bin/python bench/canary_judge.py [--runs 2000] [--workers 2]`` or ``make bench``
(about 6-8 minutes on 2 cores; ``--quick`` for a smoke run of a minute, not for the record).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from results_file import Stamp, markers, write_section  # bench/ is on sys.path: the scripts run as files

from releasegate.canary import statistics as st
from releasegate.canary.judge import judge_metric, judge_run, look_alphas
from releasegate.canary.model import IntervalSamples, LatencySamples, MetricSamples, RateSamples
from releasegate.config import CanaryMetric, CanaryPolicy

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO / "bench" / "RESULTS.md"
BEGIN, END = markers("canary_judge.py")
SEED = 7_2026
K = 5  # looks (intervals); samples are split evenly over them
NS = (100, 500, 2_000)  # samples per side at the last look
SIGMA = 0.5  # lognormal sigma of latency (a realistic spread)
MEDIAN_MS = 20.0  # lognormal median of the baseline's latency (its scale; nothing depends on it)
BASE_ERRORS, BAD_ERRORS = 0.005, 0.02
ALPHA = 0.01  # our judge's total one-sided alpha (the default)
FLAGGER_THRESHOLD = 2  # failed checks before Flagger rolls back
FLAGGER_MAX_ERROR_RATE = 0.01  # request-success-rate >= 99 %
FLAGGER_CALIBRATION_INTERVALS = 20_000
KAYENTA_CONFIDENCE = 0.98  # NetflixACAJudge's hard-coded confLevel
KAYENTA_TOLERANCE = 0.25  # ... and tolerance
LIMIT_POWER = 0.95
SPEED_N = 100_000
SPEED_RUNS = 7
SPEED_GOAL_MS = 100.0


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    kind: str  # latency | rate
    effect: float  # latency: canary = baseline x effect; rate: the canary's error probability


SCENARIOS = (
    Scenario("aa_latency", "A/A latency (false rollback)", "latency", 1.0),
    Scenario("lat_10", "latency +10 %", "latency", 1.10),
    Scenario("lat_25", "latency +25 %", "latency", 1.25),
    Scenario("aa_errors", "A/A errors 0.5 % (false rollback)", "rate", BASE_ERRORS),
    Scenario("err_2", "errors 0.5 % -> 2 %", "rate", BAD_ERRORS),
)
JUDGES = ("ours_hp", "ours_obf", "ours_none", "flagger", "kayenta")
JUDGE_TITLES = {
    "ours_hp": "**releasegate** (haybittle-peto, the default)",
    "ours_obf": "releasegate (obrien-fleming)",
    "ours_none": "releasegate without correction (`looks: none`)",
    "flagger": f"Flagger-style fixed threshold (threshold {FLAGGER_THRESHOLD})",
    "kayenta": "Kayenta-style single test (MW 98 %, every interval)",
}


def policy(kind: str, looks: str, *, k: int = K) -> CanaryPolicy:
    """One critical metric, allowed_increase 1.0: any significant increase fails (as Kayenta's default)."""
    metric = (
        CanaryMetric(name="latency", kind="latency", probe="http_latency", critical=True, allowed_increase=1.0, min_samples=20)
        if kind == "latency"
        else CanaryMetric(name="errors", kind="rate", probe="http_errors", critical=True, allowed_increase=1.0, min_samples=20)
    )
    return CanaryPolicy(max_intervals=k, alpha=ALPHA, looks=looks, metrics=[metric])  # type: ignore[arg-type]


# --------------------------------------------------------------------------- samples


def draw(rng: np.random.Generator, scenario: Scenario, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One interval: (baseline, canary) latencies in ms, or 0/1 error flags per request."""
    if scenario.kind == "latency":
        base = rng.lognormal(math.log(MEDIAN_MS), SIGMA, size)
        canary = rng.lognormal(math.log(MEDIAN_MS), SIGMA, size) * scenario.effect
        return base, canary
    return (rng.random(size) < BASE_ERRORS).astype(np.float64), (rng.random(size) < scenario.effect).astype(np.float64)


def as_interval(index: int, scenario: Scenario, base: np.ndarray, canary: np.ndarray) -> IntervalSamples:
    if scenario.kind == "latency":
        samples = MetricSamples("latency", "latency", LatencySamples(tuple(base.tolist())), LatencySamples(tuple(canary.tolist())))
    else:
        samples = MetricSamples("errors", "rate", RateSamples(int(base.sum()), base.size), RateSamples(int(canary.sum()), canary.size))
    return IntervalSamples(index, "2026-01-01T00:00:00Z", 60.0, {samples.name: samples})


# --------------------------------------------------------------------------- the peers


def flagger_rolls_back(scenario: Scenario, canaries: Sequence[np.ndarray], latency_max: float) -> bool:
    """Flagger's loop: one check per interval on the canary alone; failed checks never reset.

    A failed check holds the traffic weight (the analysis goes on), a passed one advances it;
    K passed checks promote, FLAGGER_THRESHOLD failed ones roll back.
    """
    failed = passed = 0
    for canary in canaries:
        if scenario.kind == "latency":
            ok = st.percentile(np.sort(canary), 99) <= latency_max  # request-duration: the interval's p99
        else:
            ok = canary.mean() <= FLAGGER_MAX_ERROR_RATE  # request-success-rate >= 99 %
        if ok:
            passed += 1
            if passed == K:
                return False
        else:
            failed += 1
            if failed >= FLAGGER_THRESHOLD:
                return True
    return False  # pragma: no cover - K + threshold - 1 intervals always decide


def kayenta_high(baseline: np.ndarray, canary: np.ndarray) -> bool:
    """NetflixACAJudge's MannWhitneyClassifier, direction increase, allowedIncrease 1.0, on raw values.

    High iff the lower bound of the 98 % two-sided CI of the Hodges-Lehmann shift is above
    tolerance x |shift| and the mean ratio is at least 1.0; identical or all-equal data pass.
    """
    if np.array_equal(np.sort(baseline), np.sort(canary)) or np.unique(np.concatenate((baseline, canary))).size == 1:
        return False
    one_side = (1.0 - KAYENTA_CONFIDENCE) / 2.0
    test = st.mann_whitney(baseline, canary)
    hl = st.hodges_lehmann(baseline, canary, [one_side], test=test)
    lower, _ = hl.bounds(one_side)
    mean_b = float(baseline.mean())
    ratio = 1.0 if mean_b == 0.0 else float(canary.mean()) / mean_b
    return lower > KAYENTA_TOLERANCE * abs(hl.shift) and ratio >= 1.0


def kayenta_rolls_back(bases: Sequence[np.ndarray], canaries: Sequence[np.ndarray]) -> bool:
    """Judged after every interval on everything so far, no correction; one High interval ends the run (score 0 <= marginal)."""
    for k in range(1, K + 1):
        if kayenta_high(np.concatenate(bases[:k]), np.concatenate(canaries[:k])):
            return True
    return False


# --------------------------------------------------------------------------- one chunk of runs (a worker's task)


@dataclass(frozen=True)
class Task:
    scenario: Scenario
    n: int
    start: int
    stop: int
    judges: tuple[str, ...]
    flagger_latency_max: float
    salt: int = 0  # a different salt draws different samples for the same (scenario, n, run)


def run_chunk(task: Task) -> dict[str, int]:
    """Rollbacks per judge over runs start..stop-1; run r always draws from the same seed."""
    scenario, per_interval = task.scenario, task.n // K
    policies = {"ours_hp": policy(scenario.kind, "haybittle-peto"), "ours_obf": policy(scenario.kind, "obrien-fleming"),
                "ours_none": policy(scenario.kind, "none")}  # fmt: skip
    rollbacks = dict.fromkeys(task.judges, 0)
    scenario_index = SCENARIOS.index(scenario)
    for run in range(task.start, task.stop):
        rng = np.random.default_rng([SEED, scenario_index, task.n, run, task.salt])
        drawn = [draw(rng, scenario, per_interval) for _ in range(K + FLAGGER_THRESHOLD - 1)]
        bases, canaries = [b for b, _ in drawn], [c for _, c in drawn]
        intervals = [as_interval(i + 1, scenario, b, c) for i, (b, c) in enumerate(drawn[:K])]
        for judge in task.judges:
            if judge in policies:
                hit = judge_run(policies[judge], intervals).decision == "rollback"
            elif judge == "flagger":
                hit = flagger_rolls_back(scenario, canaries, task.flagger_latency_max)
            else:
                hit = kayenta_rolls_back(bases[:K], canaries[:K])
            rollbacks[judge] += hit
    return rollbacks


def flagger_latency_threshold(n: int) -> float:
    """The fixed p99 threshold a Flagger user would set, calibrated here from the baseline distribution itself:
    the 99th percentile of one interval's p99 over many simulated baseline intervals (so a healthy
    interval fails 1 % of the time)."""
    rng = np.random.default_rng([SEED, 99, n])
    p99s = np.sort(
        [st.percentile(np.sort(rng.lognormal(math.log(MEDIAN_MS), SIGMA, n // K)), 99) for _ in range(FLAGGER_CALIBRATION_INTERVALS)]
    )
    return st.percentile(p99s, 99)


def simulate(pool: ProcessPoolExecutor, tasks: list[Task], label: str) -> dict[str, int]:
    total = dict.fromkeys(tasks[0].judges, 0)
    started = time.monotonic()
    for done, result in enumerate(pool.map(run_chunk, tasks), 1):
        for judge, count in result.items():
            total[judge] += count
        if done == len(tasks) or done % max(1, len(tasks) // 4) == 0:
            print(f"    {label}: {done}/{len(tasks)} chunks, {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    return total


def chunks(scenario: Scenario, n: int, runs: int, judges: tuple[str, ...], latency_max: float, *, salt: int = 0) -> list[Task]:
    size = 50
    return [Task(scenario, n, start, min(runs, start + size), judges, latency_max, salt) for start in range(0, runs, size)]


# --------------------------------------------------------------------------- speed


@dataclass(frozen=True)
class Speed:
    case: str
    timings_ms: tuple[float, ...]
    ratio: float
    ci: tuple[float, float]
    state: str

    @property
    def median_ms(self) -> float:
        return statistics.median(self.timings_ms)


def bench_speed() -> list[Speed]:
    rng = np.random.default_rng([SEED, 1])
    metric = CanaryMetric(name="http_latency", kind="latency", probe="http_latency", allowed_increase=1.1, critical=True)
    looks = CanaryPolicy(max_intervals=K, metrics=[metric])
    base = rng.lognormal(math.log(MEDIAN_MS), SIGMA, SPEED_N)
    canary = rng.lognormal(math.log(MEDIAN_MS), SIGMA, SPEED_N) * 1.10
    cases = {
        "lognormal (sigma 0.5), canary +10 %, float ms": (base, canary),
        "the same rounded to whole ms (heavy ties)": (np.round(base), np.round(canary)),
    }
    out = []
    for case, (b, c) in cases.items():
        samples = MetricSamples("http_latency", "latency", LatencySamples(tuple(b.tolist())), LatencySamples(tuple(c.tolist())))
        judge_metric(metric, samples, look=K, policy=looks)  # warm-up: imports, caches
        timings = []
        for _ in range(SPEED_RUNS):
            started = time.perf_counter()
            judgement = judge_metric(metric, samples, look=K, policy=looks)
            timings.append((time.perf_counter() - started) * 1000)
        assert judgement.ratio is not None and judgement.ci is not None
        out.append(Speed(case, tuple(timings), judgement.ratio, judgement.ci, judgement.state))
        print(f"  speed, {case}: median {statistics.median(timings):.1f} ms", file=sys.stderr, flush=True)
    return out


# --------------------------------------------------------------------------- the physical limit


def t_quantile(p: float, df: int) -> float:
    """Student t quantile by the Cornish-Fisher expansion (exact to ~1e-6 at df in the hundreds)."""
    z = statistics.NormalDist().inv_cdf(p)
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


@dataclass
class Limit:
    analytic_n: float
    t_n: int
    t_runs: int
    t_power: float
    grid: list[tuple[int, int, int]] = field(default_factory=list)  # n, runs, rollbacks at +10 %
    fit: tuple[float, float] = (0.0, 0.0)  # probit(power) = a + b sqrt(n)
    found_n: int = 0  # where the fitted curve reaches 95 %
    runs: int = 0  # runs of each check below (A/A: twice as many)
    found_power: float = 0.0
    found_aa: float = 0.0
    goal_n: int = 1_000  # the goal's bound: 1.15 x 870
    goal_power: float = 0.0
    goal_aa: float = 0.0
    mw_n: int = 500
    mw_power: float = 0.0
    mw_analytic: float = 0.0
    kayenta_power: float = 0.0


def t_test_power(n: int, runs: int) -> float:
    rng = np.random.default_rng([SEED, 2, n])
    critical = t_quantile(1 - ALPHA, 2 * n - 2)
    hits = 0
    for _ in range(runs):
        x = rng.normal(0.0, SIGMA, n)
        y = rng.normal(math.log(1.10), SIGMA, n)
        pooled = (x.var(ddof=1) + y.var(ddof=1)) / 2
        hits += (y.mean() - x.mean()) / math.sqrt(pooled * 2 / n) > critical
    return hits / runs


def single_look(n: int, runs: int) -> tuple[float, float]:
    """Power of one Mann-Whitney at one-sided 2 % (98 % confidence) and of Kayenta's rule at 98 %, at +10 %."""
    rng = np.random.default_rng([SEED, 3, n])
    mw = kayenta = 0
    for _ in range(runs):
        x = rng.lognormal(math.log(MEDIAN_MS), SIGMA, n)
        y = rng.lognormal(math.log(MEDIAN_MS), SIGMA, n) * 1.10
        mw += st.mann_whitney(x, y).p_greater < 1 - KAYENTA_CONFIDENCE
        kayenta += kayenta_high(x, y)
    return mw / runs, kayenta / runs


def bench_limit(pool: ProcessPoolExecutor, runs: int, grid_runs: int) -> Limit:
    normal = statistics.NormalDist()
    delta = math.log(1.10)
    analytic = 2 * (SIGMA / delta) ** 2 * (normal.inv_cdf(1 - ALPHA) + normal.inv_cdf(LIMIT_POWER)) ** 2
    t_n = math.ceil(analytic)
    limit = Limit(analytic, t_n, runs, t_test_power(t_n, runs))
    print(f"  limit: t-test n={t_n} power {limit.t_power:.3f} (analytic n {analytic:.1f})", file=sys.stderr, flush=True)
    ten, aa = SCENARIOS[1], SCENARIOS[0]
    judges = ("ours_hp",)
    # Our judge's power curve around the expected crossing (MW's efficiency 3/pi and the last
    # look's alpha put it near 930). Power is Phi(c sqrt(n) - z), so probit(power) is linear in
    # sqrt(n): a weighted least-squares line through every grid point finds the crossing with
    # far less noise than interpolating between two of them.
    for n in (850, 900, 950, 1000, 1050, 1100):
        hits = simulate(pool, chunks(ten, n, grid_runs, judges, math.inf, salt=1), f"limit grid n={n}")["ours_hp"]
        limit.grid.append((n, grid_runs, hits))
    xs, zs, weights = [], [], []
    for n, r, hits in limit.grid:
        p = min(max(hits / r, 0.5 / r), 1 - 0.5 / r)
        z = normal.inv_cdf(p)
        xs.append(math.sqrt(n))
        zs.append(z)
        weights.append(r * normal.pdf(z) ** 2 / (p * (1 - p)))  # 1 / var(probit(p)) by the delta method
    b, a = np.polyfit(xs, zs, 1, w=np.sqrt(weights))
    limit.fit = (float(a), float(b))
    crossing = ((normal.inv_cdf(LIMIT_POWER) - a) / b) ** 2
    limit.found_n = K * math.ceil(crossing / K)
    limit.runs = runs

    def rate(scenario: Scenario, n: int, count: int) -> float:
        tasks = chunks(scenario, n, count, judges, math.inf, salt=2)
        return simulate(pool, tasks, f"limit n={n} {scenario.key}")["ours_hp"] / count

    limit.found_power, limit.found_aa = rate(ten, limit.found_n, runs), rate(aa, limit.found_n, 2 * runs)
    limit.goal_power, limit.goal_aa = rate(ten, limit.goal_n, runs), rate(aa, limit.goal_n, 2 * runs)
    limit.mw_power, limit.kayenta_power = single_look(limit.mw_n, runs)
    z = delta / SIGMA * math.sqrt(limit.mw_n / 2 * 3 / math.pi)
    limit.mw_analytic = normal.cdf(z - normal.inv_cdf(KAYENTA_CONFIDENCE))
    return limit


# --------------------------------------------------------------------------- report


def se(p: float, runs: int) -> float:
    return math.sqrt(max(p * (1 - p), 1.0 / runs) / runs)


def pct(count: int, runs: int) -> str:
    return f"{100 * count / runs:.1f}"


def render(
    speeds: Sequence[Speed],
    table: dict[tuple[int, str], dict[str, int]],
    runs: int,
    thresholds: dict[int, float],
    limit: Limit,
    *,
    elapsed_s: float,
    workers: int,
    stamp: Stamp,
) -> str:
    out: list[str] = [BEGIN, "", "## Canary judge: speed, false rollbacks and power against Flagger- and Kayenta-style judges", ""]
    w = out.append
    w("Generated by `bench/canary_judge.py` (`make bench`); see bench/README.md. Every sample below is simulated from a seeded")
    w("generator: the figures (but the timings) are the same on every machine.")
    w(f"Whole script: {elapsed_s / 60:.1f} minutes on {workers} worker process(es).")
    w("")
    out.extend(stamp.table())
    w("")
    # ---- speed
    w("### Speed: judging 100,000 samples per side")
    w("")
    w(f"Goal (issue 7): *judging 100k samples per side takes under {SPEED_GOAL_MS:g} ms.* `judge_metric` on one latency metric,")
    w("everything it does: tuples to arrays, dropping non-finite values, sorting, Mann-Whitney U with the tie correction, the")
    w("Hodges-Lehmann ratio and both its intervals (the look's and the pass bound's) from the order statistics of the 10^10")
    w(f"pairwise differences (counted, never materialised), the percentiles. Look {K} of {K}, default metric settings;")
    w(f"{SPEED_RUNS} runs after one warm-up, one process.")
    w("")
    w("| samples (lognormal, median 20 ms) | median ms | min ms | max ms | ratio (CI) | state |")
    w("|---|---|---|---|---|---|")
    for s in speeds:
        w(
            f"| {s.case} | **{s.median_ms:.1f}** | {min(s.timings_ms):.1f} | {max(s.timings_ms):.1f} | "
            f"{s.ratio:.4f} ({s.ci[0]:.4f}-{s.ci[1]:.4f}) | {s.state} |"
        )
    worst = max(s.median_ms for s in speeds)
    w("")
    w(f"**Goal {'met' if worst < SPEED_GOAL_MS else 'NOT met'}**: {worst:.1f} ms at most (median), goal {SPEED_GOAL_MS:g} ms.")
    w("")
    # ---- table
    aa_se = se(0.01, runs)
    w(f"### Simulation: false rollbacks and power, K = {K} intervals, {runs:,} runs per cell")
    w("")
    w("Distributions (seeded numpy `default_rng`): latency **lognormal** with median 20 ms and **sigma 0.5** (log-scale")
    w("standard deviation), the canary's values multiplied by 1.10 or 1.25 (a multiplicative shift: every request x% slower);")
    w("errors **Bernoulli** per request, 0.5 % on the baseline, 0.5 % (A/A) or 2 % on the canary. n is the number of samples")
    w(f"(requests) per side at the last look; each of the {K} intervals adds n/{K} per side. Every judge sees the same samples")
    w("of a run. A cell is the share of runs that ended in rollback, in % (A/A: false rollbacks; otherwise power). Standard")
    w(f"error of a cell: sqrt(p(1-p)/{runs:,}), {100 * aa_se:.2f} points at 1 %, {100 * se(0.5, runs):.1f} points at 50 %.")
    w("")
    header = "| n per side | judge | " + " | ".join(s.title for s in SCENARIOS) + " |"
    w(header)
    w("|---|---|" + "---|" * len(SCENARIOS))
    for n in NS:
        for judge in JUDGES:
            cells = [pct(table[(n, s.key)][judge], runs) for s in SCENARIOS]
            if judge == "ours_hp":
                cells = [f"**{c}**" for c in cells]
            w(f"| {n:,} | {JUDGE_TITLES[judge]} | " + " | ".join(cells) + " |")
    w("")
    hp = ", ".join(f"{a:.3g}" for a in look_alphas(policy("latency", "haybittle-peto")))
    obf = ", ".join(f"{a:.2g}" for a in look_alphas(policy("latency", "obrien-fleming")))
    w("How each judge decides:")
    w("")
    w("- **releasegate**: `judge_run` under a policy with one critical metric (latency: Mann-Whitney on log values with the")
    w(f"  Hodges-Lehmann ratio; errors: Fisher's exact test), `alpha` {ALPHA:g}, **`allowed_increase: 1.0`** (any significant")
    w("  increase fails, as Kayenta's default), `min_samples` 20, score thresholds 95/75. Alpha per look: haybittle-peto")
    w(f"  ({hp}), obrien-fleming ({obf}), none ({ALPHA:g} at every look). Rollback as soon as the metric fails; promotion at")
    w("  the last look otherwise (with allowed_increase 1.0 nothing can be shown within tolerance earlier).")
    limits = ", ".join(f"n={n:,}: {thresholds[n]:.1f} ms" for n in NS)
    w("- **Flagger-style**: one check per interval on the canary alone (Flagger compares with no baseline): latency")
    w("  `request-duration`, the interval's p99 <= a fixed threshold; errors: `request-success-rate` >= 99 %, i.e. the interval's")
    w(f"  error rate <= {100 * FLAGGER_MAX_ERROR_RATE:g} %. A failed check holds the weight and increments `failedChecks` (never reset);")
    w(f"  `threshold: {FLAGGER_THRESHOLD}` failed checks roll back, {K} passed checks promote (so a run may take up to")
    w(f"  {K + FLAGGER_THRESHOLD - 1} intervals). The p99 threshold is **calibrated from the baseline distribution**: the 99th")
    w(f"  percentile of one baseline interval's p99 over {FLAGGER_CALIBRATION_INTERVALS:,} simulated intervals of the same size, so")
    w(f"  a healthy interval fails 1 % of the time ({limits}): better tuned than a hand-set threshold can be.")
    w("- **Kayenta-style**: NetflixACAJudge's Mann-Whitney classifier as in `MannWhitneyClassifier.scala`, direction")
    w("  increase, on raw values (latency ms, or the 0/1 error flag of every request): High iff the lower bound of the 98 %")
    w("  two-sided confidence interval of the Hodges-Lehmann shift is above 0.25 x |shift| and the mean ratio is >= 1.0")
    w("  (`allowedIncrease` default). Judged after every interval on everything so far, with no correction; a High")
    w("  interval scores 0, which stops the run as failed (`MonitorCanaryTask`), else the last interval's pass decides.")
    w("")
    # ---- limit
    w("### The physical limit: +10 % latency (sigma 0.5), 95 % power, at most 1 % false rollbacks")
    w("")
    w("| test | n per side | power at +10 % | false rollback (A/A) |")
    w("|---|---|---|---|")
    w(
        f"| optimal fixed-sample test: one-sided t-test on log latency, alpha {ALPHA:g} (one look) | {limit.analytic_n:.0f} analytic, "
        f"{limit.t_n} simulated | 95 % analytic, {100 * limit.t_power:.1f} % simulated ({limit.t_runs:,} runs) | "
        f"{100 * ALPHA:g} % by construction |"
    )
    ours = f"**releasegate**, {K} looks, haybittle-peto, alpha {ALPHA:g}, allowed_increase 1.0"
    for label, n, power, false in (
        ("where its power curve crosses 95 %", limit.found_n, limit.found_power, limit.found_aa),
        ("at the goal's bound", limit.goal_n, limit.goal_power, limit.goal_aa),
    ):
        w(
            f"| {ours}, {label} | **{n:,}** at the last look ({n / limit.t_n:.2f} x the limit) | **{100 * power:.1f} %** "
            f"({limit.runs:,} runs, SE {100 * se(power, limit.runs):.1f}) | **{100 * false:.2f} %** over all looks "
            f"({2 * limit.runs:,} runs, SE {100 * se(max(false, 0.01), 2 * limit.runs):.2f}) |"
        )
    w(
        f"| single-look Mann-Whitney at 98 % confidence (one-sided alpha 0.02) | {limit.mw_n} | {100 * limit.mw_power:.1f} % "
        f"({limit.runs:,} runs; {100 * limit.mw_analytic:.1f} % by the normal approximation with efficiency 3/pi) | 2 % |"
    )
    w(
        f"| single-look Kayenta-style rule (98 % CI, tolerance 0.25) | {limit.mw_n} | {100 * limit.kayenta_power:.1f} % "
        f"({limit.runs:,} runs) | - |"
    )
    w("")
    grid = ", ".join(f"n={n:,}: {100 * hits / r:.1f} %" for n, r, hits in limit.grid)
    a, b = limit.fit
    w(f"Our judge's power at +10 % around the crossing ({limit.grid[0][1]:,} runs each): {grid}. Power is Phi(c sqrt(n) - z),")
    w(f"so a weighted least-squares line probit(power) = {a:.3f} + {b:.4f} sqrt(n) through all of them gives the 95 % crossing,")
    w(f"rounded up to a multiple of {K} (even intervals); both rows were then simulated again on fresh samples.")
    w("")
    margin = 2 * se(LIMIT_POWER, limit.runs)
    goal_n = limit.goal_power >= LIMIT_POWER and limit.found_n <= limit.goal_n
    goal_aa = max(limit.found_aa, limit.goal_aa) <= ALPHA
    w(
        f"**Goal (95 % power within 15 % of the limit, n <= {limit.goal_n:,}) {'met' if goal_n else 'NOT met'}**: the judge reaches 95 % "
        f"at about {limit.found_n:,} per side ({limit.found_n / limit.t_n:.2f} x the t-test's {limit.t_n}; measured there "
        f"{100 * limit.found_power:.1f} %, within {100 * margin:.1f} points = 2 SE of 95 % "
        f"{'yes' if abs(limit.found_power - LIMIT_POWER) <= margin else 'no'}) and has {100 * limit.goal_power:.1f} % at {limit.goal_n:,}. "
        f"**Goal (A/A false rollbacks over all looks <= 1 %) {'met' if goal_aa else 'NOT met'}**: {100 * limit.found_aa:.2f} % "
        f"and {100 * limit.goal_aa:.2f} %."
    )
    normal = statistics.NormalDist()
    last_alpha = look_alphas(policy("latency", "haybittle-peto"))[-1]
    z_power = normal.inv_cdf(LIMIT_POWER)
    cost_alpha = ((normal.inv_cdf(1 - last_alpha) + z_power) / (normal.inv_cdf(1 - ALPHA) + z_power)) ** 2 - 1
    w(f"Where the extra {100 * (limit.found_n / limit.t_n - 1):.0f} % come from: Mann-Whitney's efficiency against the t-test on")
    w(f"normal (log) data is 3/pi = 0.955 (+{100 * (math.pi / 3 - 1):.1f} % samples), and the last look tests at alpha {last_alpha:g}")
    w(f"instead of {ALPHA:g}, since the interim looks keep {ALPHA - last_alpha:g} for an early rollback on strong evidence")
    w(f"(+{100 * cost_alpha:.1f} %); the interim looks win a little of it back. The union bound (alphas summing to {ALPHA:g}) is")
    w("conservative: the looks are correlated, so the false-rollback rate over all looks stays below alpha.")
    w("")
    out.append(END)
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- command line


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=2_000, help="simulated runs per cell of the table (default 2000)")
    parser.add_argument("--limit-runs", type=int, default=4_000, help="runs of each figure of the physical-limit table (default 4000)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="simulation processes (default 2)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 200 runs per cell (figures too noisy to record)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="file to write the section into (default bench/RESULTS.md)")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.limit_runs = 200, 400
    if args.runs < 100 or args.limit_runs < 100 or args.workers < 1:
        parser.error("--runs and --limit-runs must be >= 100, --workers >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = Stamp.start()
    started = time.monotonic()
    print("speed: judge_metric on 100k samples per side", file=sys.stderr, flush=True)
    speeds = bench_speed()
    thresholds = {n: flagger_latency_threshold(n) for n in NS}
    table: dict[tuple[int, str], dict[str, int]] = {}
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for n in NS:
            for scenario in SCENARIOS:
                print(f"table: n={n}, {scenario.title}, {args.runs} runs", file=sys.stderr, flush=True)
                table[(n, scenario.key)] = simulate(pool, chunks(scenario, n, args.runs, JUDGES, thresholds[n]), f"n={n} {scenario.key}")
        print("physical limit", file=sys.stderr, flush=True)
        limit = bench_limit(pool, args.limit_runs, args.limit_runs // 2)
    section = render(speeds, table, args.runs, thresholds, limit, elapsed_s=time.monotonic() - started, workers=args.workers, stamp=stamp)
    write_section(args.output, section, BEGIN, END)
    print(section)
    print(f"written to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
