"""The canary judge: cumulative samples of both sides -> per-metric states -> promote / rollback / hold.

Pure (no I/O, no clock). The decision model (the canary brief; gates.yaml ``canary:``):

Per metric, at look k of K = ``max_intervals``, on everything intervals 1..k collected:

1. **nodata** if either side has fewer than ``min_samples`` usable values (latency) or trials
   (rate). Never a pass, never a fail.
2. **Test**, one-sided toward "worse" (``either``: both one-sided tests at alpha_k / 2 each):
   latency: Mann-Whitney U on log values, the Hodges-Lehmann ratio ``exp(shift)`` and its
   distribution-free interval; rate: Fisher's exact test, the +0.5-corrected ratio of rates and
   its Katz interval.
3. **failed** iff p < alpha_k AND the ratio is beyond the allowed effect (Kayenta's rule: a
   significant but tolerable change does not fail).
4. **passed** iff the bound toward "worse" at confidence 1 - alpha (the total alpha) is within the
   allowed effect ("shown within tolerance", at any look), or at the last look the metric has
   data and did not fail.
5. otherwise **undecided**.

:func:`look_alphas` spreads alpha over the looks so that the sum is at most alpha (union bound):
the false-rollback rate over all looks stays at or below alpha whatever the looks' correlation.
Score = weighted share of passed metrics; a critical failure or a max score below ``marginal``
rolls back, a passing score with every critical metric passed promotes, the last look holds
otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np

from releasegate.canary import statistics as st
from releasegate.canary.model import (
    IntervalSamples,
    LatencySamples,
    LookDecision,
    LookJudgement,
    MetricJudgement,
    MetricSamples,
    MetricState,
    RateSamples,
    RunJudgement,
    merge,
)
from releasegate.config import CanaryMetric, CanaryPolicy

__all__ = ["explain", "judge_look", "judge_metric", "judge_run", "look_alphas"]

_NORMAL = NormalDist()


# --------------------------------------------------------------------------- alpha per look


def look_alphas(policy: CanaryPolicy) -> tuple[float, ...]:
    """The one-sided level of each look, 1..max_intervals; they sum to at most ``policy.alpha``
    (except ``none``, which is the uncorrected judge the benchmark compares against)."""
    k_max, alpha = policy.max_intervals, policy.alpha
    if policy.looks == "none":
        return (alpha,) * k_max
    if policy.looks == "bonferroni" or k_max == 1:
        return (alpha / k_max,) * k_max
    if policy.looks == "haybittle-peto":
        # Interim looks roll back only on overwhelming evidence; the last look keeps nearly all of alpha.
        return (policy.interim_alpha / (k_max - 1),) * (k_max - 1) + (alpha - policy.interim_alpha,)
    # O'Brien-Fleming-like Lan-DeMets spending: a(t) = 2 - 2 Phi(z_{1 - alpha/2} / sqrt(t)), a(1) = alpha.
    z = _NORMAL.inv_cdf(1.0 - alpha / 2.0)

    def spent(t: float) -> float:
        return 2.0 - 2.0 * _NORMAL.cdf(z / math.sqrt(t)) if t > 0 else 0.0

    spending = [spent(k / k_max) for k in range(k_max + 1)]
    # A look whose share underflows to 0 could never reject; give it the smallest positive level.
    return tuple(max(spending[k] - spending[k - 1], 1e-300) for k in range(1, k_max + 1))


# --------------------------------------------------------------------------- one metric


@dataclass(frozen=True)
class _Test:
    """What a kind's test produced, ready for the shared decision rule."""

    name: str  # "mann-whitney" | "fisher"
    p_greater: float
    p_less: float
    ratio: float
    ci: tuple[float, float]  # at the look's per-side level
    pass_ci: tuple[float, float]  # at the total alpha's per-side level
    statistic: float
    effect_size: float
    baseline: dict[str, float | int | None]
    canary: dict[str, float | int | None]
    figures: str  # both sides in a few words, for the reason line


