"""slo.error_rate and slo.latency: active probing at the edge, pure judges at the core.

**Probing** (:func:`probe`): the target's ``slo`` plan sends ``requests`` GETs spread evenly over
``window_s``, round robin over ``paths``, with one identity's token, through one keep-alive
:class:`~releasegate.probes.api.ApiClient` per deployment (so a sample measures the service, not
a TLS handshake). The loop is open: request *i* leaves at ``t0 + i * window / requests`` whether
or not earlier ones have answered (waiting for them would hide a stall: coordinated omission);
at most :data:`MAX_IN_FLIGHT` are outstanding per deployment, and time spent waiting for a free
slot counts into the request's latency. With a baseline deployment (``--baseline`` naming a
second target) both are probed in the same window, requests alternating, so both see the same
conditions.

**Samples** are raw: the latency of every answered request, send to last byte (never histogram
buckets: a +100 ms shift shows as +100 ms), and the status of every request. A request that got
no answer is a *transport error*: it counts as an error, and, when it timed out, as an infinitely
slow sample (a lost answer must push the percentiles up, not vanish from them). A 429 is the
service protecting itself from the gate's traffic: waited out and re-sent (bounded) by the
client, and when it stands it is reported and left out of both the error rate and the latency.

**Judges** (:func:`judge_error_rate`, :func:`judge_latency`) take an observation, the policy, the
baseline's figures and the Prometheus reading, collect every violation, and decide once:
any violation fails; otherwise anything that could not be measured (nothing answered, the
Prometheus query the operator asked for) is an error; otherwise the check passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import ssl
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from releasegate._exceptions import ProbeError, ProbeTimeout
from releasegate.baseline import Baseline, BaselineTarget, SavedVerdict
from releasegate.config import Gates, LoadedTarget, SloProbeSettings, SloThresholds
from releasegate.probes.api import ApiClient
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
_FAILURE_CHARS = 160

Clock = Callable[[], float]


# --------------------------------------------------------------------------- observations


@dataclass(frozen=True)
class Sample:
    """One probe request. ``status`` None: no answer (``failure`` says why)."""

    path: str
    at_ms: float  # when it was due, from the start of the window
    status: int | None
    latency_ms: float | None  # answered: send to last byte plus any wait for a slot; timed out: inf; refused: None
    failure: str | None = None
    throttle_waits: int = 0  # 429 answers waited out before this one

    @property
    def judged(self) -> bool:
        """Counts in the error rate: everything except a 429 that stood."""
        return self.status != 429

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
    def successes(self) -> int:
        return sum(1 for s in self.samples if s.status is not None and s.status < 400)

    @property
    def error_rate(self) -> float | None:
        """(5xx + transport errors) / judged requests; None when nothing was judged."""
        judged = self.judged
        return None if judged == 0 else (self.errors_5xx + self.transport_errors) / judged

    def latencies(self) -> list[float]:
        """Latency samples in ms: answered (but not throttled) requests, and timeouts as inf."""
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
            return f"all {total} requests were throttled (429): the probe plan is faster than the service's rate limit"
        if self.successes == 0 and self.errors_5xx == 0 and self.transport_errors == 0:
            statuses = ", ".join(f"{k} x{v}" for k, v in sorted(self.status_counts().items()))
            return f"no request succeeded and none failed on the server side ({statuses}): check slo.paths and the token"
        return None

    def status_counts(self) -> dict[str, int]:
        return dict(Counter("none" if s.status is None else str(s.status) for s in self.samples))

    def by_path(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for path in dict.fromkeys(s.path for s in self.samples):
            part = SloObservation(self.deployment, tuple(s for s in self.samples if s.path == path), self.window_s, self.elapsed_s)
            summary = part.latency()
            out[path] = {
                "requests": len(part.samples),
                "errors_5xx": part.errors_5xx,
                "transport_errors": part.transport_errors,
                "throttled": part.throttled,
                "p50_ms": _ms(summary.p50_ms) if summary else None,
                "p95_ms": _ms(summary.p95_ms) if summary else None,
            }
        return out

    def common_evidence(self) -> dict[str, Any]:
        """What both checks show of the window: plan, counts, statuses, per path."""
        return {
            "deployment": self.deployment,
            "window_s": self.window_s,
            "elapsed_s": round(self.elapsed_s, 3),
            "requests": len(self.samples),
            "answered": self.answered,
            "errors_5xx": self.errors_5xx,
            "transport_errors": self.transport_errors,
            "throttled": self.throttled,
            "throttle_waits": sum(s.throttle_waits for s in self.samples),
            "statuses": self.status_counts(),
            "by_path": self.by_path(),
        }


# --------------------------------------------------------------------------- baseline and Prometheus


@dataclass(frozen=True)
class BaselineFigures:
    """What the release is compared against: numbers from a saved verdict or a baseline's window."""

    source: str  # Baseline.describe()
    error_rate: float | None
    p95_ms: float | None
    problem: str | None = None  # why a number is missing

    def evidence(self) -> dict[str, Any]:
        record: dict[str, Any] = {"source": self.source, "error_rate": _rate(self.error_rate), "p95_ms": _ms(self.p95_ms)}
        if self.problem is not None:
            record["problem"] = self.problem
        return record


def figures_of_saved(saved: SavedVerdict) -> BaselineFigures:
    error_rate = saved.number("slo.error_rate", "error_rate")
    p95 = saved.number("slo.latency", "p95_ms")
    missing = [name for name, value in (("slo.error_rate error_rate", error_rate), ("slo.latency p95_ms", p95)) if value is None]
    problem = f"the saved verdict has no measured {' or '.join(missing)}: judged absolutely" if missing else None
    return BaselineFigures(saved.describe(), error_rate, p95, problem)


