"""slo.error_rate and slo.latency: active probing at the edge, pure judges at the core.

**Probing** (:func:`probe`): the target's ``slo`` plan sends ``requests`` GETs spread evenly over
``window_s``, round robin over ``paths``, with one identity's token, through one keep-alive
:class:`~releasegate.probes.api.ApiClient` per deployment. Before the window, untimed warm-up
requests open as many connections as the window is expected to keep busy (Little's law: the
request rate times the latency of a first request, at least one, at most the in-flight cap), so
a sample measures the service, not a TLS handshake. The loop is open: request *i* is due at
``t0 + i * window / requests`` and leaves then whether or not earlier ones have answered (waiting
for them would hide a stall: coordinated omission); at most :data:`MAX_IN_FLIGHT` are outstanding
per deployment. With a baseline deployment (``--baseline`` naming a second target) both are
probed in the same window, requests alternating, so both see the same conditions.

**Samples** are raw (never histogram buckets: a +100 ms shift shows as +100 ms). A request's
latency runs from its *due* time to the last byte of its answer: a late departure (the event loop
lagging, every in-flight slot taken) is the user's wait too; only Retry-After sleeps after a 429
are taken out. A request that got no answer is a *transport error*: it counts as an error, and,
when it timed out, as an infinitely slow sample (a lost answer must push the percentiles up, not
vanish from them). A 429 is the service protecting itself from the gate's traffic: waited out and
re-sent (bounded) by the client, and when it stands it is reported and left out of both the error
rate and the latency. Any other 4xx says the probe asked for something wrong (a path, a token):
reported apart, and left out of the error rate and the latency too, but it must stay rare: a path
with no 2xx/3xx answer at all, or with 4xx on more than :data:`MAX_CLIENT_ERROR_SHARE` of its
answers, makes both checks ``error`` (a release that broke the path with a 404 or 401 must not
pass on the strength of the other paths).

**Judges** (:func:`judge_error_rate`, :func:`judge_latency`) take an observation, the policy, the
baseline's figures and the Prometheus reading, collect every violation, and decide once:
any violation fails; otherwise anything that could not be measured (nothing answered, a path
that cannot be judged, the Prometheus query the operator asked for, a latency check with neither
a budget nor a baseline figure) is an error; otherwise the check passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import ssl
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any, Literal

import httpx

from releasegate._exceptions import ProbeError, ProbeTimeout
from releasegate.baseline import Baseline, BaselineTarget, SavedVerdict
from releasegate.config import Gates, LoadedTarget, SloProbeSettings, SloThresholds
from releasegate.probes.api import ApiAnswer, ApiClient
from releasegate.probes.http import HttpSettings, ssl_context
from releasegate.probes.prometheus import PromReading, read, render
from releasegate.results import Finding
from releasegate.stats import LatencySummary, format_ms, over_budget, summarize

# Outstanding requests per deployment; beyond it a request waits for a slot (and the wait counts).
MAX_IN_FLIGHT = 16
# A 429 is re-sent after Retry-After at most this often, waiting at most this long each time:
# the probe's pacing matters more than rescuing every throttled request.
THROTTLE_RETRIES = 2
THROTTLE_WAIT_S = 2.0
WORST_SHOWN = 5  # requests listed in evidence as the worst
# 4xx (other than 429) on more than this share of one path's answers: that path cannot be judged.
MAX_CLIENT_ERROR_SHARE = 0.05
_FAILURE_CHARS = 160

Clock = Callable[[], float]


# --------------------------------------------------------------------------- observations


@dataclass(frozen=True)
class Sample:
    """One probe request. ``status`` None: no answer (``failure`` says why)."""

    path: str
    at_ms: float  # when it was due, from the start of the window
    status: int | None
    latency_ms: float | None  # answered: due time to last byte (Retry-After sleeps excepted); timed out: inf; refused: None
    failure: str | None = None
    throttle_waits: int = 0  # 429 answers waited out before this one

    @property
    def judged(self) -> bool:
        """Counts in the error rate and the latency: everything except a 4xx (a 429 that stood, or the probe's mistake)."""
        return self.status is None or not 400 <= self.status <= 499

    @property
    def client_error(self) -> bool:
        """A 4xx other than 429: a wrong path or token, or a release that broke the path."""
        return self.status is not None and 400 <= self.status <= 499 and self.status != 429

    @property
    def is_error(self) -> bool:
        return self.status is None or 500 <= self.status <= 599

    def record(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"path": self.path, "at_ms": round(self.at_ms, 1), "status": self.status}
        entry["latency_ms"] = None if self.latency_ms is None or math.isinf(self.latency_ms) else round(self.latency_ms, 2)
        if self.failure is not None:
            entry["failure"] = self.failure[:_FAILURE_CHARS]
        return entry


@dataclass(frozen=True)
class SloObservation:
    """Every sample of one deployment's probing window."""

    deployment: str  # which one, for evidence: "target <name> (<base_url>)"
    samples: tuple[Sample, ...]
    window_s: float
    elapsed_s: float  # first request due to last answer
    warm_up_requests: int = 0  # untimed, before the window: they opened its connections

    @property
    def answered(self) -> int:
        return sum(1 for s in self.samples if s.status is not None)

    @property
    def judged(self) -> int:
        return sum(1 for s in self.samples if s.judged)

    @property
    def errors_5xx(self) -> int:
        return sum(1 for s in self.samples if s.status is not None and 500 <= s.status <= 599)

    @property
    def transport_errors(self) -> int:
        return sum(1 for s in self.samples if s.status is None)

    @property
    def throttled(self) -> int:
        return sum(1 for s in self.samples if s.status == 429)

    @property
    def client_errors(self) -> int:
        return sum(1 for s in self.samples if s.client_error)

    @property
    def successes(self) -> int:
        return sum(1 for s in self.samples if s.status is not None and s.status < 400)

    @property
    def error_rate(self) -> float | None:
        """(5xx + transport errors) / judged requests (all but 4xx); None when nothing was judged."""
        judged = self.judged
        return None if judged == 0 else (self.errors_5xx + self.transport_errors) / judged

    def latencies(self) -> list[float]:
        """Latency samples in ms: judged requests that were answered, and timeouts as inf."""
        return [s.latency_ms for s in self.samples if s.judged and s.latency_ms is not None]

    def latency(self) -> LatencySummary | None:
        values = self.latencies()
        return summarize(values) if values else None

    def unmeasurable(self) -> str | None:
        """Why this window says nothing about the service, or None when it does."""
        total = len(self.samples)
        if total == 0:
            return "no request was sent"
        if self.answered == 0:
            first = next((s.failure for s in self.samples if s.failure), "no answer")
            return f"none of {total} requests was answered (e.g. {first[:_FAILURE_CHARS]})"
        if self.judged == 0:
            if self.client_errors == 0:
                return f"all {total} requests were throttled (429): the probe plan is faster than the service's rate limit"
            return f"no request could be judged ({self._statuses()}): 429 is the rate limit, other 4xx: check slo.paths and the token"
        return None

    def path_problems(self) -> list[str]:
        """Paths whose answers say nothing about the release: none succeeded, or too many were 4xx."""
        problems: list[str] = []
        for path, part in self._parts():
            answers = sum(1 for s in part.samples if s.status is not None and s.status != 429)
            if part.successes == 0:
                problems.append(f"{path}: no 2xx/3xx answer ({part._statuses()}): check slo.paths or the token")
            elif part.client_errors > MAX_CLIENT_ERROR_SHARE * answers:
                problems.append(
                    f"{path}: {part.client_errors} of {answers} answers were 4xx ({part._statuses()}), over "
                    f"{MAX_CLIENT_ERROR_SHARE:.0%}: a release that broke the path cannot be told from a wrong path or token"
                )
        return problems

    def status_counts(self) -> dict[str, int]:
        return dict(Counter("none" if s.status is None else str(s.status) for s in self.samples))

    def _statuses(self) -> str:
        return ", ".join(f"{k} x{v}" for k, v in sorted(self.status_counts().items()))

    def _parts(self) -> list[tuple[str, SloObservation]]:
        return [
            (path, SloObservation(self.deployment, tuple(s for s in self.samples if s.path == path), self.window_s, self.elapsed_s))
            for path in dict.fromkeys(s.path for s in self.samples)
        ]

    def by_path(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for path, part in self._parts():
            summary = part.latency()
            out[path] = {
                "requests": len(part.samples),
                "successes": part.successes,
                "errors_5xx": part.errors_5xx,
                "transport_errors": part.transport_errors,
                "client_errors_4xx": part.client_errors,
                "throttled": part.throttled,
                "p50_ms": _ms(summary.p50_ms) if summary else None,
                "p95_ms": _ms(summary.p95_ms) if summary else None,
            }
        return out

    def common_evidence(self) -> dict[str, Any]:
        """What both checks show of the window: plan, counts, statuses, per path."""
        record: dict[str, Any] = {
            "deployment": self.deployment,
            "window_s": self.window_s,
            "elapsed_s": round(self.elapsed_s, 3),
            "warm_up_requests": self.warm_up_requests,
            "requests": len(self.samples),
            "answered": self.answered,
            "errors_5xx": self.errors_5xx,
            "transport_errors": self.transport_errors,
            "client_errors_4xx": self.client_errors,
            "throttled": self.throttled,
            "throttle_waits": sum(s.throttle_waits for s in self.samples),
            "statuses": self.status_counts(),
            "by_path": self.by_path(),
        }
        problems = self.path_problems()
        if problems:
            record["path_problems"] = problems
        return record


# --------------------------------------------------------------------------- baseline and Prometheus


@dataclass(frozen=True)
class BaselineFigures:
    """What the release is compared against: numbers from a saved verdict or a baseline's window."""

    source: str  # Baseline.describe()
    error_rate: float | None
    p95_ms: float | None
    problem: str | None = None  # why a number is missing
    caveat: str | None = None  # why the numbers are a doubtful yardstick (used all the same)

    def evidence(self) -> dict[str, Any]:
        record: dict[str, Any] = {"source": self.source, "error_rate": _rate(self.error_rate), "p95_ms": _ms(self.p95_ms)}
        if self.problem is not None:
            record["problem"] = self.problem
        if self.caveat is not None:
            record["caveat"] = self.caveat
        return record


def figures_of_saved(saved: SavedVerdict) -> BaselineFigures:
    error_rate = saved.number("slo.error_rate", "error_rate")
    p95 = saved.number("slo.latency", "p95_ms")
    missing = [name for name, value in (("slo.error_rate error_rate", error_rate), ("slo.latency p95_ms", p95)) if value is None]
    problem = f"the saved verdict has no measured {' or '.join(missing)}: judged absolutely" if missing else None
    return BaselineFigures(saved.describe(), error_rate, p95, problem, caveat=saved.caveat("post-deploy"))


def figures_of_window(source: str, observation: SloObservation) -> BaselineFigures:
    problem = observation.unmeasurable() or "; ".join(observation.path_problems()) or None
    if problem is not None:
        return BaselineFigures(source, None, None, f"the baseline could not be measured ({problem}): judged absolutely")
    summary = observation.latency()
    p95 = summary.p95_ms if summary is not None and math.isfinite(summary.p95_ms) else None
    return BaselineFigures(source, observation.error_rate, p95)


# --------------------------------------------------------------------------- judges


def judge_error_rate(
    observation: SloObservation,
    thresholds: SloThresholds,
    baseline: BaselineFigures | None = None,
    prometheus: PromReading | None = None,
) -> Finding:
    """slo.error_rate: the probed (and Prometheus) share of errors against the policy and the baseline."""
    limit, increase = thresholds.max_error_rate, thresholds.baseline_max_error_rate_increase
    expected = [f"<= {_pct(limit)}"]
    evidence: dict[str, Any] = {**observation.common_evidence(), "samples": observation.judged}
    problem = observation.unmeasurable()
    if problem is not None:
        evidence.update(_context(baseline, prometheus))
        return Finding("error", f"could not measure the error rate: {problem}", observed=problem, expected=expected[0], evidence=evidence)
    rate = observation.error_rate
    assert rate is not None  # measurable implies judged > 0
    evidence["error_rate"] = _rate(rate)
    evidence["worst"] = [s.record() for s in observation.samples if s.is_error][:WORST_SHOWN]
    errors = observation.errors_5xx + observation.transport_errors
    observed = f"{_pct(rate)} ({errors} of {observation.judged}{_error_breakdown(observation)})"
    violations: list[str] = []
    unmeasured = _path_problems(observation)
    if rate > limit:
        violations.append(f"error rate {observed} over {_pct(limit)}")
    if baseline is not None:
        evidence["baseline"] = baseline.evidence()
        if baseline.error_rate is not None:
            allowed = baseline.error_rate + increase
            evidence["baseline"]["allowed_error_rate"] = _rate(allowed)
            expected.append(f"<= {_pct(allowed)} (baseline {_pct(baseline.error_rate)} + {_pct(increase)})")
            if rate > allowed + 1e-12:  # float sums: 0.01 + 0.005 must admit 0.015
                violations.append(f"error rate {_pct(rate)} over the baseline's {_pct(baseline.error_rate)} + {_pct(increase)}")
    if prometheus is not None:
        evidence["prometheus"] = prometheus.evidence()
        if prometheus.value is None:
            unmeasured.append(f"the Prometheus error rate could not be measured: {prometheus.problem}")
        else:
            observed += f"; Prometheus {_pct(prometheus.value)}"
            if prometheus.value > limit:
                violations.append(f"Prometheus error rate {_pct(prometheus.value)} over {_pct(limit)}")
    return _decide(violations, unmeasured, f"error rate {observed}", observed, " and ".join(expected), evidence)


def judge_latency(
    observation: SloObservation,
    thresholds: SloThresholds,
    baseline: BaselineFigures | None = None,
    prometheus: PromReading | None = None,
) -> Finding:
    """slo.latency: percentiles of the raw samples (and Prometheus' histogram p95) against the budgets."""
    budgets = {"p50_ms": thresholds.p50_ms, "p95_ms": thresholds.p95_ms, "p99_ms": thresholds.p99_ms}
    expected = [f"{name.removesuffix('_ms')} <= {budget:g} ms" for name, budget in budgets.items() if budget is not None]
    problem = observation.unmeasurable()
    summary = observation.latency()
    if problem is not None or summary is None:
        evidence: dict[str, Any] = {**observation.common_evidence(), "samples": len(observation.latencies())}
        evidence.update(_context(baseline, prometheus))
        reason = problem or "no latency sample"
        return Finding("error", f"could not measure latency: {reason}", observed=reason, expected=_joined(expected), evidence=evidence)
    evidence = {**observation.common_evidence(), **summary.evidence()}
    evidence["worst"] = [s.record() for s in sorted(observation.samples, key=_slowness, reverse=True)[:WORST_SHOWN]]
    violations = [f"{name.removesuffix('_ms')} {text}" for name, text in over_budget(summary, budgets).items()]
    unmeasured = _path_problems(observation)
    if not expected and (baseline is None or baseline.p95_ms is None):
        # Every budget null leaves the baseline to judge; without its figure nothing was judged.
        unmeasured.append("no latency budget is set (thresholds.slo p50_ms, p95_ms, p99_ms) and no baseline p95 to compare with")
    if baseline is not None:
        evidence["baseline"] = baseline.evidence()
        if baseline.p95_ms is not None:
            # A ratio alone is noise at a few milliseconds (3.4 ms x 1.25 = 4.25 ms): some absolute
            # growth is always allowed, so only a slowdown that matters fails.
            ratio, floor = thresholds.baseline_max_p95_ratio, thresholds.baseline_min_p95_increase_ms
            allowed = max(baseline.p95_ms * ratio, baseline.p95_ms + floor)
            rule = f"baseline {baseline.p95_ms:.1f} ms x {ratio:g}, at least + {floor:g} ms"
            evidence["baseline"]["allowed_p95_ms"] = _ms(allowed)
            expected.append(f"p95 <= {allowed:.1f} ms ({rule})")
            if summary.p95_ms > allowed:
                violations.append(f"p95 {format_ms(summary.p95_ms)} over {allowed:.1f} ms allowed by the baseline ({rule})")
    observed = f"p50 {format_ms(summary.p50_ms)}, p95 {format_ms(summary.p95_ms)}, p99 {format_ms(summary.p99_ms)}"
    if summary.lost:
        observed += f", {summary.lost} timed out"
    if prometheus is not None:
        record = prometheus.evidence()
        record["note"] = "histogram_quantile interpolates within buckets: an estimate, coarser than the raw samples"
        if prometheus.value is None:
            unmeasured.append(f"the Prometheus p95 could not be measured: {prometheus.problem}")
        else:
            prom_ms = prometheus.value * 1000
            record["p95_ms"] = _ms(prom_ms)
            observed += f"; Prometheus p95 {prom_ms:.1f} ms"
            if thresholds.p95_ms is not None and prom_ms > thresholds.p95_ms:
                violations.append(f"Prometheus p95 {prom_ms:.1f} ms > {thresholds.p95_ms:g} ms")
        evidence["prometheus"] = record
    return _decide(violations, unmeasured, f"latency {observed}", observed, _joined(expected), evidence)


def _decide(
    violations: list[str], unmeasured: list[str], summary: str, observed: str, expected: str | None, evidence: dict[str, Any]
) -> Finding:
    """Every violation fails; otherwise what could not be measured is an error; otherwise a pass."""
    also = "; ".join(unmeasured)
    if violations:
        text = "; ".join(violations) + (f" (also: {also})" if also else "")
        return Finding("failed", text, observed=observed, expected=expected, evidence=evidence)
    if unmeasured:
        text = f"could not judge: {also} (active probes: {observed})"
        return Finding("error", text, observed=observed, expected=expected, evidence=evidence)
    policy = f" (policy: {expected})" if expected else " (no budget set)"
    return Finding("passed", summary + policy, observed=observed, expected=expected, evidence=evidence)


def _path_problems(observation: SloObservation) -> list[str]:
    return [f"path {problem}" for problem in observation.path_problems()]


def _joined(parts: list[str]) -> str | None:
    return ", ".join(parts) or None


def _context(baseline: BaselineFigures | None, prometheus: PromReading | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if baseline is not None:
        out["baseline"] = baseline.evidence()
    if prometheus is not None:
        out["prometheus"] = prometheus.evidence()
    return out


def _error_breakdown(observation: SloObservation) -> str:
    parts = []
    if observation.errors_5xx:
        parts.append(f"{observation.errors_5xx} x 5xx")
    if observation.transport_errors:
        parts.append(f"{observation.transport_errors} unanswered")
    if observation.throttled:
        parts.append(f"{observation.throttled} throttled (429, not counted)")
    if observation.client_errors:
        parts.append(f"{observation.client_errors} x 4xx (not counted)")
    return ": " + ", ".join(parts) if parts else ""


def _slowness(sample: Sample) -> float:
    return -1.0 if sample.latency_ms is None or not sample.judged else sample.latency_ms


def _pct(rate: float) -> str:
    return f"{rate * 100:.2f} %"


def _rate(rate: float | None) -> float | None:
    return None if rate is None else round(rate, 6)


def _ms(value: float | None) -> float | None:
    return None if value is None or math.isinf(value) else round(value, 2)


# --------------------------------------------------------------------------- probing (network)

# Seconds one request task slept waiting out 429s (a ContextVar: each task has its own copy).
_THROTTLE_SLEPT: ContextVar[list[float]] = ContextVar("slo_throttle_slept")


async def _throttle_sleep(seconds: float) -> None:
    """ApiClient's wait for a Retry-After, accounted to the request that waited."""
    spent = _THROTTLE_SLEPT.get(None)
    if spent is not None:
        spent[0] += seconds
    await asyncio.sleep(seconds)


@dataclass(frozen=True)
class Endpoint:
    """One deployment to probe: where, how to trust it, and the token to send (never shown)."""

    deployment: str
    base_url: str
    settings: HttpSettings
    token: str | None


def probe(
    endpoints: Sequence[Endpoint],
    plan: SloProbeSettings,
    *,
    max_in_flight: int = MAX_IN_FLIGHT,
    transport: httpx.AsyncBaseTransport | None = None,
    budget_s: float | None = None,
) -> list[SloObservation]:
    """Probe every endpoint with ``plan`` in one shared window (requests alternate); one observation each.

    ``budget_s`` (e.g. what is left of the run's deadline) bounds the whole probe: ProbeTimeout
    beyond it, whatever the window had measured (a cut window is not a sample of the release).
    """
    if budget_s is not None and budget_s <= 0:
        raise ProbeTimeout("no time left for the SLO probe: the run's deadline has passed")
    work = probe_async(endpoints, plan.paths, plan.requests, plan.window_s, max_in_flight=max_in_flight, transport=transport)
    # Not asyncio.run(): see probes.http.get (a stuck resolver thread must not hold the probe).
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(work, budget_s))
    except TimeoutError:
        raise ProbeTimeout(f"the SLO probe did not finish within what was left of the run's deadline ({budget_s:.1f} s)") from None
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


async def probe_async(
    endpoints: Sequence[Endpoint],
    paths: Sequence[str],
    requests: int,
    window_s: float,
    *,
    max_in_flight: int = MAX_IN_FLIGHT,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock = time.perf_counter,
) -> list[SloObservation]:
    """``requests`` GETs per endpoint, evenly spread over ``window_s``, open loop; see the module docstring."""
    if not endpoints or not paths or requests < 1:
        raise ValueError("probing needs at least one endpoint, one path and one request")
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                ApiClient(
                    e.base_url,
                    e.settings,
                    max_throttle_retries=THROTTLE_RETRIES,
                    max_throttle_wait_s=THROTTLE_WAIT_S,
                    sleep=_throttle_sleep,
                    transport=transport,
                )
            )
            for e in endpoints
        ]
        rate = requests / window_s
        warmed = await asyncio.gather(
            *(_warm_up(client, e, paths[0], rate, max_in_flight) for client, e in zip(clients, endpoints, strict=True))
        )
        observations = await _window(clients, endpoints, paths, requests, window_s, max_in_flight, clock)
        return [replace(o, warm_up_requests=n) for o, n in zip(observations, warmed, strict=True)]