def judge_metric(metric: CanaryMetric, samples: MetricSamples | None, *, look: int, policy: CanaryPolicy) -> MetricJudgement:
    """One metric at look ``look`` (1-based) on its cumulative samples; ``None``: nothing collected (no data)."""
    if look < 1:
        raise ValueError(f"looks are numbered from 1, got {look}")
    k_max = policy.max_intervals
    final = look >= k_max
    alpha_k = look_alphas(policy)[min(look, k_max) - 1]
    sides = 2 if metric.direction == "either" else 1
    # The level each one-sided test uses at this look, and the one "shown within tolerance" uses.
    a_side, a_pass = alpha_k / sides, policy.alpha / sides
    allowed = metric.allowed_decrease if metric.direction == "decrease" else metric.allowed_increase
    where = f"look {look}/{k_max}"

    def nodata(
        reason: str,
        flip: str,
        n_b: int = 0,
        n_c: int = 0,
        baseline: Mapping[str, float | int | None] | None = None,
        canary: Mapping[str, float | int | None] | None = None,
    ) -> MetricJudgement:
        return MetricJudgement(
            metric.name, metric.kind, "nodata", metric.critical, metric.weight, "none", metric.direction, n_b, n_c,
            baseline or {}, canary or {}, None, None, None, None, None, a_side, None, allowed, reason, flip,
        )  # fmt: skip

    if samples is None:
        return nodata(f"no data: nothing was collected for this metric ({where})", "judged once both sides deliver samples")
    problems = f"; collection: {'; '.join(samples.problems)}" if samples.problems else ""
    if samples.kind != metric.kind:
        return nodata(
            f"no data: the samples are {samples.kind} but the policy judges a {metric.kind} metric{problems}",
            f"judged once the samples are {metric.kind} samples",
        )

    if isinstance(samples.baseline, LatencySamples) and isinstance(samples.canary, LatencySamples):
        base, base_out = _usable(samples.baseline)
        can, can_out = _usable(samples.canary)
        excluded = base_out + can_out
        note = f"; {excluded} values excluded (non-finite or <= 0: baseline {base_out}, canary {can_out})" if excluded else ""
        n_b, n_c = base.size, can.size
        if n_b < metric.min_samples or n_c < metric.min_samples:
            return nodata(
                f"no data: baseline {n_b}, canary {n_c} values, min_samples {metric.min_samples} per side ({where}){note}{problems}",
                _need_more(metric.min_samples, n_b, n_c, "values"),
                n_b, n_c, _latency_figures(base), _latency_figures(can),
            )  # fmt: skip
        test = _latency_test(base, can, a_side, a_pass, metric.direction)
    elif isinstance(samples.baseline, RateSamples) and isinstance(samples.canary, RateSamples):
        b, c = samples.baseline, samples.canary
        bad = [
            f"{side} {s.events} events out of {s.trials} trials"
            for side, s in (("baseline", b), ("canary", c))
            if not 0 <= s.events <= s.trials
        ]
        if bad:
            return nodata(
                f"no data: impossible counts ({', '.join(bad)}){problems}", "judged once the counts are consistent (0 <= events <= trials)"
            )
        note = ""
        if b.trials < metric.min_samples or c.trials < metric.min_samples:
            return nodata(
                f"no data: baseline {b.trials}, canary {c.trials} trials, min_samples {metric.min_samples} per side ({where}){problems}",
                _need_more(metric.min_samples, b.trials, c.trials, "trials"),
                b.trials, c.trials, _rate_figures(b), _rate_figures(c),
            )  # fmt: skip
        n_b, n_c = b.trials, c.trials
        test = _rate_test(b, c, a_side, a_pass)
        if b.events == 0 and c.events == 0:
            note = "; no events on either side"
    else:  # pragma: no cover - MetricSamples.__post_init__ keeps both sides of one kind
        raise TypeError(f"metric {metric.name}: sides of different kinds")

    up = metric.direction in ("increase", "either")
    down = metric.direction in ("decrease", "either")
    allowed_up = _allowed_up(metric, test)
    if metric.direction != "decrease":
        allowed = allowed_up
    failed_up = up and test.p_greater < a_side and test.ratio > allowed_up
    failed_down = down and test.p_less < a_side and test.ratio < metric.allowed_decrease
    within = (not up or test.pass_ci[1] <= allowed_up) and (not down or test.pass_ci[0] >= metric.allowed_decrease)
    state: MetricState
    if failed_up or failed_down:
        state = "failed"
    elif within:
        state = "passed"
    elif final:
        state = "passed"
    else:
        state = "undecided"
    p_value = (
        test.p_greater
        if metric.direction == "increase"
        else test.p_less
        if metric.direction == "decrease"
        else min(test.p_greater, test.p_less)
    )
    text = _Text(metric, test, a_side, a_pass, where, final, look, k_max, allowed_up)
    reason = text.reason(state, failed_up, within) + note + problems
    return MetricJudgement(
        name=metric.name,
        kind=metric.kind,
        state=state,
        critical=metric.critical,
        weight=metric.weight,
        test=test.name,
        direction=metric.direction,
        n_baseline=n_b,
        n_canary=n_c,
        baseline=test.baseline,
        canary=test.canary,
        ratio=test.ratio,
        ci=test.ci,
        confidence=1.0 - 2.0 * a_side,
        statistic=test.statistic,
        p_value=p_value,
        alpha=a_side,
        effect_size=test.effect_size,
        allowed=allowed,
        reason=reason,
        flip=text.flip(state, within),
    )