def figures_of_window(source: str, observation: SloObservation) -> BaselineFigures:
    problem = observation.unmeasurable()
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
    unmeasured: str | None = None
    if prometheus is not None:
        evidence["prometheus"] = prometheus.evidence()
        if prometheus.value is None:
            unmeasured = f"the Prometheus error rate could not be measured: {prometheus.problem}"
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
    unmeasured: str | None = None
    observed = f"p50 {format_ms(summary.p50_ms)}, p95 {format_ms(summary.p95_ms)}, p99 {format_ms(summary.p99_ms)}"
    if summary.lost:
        observed += f", {summary.lost} timed out"
    if prometheus is not None:
        record = prometheus.evidence()
        record["note"] = "histogram_quantile interpolates within buckets: an estimate, coarser than the raw samples"
        if prometheus.value is None:
            unmeasured = f"the Prometheus p95 could not be measured: {prometheus.problem}"
        else:
            prom_ms = prometheus.value * 1000
            record["p95_ms"] = _ms(prom_ms)
            observed += f"; Prometheus p95 {prom_ms:.1f} ms"
            if thresholds.p95_ms is not None and prom_ms > thresholds.p95_ms:
                violations.append(f"Prometheus p95 {prom_ms:.1f} ms > {thresholds.p95_ms:g} ms")
        evidence["prometheus"] = record
    return _decide(violations, unmeasured, f"latency {observed}", observed, _joined(expected), evidence)


def _decide(
    violations: list[str], unmeasured: str | None, summary: str, observed: str, expected: str | None, evidence: dict[str, Any]
) -> Finding:
    """Every violation fails; otherwise what could not be measured is an error; otherwise a pass."""
    if violations:
        also = f" (also: {unmeasured})" if unmeasured else ""
        return Finding("failed", "; ".join(violations) + also, observed=observed, expected=expected, evidence=evidence)
    if unmeasured is not None:
        return Finding("error", f"{unmeasured} (active probes: {observed})", observed=observed, expected=expected, evidence=evidence)
    policy = f" (policy: {expected})" if expected else " (no budget set)"
    return Finding("passed", summary + policy, observed=observed, expected=expected, evidence=evidence)


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
) -> list[SloObservation]:
    """Probe every endpoint with ``plan`` in one shared window (requests alternate); one observation each."""
    # Not asyncio.run(): see probes.http.get (a stuck resolver thread must not hold the probe).
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(
            probe_async(endpoints, plan.paths, plan.requests, plan.window_s, max_in_flight=max_in_flight, transport=transport)
        )
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
                    e.base_url, e.settings, max_throttle_retries=THROTTLE_RETRIES, max_throttle_wait_s=THROTTLE_WAIT_S, transport=transport
                )
            )
            for e in endpoints
        ]
        # One untimed request each opens the keep-alive connection, so the first sample does not
        # carry a TLS handshake; its answer (or failure) is not judged.
        await asyncio.gather(*(_warm_up(client, e, paths[0]) for client, e in zip(clients, endpoints, strict=True)))
        return await _window(clients, endpoints, paths, requests, window_s, max_in_flight, clock)


async def _warm_up(client: ApiClient, endpoint: Endpoint, path: str) -> None:
    try:
        await client.request("GET", path, token=endpoint.token)
    except ProbeError:
        pass  # the window will show it, sample by sample


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

    async def one(index: int, path: str, at_ms: float) -> None:
        endpoint, client, slot = endpoints[index], clients[index], slots[index]
        timeout_s = endpoint.settings.timeout_s
        waited_ms = 0.0
        if slot.locked():  # every slot taken: the service is not keeping up, and the wait is part of this request
            queued = clock()
            try:
                await asyncio.wait_for(slot.acquire(), timeout=timeout_s)
            except TimeoutError:
                failure = f"not sent: {max_in_flight} earlier requests were still unanswered after {timeout_s:g} s"
                results[index].append(Sample(path, at_ms, None, math.inf, failure))
                return
            waited_ms = (clock() - queued) * 1000
        else:
            await slot.acquire()  # free: returns at once
        try:
            answer = await client.request("GET", path, token=endpoint.token)
        except ProbeTimeout as exc:
            results[index].append(Sample(path, at_ms, None, math.inf, str(exc)))
        except ProbeError as exc:
            results[index].append(Sample(path, at_ms, None, None, str(exc)))
        else:
            results[index].append(Sample(path, at_ms, answer.status, answer.latency_ms + waited_ms, None, answer.throttled))
        finally:
            slot.release()

    started = clock()
    for k in range(total):
        due = started + k * interval
        delay = due - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        index, path = k % count, paths[(k // count) % len(paths)]
        task = asyncio.create_task(one(index, path, (due - started) * 1000))
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


def measure(loaded: LoadedTarget, gates: Gates, baseline: Baseline | None) -> SloMeasurement:
    """Probe the target with its ``slo`` plan (and a baseline target alongside); ProbeError when impossible."""
    plan = loaded.target.slo
    if plan is None:
        raise ValueError("the target names no slo plan")
    endpoints = [endpoint_of(loaded, plan, gates)]
    if isinstance(baseline, BaselineTarget):
        # The same plan for both, so the two windows are comparable; the baseline's own trust and token.
        endpoints.append(endpoint_of(baseline.loaded, plan, gates))
    observations = probe(endpoints, plan)
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