async def _warm_up(client: ApiClient, endpoint: Endpoint, path: str, rate_per_s: float, max_in_flight: int) -> int:
    """Open the connections the window will keep busy, so no sample carries a TLS handshake; requests sent.

    A first request opens one and times a request (handshake included, so the estimate errs
    high). By Little's law about rate x latency requests are outstanding at once in the window:
    when that is more than one, as many concurrent requests make the client open that many
    connections. No answer is judged; failures are left for the window to show, sample by sample.
    """
    started = time.perf_counter()
    first = await _untimed(client, endpoint, path)
    if first is None or first.status == 429 or first.throttled:
        return 1  # no answer, or the rate limit already bites: more warm-up would only make it worse
    concurrent = min(max_in_flight, math.ceil(rate_per_s * (time.perf_counter() - started)))
    if concurrent > 1:
        await asyncio.gather(*(_untimed(client, endpoint, path) for _ in range(concurrent)))
        return 1 + concurrent
    return 1


async def _untimed(client: ApiClient, endpoint: Endpoint, path: str) -> ApiAnswer | None:
    """One warm-up request; None when it got no answer."""
    try:
        return await client.request("GET", path, token=endpoint.token)
    except ProbeError:
        return None


async def _window(
    clients: Sequence[ApiClient],
    endpoints: Sequence[Endpoint],
    paths: Sequence[str],
    requests: int,
    window_s: float,
    max_in_flight: int,
    clock: Clock,
) -> list[SloObservation]:
    count = len(endpoints)
    total = requests * count
    interval = window_s / total
    slots = [asyncio.Semaphore(max_in_flight) for _ in endpoints]
    results: list[list[Sample]] = [[] for _ in endpoints]
    tasks: list[asyncio.Task[None]] = []
    pending: dict[asyncio.Task[None], tuple[int, str, float]] = {}  # not finished yet

    async def one(index: int, path: str, due: float) -> None:
        endpoint, client, slot = endpoints[index], clients[index], slots[index]
        at_ms = (due - started) * 1000
        timeout_s = endpoint.settings.timeout_s
        # Every slot taken: the service is not keeping up, and the wait for one is part of this
        # request's latency, as is any lag of the event loop since it was due.
        try:
            await asyncio.wait_for(slot.acquire(), timeout=timeout_s)
        except TimeoutError:
            failure = f"not sent: {max_in_flight} earlier requests were still unanswered after {timeout_s:g} s"
            results[index].append(Sample(path, at_ms, None, math.inf, failure))
            return
        slept = _THROTTLE_SLEPT.set([0.0])  # this task's Retry-After sleeps: the one wait that is not the service's
        try:
            answer = await client.request("GET", path, token=endpoint.token)
        except ProbeTimeout as exc:
            results[index].append(Sample(path, at_ms, None, math.inf, str(exc)))
        except ProbeError as exc:
            results[index].append(Sample(path, at_ms, None, None, str(exc)))
        else:
            latency_ms = (clock() - due - _THROTTLE_SLEPT.get()[0]) * 1000
            results[index].append(Sample(path, at_ms, answer.status, latency_ms, None, answer.throttled))
        finally:
            _THROTTLE_SLEPT.reset(slept)
            slot.release()

    started = clock()
    for k in range(total):
        due = started + k * interval
        delay = due - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        index, path = k % count, paths[(k // count) % len(paths)]
        task = asyncio.create_task(one(index, path, due))
        tasks.append(task)
        pending[task] = (index, path, (due - started) * 1000)
        task.add_done_callback(lambda t: pending.pop(t, None))
    # Everything still outstanding has a bounded wait for a slot, one bounded attempt and bounded
    # 429 waits left; this cap only matters if something below ignores its own timeout.
    longest = max(e.settings.timeout_s for e in endpoints)
    bound = 2 * longest + THROTTLE_RETRIES * (THROTTLE_WAIT_S + longest) + 1.0
    if pending:
        await asyncio.wait(list(pending), timeout=bound)
    stuck = dict(pending)
    for task, (index, path, at_ms) in stuck.items():
        task.cancel()
        results[index].append(Sample(path, at_ms, None, math.inf, f"no answer within the probe's overall bound of {bound:g} s"))
    await asyncio.gather(*stuck, return_exceptions=True)
    elapsed = clock() - started
    for task in tasks:
        # Only ProbeError means "no answer"; anything else is a bug and must not pass as a sample.
        if not task.cancelled() and (exc := task.exception()) is not None:
            raise exc
    return [
        SloObservation(e.deployment, tuple(sorted(results[i], key=lambda s: s.at_ms)), window_s, elapsed) for i, e in enumerate(endpoints)
    ]


# --------------------------------------------------------------------------- wiring for the checks


@dataclass(frozen=True)
class SloMeasurement:
    """One probing window of the target (and of a baseline deployment), shared by both SLO checks."""

    observation: SloObservation
    baseline: BaselineFigures | None


def endpoint_of(loaded: LoadedTarget, plan: SloProbeSettings, gates: Gates) -> Endpoint:
    """How to probe one deployment: its base URL, its trust anchors, gates.yaml's bounds, the plan's identity."""
    target = loaded.target
    verify = ssl_context(loaded.ca_bundle) if target.base_url.startswith("https:") else True
    settings = HttpSettings(timeout_s=gates.probe.timeout_s, max_body_bytes=gates.probe.max_body_bytes, verify=verify)
    return Endpoint(f"target {target.name} ({target.base_url})", target.base_url, settings, loaded.token_of(plan.as_))


def measure(loaded: LoadedTarget, gates: Gates, baseline: Baseline | None, *, budget_s: float | None = None) -> SloMeasurement:
    """Probe the target with its ``slo`` plan (and a baseline target alongside) within ``budget_s``; ProbeError when impossible."""
    plan = loaded.target.slo
    if plan is None:
        raise ValueError("the target names no slo plan")
    endpoints = [endpoint_of(loaded, plan, gates)]
    if isinstance(baseline, BaselineTarget):
        # The same plan for both, so the two windows are comparable; the baseline's own trust and token.
        endpoints.append(endpoint_of(baseline.loaded, plan, gates))
    observations = probe(endpoints, plan, budget_s=budget_s)
    figures: BaselineFigures | None = None
    if isinstance(baseline, SavedVerdict):
        figures = figures_of_saved(baseline)
    elif isinstance(baseline, BaselineTarget):
        figures = figures_of_window(baseline.describe(), observations[1])
    return SloMeasurement(observations[0], figures)


PromQuery = Literal["error_rate", "latency_p95_seconds"]


def prometheus_reading(loaded: LoadedTarget, gates: Gates, which: PromQuery) -> PromReading | None:
    """The target's Prometheus answer to one of gates.yaml's SLO queries; None when it names no Prometheus."""
    server = loaded.target.prometheus
    if server is None:
        return None
    queries = gates.thresholds.slo.prometheus
    query = render(getattr(queries, which), selector=server.selector, window=queries.window)
    # The target's trust anchors (a Prometheus in the same private PKI), never its token.
    verify: ssl.SSLContext | bool = ssl_context(loaded.ca_bundle) if server.url.startswith("https:") else True
    settings = HttpSettings(timeout_s=gates.probe.timeout_s, max_body_bytes=gates.probe.max_body_bytes, verify=verify)
    return read(server.url, query, settings)