def _usable(side: LatencySamples) -> tuple[st.FloatArray, int]:
    """The finite, positive values sorted, and how many were excluded (with the collector's drops)."""
    values = np.fromiter(side.values, dtype=np.float64, count=len(side.values))
    keep = np.isfinite(values) & (values > 0)
    usable = np.sort(values[keep])
    return usable, int(values.size - usable.size) + side.dropped


def _latency_figures(values: st.FloatArray) -> dict[str, float | int | None]:
    if values.size == 0:
        return {"median": None, "p95": None}
    return {"median": st.percentile(values, 50), "p95": st.percentile(values, 95)}


def _rate_figures(side: RateSamples) -> dict[str, float | int | None]:
    return {"rate": side.events / side.trials if side.trials > 0 else None, "events": side.events, "trials": side.trials}


def _allowed_up(metric: CanaryMetric, test: _Test) -> float:
    """The ratio the canary may reach: allowed_increase, or what allowed_increase_ms adds at the baseline's median."""
    median = test.baseline.get("median")
    if metric.kind != "latency" or not metric.allowed_increase_ms or not isinstance(median, (int, float)) or median <= 0:
        return metric.allowed_increase
    return max(metric.allowed_increase, 1.0 + metric.allowed_increase_ms / float(median))


def _latency_test(base: st.FloatArray, can: st.FloatArray, a_side: float, a_pass: float, direction: str) -> _Test:
    # Log values: a multiplicative change (a slower canary is x% slower) is a shift, and the
    # shift's exponential is the ratio canary / baseline. Ranks (U, p) do not change.
    log_b, log_c = np.log(base), np.log(can)
    mw = st.mann_whitney(log_b, log_c)
    alphas = sorted({a_side, a_pass})
    # The pass rule reads one bound of the pass-level interval (both for either); the other
    # side would cost a search for nothing. The look's interval is shown whole.
    only: dict[float, Literal["lower", "upper"]] = {}
    if a_pass != a_side and direction != "either":
        only[a_pass] = "upper" if direction == "increase" else "lower"
    hl = st.hodges_lehmann(log_b, log_c, alphas, test=mw, only=only)
    lo, hi = hl.bounds(a_side)
    pass_lo, pass_hi = hl.bounds(a_pass)
    fb, fc = _latency_figures(base), _latency_figures(can)
    figures = f"median {_num(fb['median'])} -> {_num(fc['median'])}, p95 {_num(fb['p95'])} -> {_num(fc['p95'])}, n {base.size}/{can.size}"
    return _Test(
        "mann-whitney", mw.p_greater, mw.p_less, _exp(hl.shift), (_exp(lo), _exp(hi)), (_exp(pass_lo), _exp(pass_hi)), mw.u, mw.effect_size,
        fb, fc, figures,
    )  # fmt: skip


def _rate_test(b: RateSamples, c: RateSamples, a_side: float, a_pass: float) -> _Test:
    fisher = st.fisher_exact(b.events, b.trials, c.events, c.trials)
    rr = st.risk_ratio(b.events, b.trials, c.events, c.trials, a_side)
    rr_pass = st.risk_ratio(b.events, b.trials, c.events, c.trials, a_pass)
    rate_b, rate_c = b.events / b.trials, c.events / c.trials
    figures = f"events {b.events}/{b.trials} ({rate_b:.3%}) -> {c.events}/{c.trials} ({rate_c:.3%})"
    return _Test(
        "fisher", fisher.p_greater, fisher.p_less, rr.ratio, (rr.lower, rr.upper), (rr_pass.lower, rr_pass.upper), float(c.events),
        rate_c - rate_b, _rate_figures(b), _rate_figures(c), figures,
    )  # fmt: skip


def _exp(value: float) -> float:
    """exp of a log ratio; -inf/inf bounds (too few samples) become 0/inf, a bound not computed (NaN) stays NaN."""
    if math.isnan(value):
        return math.nan
    return math.exp(value) if value < 709 else math.inf


def _need_more(minimum: int, n_b: int, n_c: int, unit: str) -> str:
    short = [f"{side} needs {minimum - n} more" for side, n in (("baseline", n_b), ("canary", n_c)) if n < minimum]
    return f"judged once both sides have {minimum} {unit} ({', '.join(short)})"


def _num(value: float | int | None) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return f"{value:.4g}"


def _ratio(value: float) -> str:
    return _num(value) if not math.isfinite(value) else f"{value:.3f}"


def _pct(confidence: float) -> str:
    """98% / 99.95% / 99.99999832%: as many digits as it takes to show how far from 100 % it is."""
    gap = 1.0 - confidence
    digits = 2 + math.ceil(-math.log10(gap)) if gap > 0 else 6
    return f"{100 * confidence:.{max(2, digits)}g}%"


@dataclass(frozen=True)
class _Text:
    """The reason and flip lines of one judged metric, with its figures."""

    metric: CanaryMetric
    test: _Test
    a_side: float
    a_pass: float
    where: str
    final: bool
    look: int
    k_max: int
    allowed_up: float  # allowed_increase, raised by allowed_increase_ms at the baseline's median

    @property
    def allowed(self) -> str:
        """The allowed ratio up, and where it came from when allowed_increase_ms raised it."""
        m = self.metric
        if self.allowed_up > m.allowed_increase:
            return f"{self.allowed_up:.2f} (+{m.allowed_increase_ms:g} ms at the baseline median {_num(self.test.baseline.get('median'))})"
        return f"{self.allowed_up:.2f}"

    @property
    def conf(self) -> str:
        return _pct(1.0 - 2.0 * self.a_side)

    @property
    def pass_conf(self) -> str:
        # One-sided bound at 1 - alpha (either: each side at alpha / 2, a two-sided 1 - alpha interval).
        return _pct(1.0 - self.a_pass) if self.metric.direction != "either" else _pct(1.0 - 2.0 * self.a_pass)

    def _p(self) -> str:
        t, d = self.test, self.metric.direction
        if d == "increase":
            return f"p={t.p_greater:.2g}"
        if d == "decrease":
            return f"p={t.p_less:.2g}"
        return f"p(higher)={t.p_greater:.2g}, p(lower)={t.p_less:.2g}"

    def _interval(self) -> str:
        lo, hi = self.test.ci
        return f"ratio {_ratio(self.test.ratio)} ({self.conf} CI {_ratio(lo)}-{_ratio(hi)})"

    def reason(self, state: MetricState, failed_up: bool, within: bool) -> str:
        m, t = self.metric, self.test
        label = "Mann-Whitney" if t.name == "mann-whitney" else "Fisher"
        if state == "failed":
            worse, allowed, word = ("higher", self.allowed, "above") if failed_up else ("lower", f"{m.allowed_decrease:.2f}", "below")
            p = t.p_greater if failed_up else t.p_less
            head = f"canary {worse}: {self._interval()} {word} allowed {allowed} and {label} p={p:.2g} < alpha {self.a_side:.2g}"
        elif state == "passed" and within:
            head = f"within tolerance: {self._pass_condition()}; {self._interval()}, {self._p()}"
        elif state == "passed":
            head = (
                f"last look, not significantly worse beyond the allowed effect: {self._interval()}, {self._p()} vs alpha {self.a_side:.2g}"
            )
        else:
            head = f"undecided: {self._interval()}, {self._p()} vs alpha {self.a_side:.2g}; {self._pass_condition(negated=True)}"
        return f"{head} ({self.where}); {t.figures}"

    def _fails_if(self) -> str:
        m, t = self.metric, self.test
        label = "Mann-Whitney" if t.name == "mann-whitney" else "Fisher"
        lo, hi = t.ci
        parts = []
        if m.direction in ("increase", "either"):
            # For Mann-Whitney "p < alpha" and "the lower bound above 1" are one statement (the inversion).
            bound = f"; the lower {self.conf} bound above 1, now {_ratio(lo)}" if t.name == "mann-whitney" else ""
            parts.append(
                f"{label} p(higher) < {self.a_side:.2g} (now {t.p_greater:.2g}{bound}) and ratio > {self.allowed} (now {_ratio(t.ratio)})"
            )
        if m.direction in ("decrease", "either"):
            bound = f"; the upper {self.conf} bound below 1, now {_ratio(hi)}" if t.name == "mann-whitney" else ""
            parts.append(
                f"{label} p(lower) < {self.a_side:.2g} (now {t.p_less:.2g}{bound}) "
                f"and ratio < {m.allowed_decrease:.2f} (now {_ratio(t.ratio)})"
            )
        return " or ".join(parts)

    def _pass_condition(self, *, negated: bool = False) -> str:
        m, (lo, hi) = self.metric, self.test.pass_ci
        parts = []
        if m.direction in ("increase", "either"):
            parts.append(f"the upper {self.pass_conf} bound {'>' if negated else '<='} {self.allowed} (now {_ratio(hi)})")
        if m.direction in ("decrease", "either"):
            parts.append(f"the lower {self.pass_conf} bound {'<' if negated else '>='} {m.allowed_decrease:.2f} (now {_ratio(lo)})")
        return (" or " if negated else " and ").join(parts)

    def _stops_failing(self) -> str:
        m, t = self.metric, self.test
        label = "Mann-Whitney" if t.name == "mann-whitney" else "Fisher"
        if t.p_greater < self.a_side and t.ratio > self.allowed_up and m.direction != "decrease":
            return (
                f"stops failing if {label} p(higher) rises to {self.a_side:.2g} or above (now {t.p_greater:.2g}) "
                f"or the ratio falls to {self.allowed} or below (now {_ratio(t.ratio)})"
            )
        return (
            f"stops failing if {label} p(lower) rises to {self.a_side:.2g} or above (now {t.p_less:.2g}) "
            f"or the ratio rises to {m.allowed_decrease:.2f} or above (now {_ratio(t.ratio)})"
        )

    def flip(self, state: MetricState, within: bool) -> str:
        if state == "failed":
            return self._stops_failing()
        if state == "passed" and within and not self.final:
            return f"undecided instead if {self._pass_condition(negated=True)}; fails only if {self._fails_if()}"
        if state == "passed":
            return f"fails if {self._fails_if()}"
        tail = f"; otherwise passes at the last look ({self.k_max}) unless it fails" if not self.final else ""
        return f"fails if {self._fails_if()}; passes early once {self._pass_condition()}{tail}"


# --------------------------------------------------------------------------- one look


def judge_look(policy: CanaryPolicy, samples: Mapping[str, MetricSamples], look: int) -> LookJudgement:
    """Every metric of the policy at look ``look`` on the cumulative ``samples``, the score and the decision."""
    k_max = policy.max_intervals
    metrics = tuple(judge_metric(m, samples.get(m.name), look=look, policy=policy) for m in policy.metrics)
    total = sum(j.weight for j in metrics)
    passed = sum(j.weight for j in metrics if j.state == "passed")
    failed = sum(j.weight for j in metrics if j.state == "failed")
    score, max_score = 100.0 * passed / total, 100.0 * (1.0 - failed / total)
    thresholds = policy.score
    critical_failed = [j for j in metrics if j.critical and j.state == "failed"]
    critical = [j for j in metrics if j.critical]
    decision: LookDecision
    reasons: list[str] = []
    if critical_failed:
        decision = "rollback"
        reasons = [f"{j.name} (critical) failed: {j.reason}" for j in critical_failed]
    elif max_score < thresholds.marginal:
        decision = "rollback"
        names = ", ".join(f"{j.name} (weight {j.weight:g})" for j in metrics if j.state == "failed")
        reasons = [f"max score {max_score:.1f} < marginal {thresholds.marginal:g}: failed {names}"]
        reasons += [f"{j.name} failed: {j.reason}" for j in metrics if j.state == "failed"]
    elif score >= thresholds.pass_ and all(j.state == "passed" for j in critical):
        decision = "promote"
        which = f"; every critical metric passed ({', '.join(j.name for j in critical)})" if critical else ""
        reasons = [f"score {score:.1f} >= pass {thresholds.pass_:g}{which}"]
        reasons += [f"{j.name} passed: {j.reason}" for j in metrics if j.state == "passed"]
    else:
        decision = "continue" if look < k_max else "hold"
        if decision == "hold":
            if score < thresholds.pass_:
                band = f"score {score:.1f} below pass {thresholds.pass_:g} (marginal {thresholds.marginal:g}, max score {max_score:.1f})"
                reasons.append(f"{band} at the last look")
            waiting = [j for j in critical if j.state != "passed"]
            reasons += [f"{j.name} (critical) at the last look: {j.reason}" for j in waiting]
            reasons += [f"{j.name} {j.state}: {j.reason}" for j in metrics if j.state in ("failed", "nodata") and not j.critical]
        else:
            reasons.append(
                f"look {look}/{k_max}: score {score:.1f} (pass {thresholds.pass_:g}), max score {max_score:.1f}; not decided yet"
            )
            reasons += [f"{j.name} {j.state}: {j.reason}" for j in metrics if j.state in ("undecided", "nodata", "failed")]
    return LookJudgement(look, k_max, decision, score, max_score, metrics, tuple(reasons))


# --------------------------------------------------------------------------- a run


def judge_run(policy: CanaryPolicy, intervals: Sequence[IntervalSamples], *, complete: bool = True) -> RunJudgement:
    """Looks 1, 2, ... on the cumulative samples, stopping at the first that decides.

    Only the first ``max_intervals`` intervals are judged. A run whose looks all say continue
    ends in hold: ``complete=False`` means it stopped early (deadline, collection failure);
    ``complete=True`` with fewer intervals than looks means the record ends there.
    """
    k_max = policy.max_intervals
    used = list(intervals)[:k_max]
    looks: list[LookJudgement] = []
    total: dict[str, MetricSamples] = {}
    for k, interval in enumerate(used, 1):
        for name, samples in interval.metrics.items():
            total[name] = merge(total[name], samples) if name in total else samples
        look = judge_look(policy, total, k)
        looks.append(look)
        if look.decision != "continue":
            break
    if not looks:
        return RunJudgement("hold", (), ("no interval was collected: nothing to judge, so the canary cannot be promoted",))
    last = looks[-1]
    extra = (f"only the first {k_max} of {len(intervals)} intervals were judged (max_intervals {k_max})",) if len(intervals) > k_max else ()
    if last.decision == "continue":
        why = (
            f"the run stopped after look {last.look} of {k_max} (deadline or collection failure) before a decision"
            if not complete
            else f"only {last.look} of {k_max} intervals were recorded, none decided"
        )
        return RunJudgement("hold", tuple(looks), (why, *last.reasons[1:], *extra))
    return RunJudgement(last.decision, tuple(looks), (*last.reasons, *extra))


# --------------------------------------------------------------------------- explanation


def explain(run: RunJudgement) -> str:
    """A plain-text table of the deciding look for the terminal and ``releasegate canary replay``."""
    lines: list[str] = []
    last = run.last
    if last is None:
        lines.append(f"decision: {run.decision.upper()}")
        lines += [f"  - {r}" for r in run.reasons]
        return "\n".join(lines)
    history = ", ".join(f"{look.look}: {look.decision} ({look.score:.0f}/{look.max_score:.0f})" for look in run.looks)
    lines.append(f"looks (decision, score/max score): {history}")
    lines.append(f"look {last.look} of {last.max_looks}: score {last.score:.1f}, max score {last.max_score:.1f}")
    header = ("metric", "state", "n base/can", "baseline", "canary", "ratio", "CI", "conf", "p", "alpha")
    rows = [header]
    for j in last.metrics:
        rows.append(
            (
                j.name + (" *" if j.critical else ""),
                j.state,
                f"{j.n_baseline}/{j.n_canary}",
                _side(j.kind, j.baseline),
                _side(j.kind, j.canary),
                "-" if j.ratio is None else _ratio(j.ratio),
                "-" if j.ci is None else f"{_ratio(j.ci[0])}-{_ratio(j.ci[1])}",
                "-" if j.confidence is None else _pct(j.confidence),
                "-" if j.p_value is None else f"{j.p_value:.2g}",
                f"{j.alpha:.2g}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    lines.append("(* critical; baseline/canary: median/p95 or rate (events/trials); CI of the ratio canary/baseline)")
    lines.append("")
    for j in last.metrics:
        lines.append(f"{j.name}: {j.state} - {j.reason}")
        lines.append(f"  flips: {j.flip}")
    lines.append("")
    lines.append(f"decision: {run.decision.upper()}")
    lines += [f"  - {r}" for r in run.reasons]
    return "\n".join(lines)


def _side(kind: str, figures: Mapping[str, float | int | None]) -> str:
    if not figures:
        return "-"
    if kind == "latency":
        return f"{_num(figures.get('median'))}/{_num(figures.get('p95'))}"
    rate = figures.get("rate")
    return f"{'n/a' if rate is None else f'{float(rate):.3%}'} ({figures.get('events')}/{figures.get('trials')})"
