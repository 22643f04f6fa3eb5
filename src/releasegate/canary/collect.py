"""The canary stage's I/O edge: per interval, both sides' samples of every metric the policy names.

::

                      open(budget_s)                 collect(index, interval_s, budget_s)           close()
    probe sync_latency  one conversation per side:   round trips on both sides, paced over the
                        the target's sync.setup      interval, concurrently with ...
                        driver against that side
    probe http_*        -                            ... the same GETs to both sides, interleaved,
                                                     open loop (releasegate.probes.slo)
    prometheus          -                            after the interval: a range query (latency) or
                                                     two instant counts (rate) per side's selector

Only what the policy's metrics need is collected: no sync conversation without a sync metric, no
HTTP probe without an HTTP metric, no Prometheus query without a Prometheus metric.

**Could not measure is never a sample.** A metric whose collection failed (the target lacks the
section it needs, a probe timed out, Prometheus refused the query, a path answered 4xx) gets empty
sides for the interval and the reason in :attr:`MetricSamples.problems`: the judge sees fewer
samples than min_samples (no data), never a pass and never a fail. :meth:`CanaryCollector.collect`
never raises for one metric; :meth:`CanaryCollector.open` raises :class:`~releasegate.ProbeError`
only when the comparison cannot be set up at all (the baseline's sync conversation).

**What the HTTP probes count** (per side, per interval): ``http_latency`` values are the latency
(ms, due time to last byte) of answered requests that were judged and not errors (1xx-3xx);
``http_errors`` events are 5xx answers plus requests that got no answer (refused, reset, timed
out), out of the judged requests (everything but 4xx). A 429 is the service shielding itself from
the probe and any other 4xx is the probe's mistake (a path, a token): both are reported and left
out. A side with a path it cannot judge (no judged answer, or 4xx on more than
:data:`releasegate.probes.slo.MAX_CLIENT_ERROR_SHARE` of its answers) gets no HTTP samples for
the interval: a release that broke a path with a 404 must not pass on the strength of the others.

**Prometheus points**: the latency query's range runs from one step after the interval's start to
its end, so each point's ``[$step]`` window lies inside the interval and no point is counted in two
intervals; every finite positive point is a sample, NaN (0/0: a step without traffic) and
non-positive points are dropped and counted. The rate queries are instant counts at the interval's
end over ``$interval``, rounded to whole requests; a missing 5xx series means 0 errors only when
the total answered (there were requests and none failed).

Secrets (the target's tokens, credentials a setup driver saved) never reach a problem text.
"""

from __future__ import annotations

import asyncio
import math
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from releasegate._exceptions import ConfigError, ProbeError, ProbeTimeout
from releasegate.canary.model import IntervalSamples, LatencySamples, MetricSamples, RateSamples, Side
from releasegate.config import CanaryMetric, CanaryTargetSettings, Gates, Identity, LoadedTarget, SyncSettings
from releasegate.probes import slo
from releasegate.probes import sync as sync_probe
from releasegate.probes.api import token_allowed
from releasegate.probes.http import HttpSettings, ssl_context
from releasegate.probes.prometheus import PromRange, PromReading, duration, read, read_range, render
from releasegate.probes.sync_room import prepare_room
from releasegate.redact import Redactor
from releasegate.scenarios import ScenarioSuite, runner
from releasegate.scenarios.loader import load_scenarios

__all__ = ["CanaryCollector", "HttpSide", "SideName", "http_samples", "prometheus_latency", "prometheus_rate", "sync_samples"]

Clock = Callable[[], float]
SideName = Literal["baseline", "canary"]
SIDES: tuple[SideName, SideName] = ("baseline", "canary")

# Problems one metric keeps per interval (each cut to PROBLEM_CHARS): samples.json stays small
# whatever a broken target answers.
MAX_PROBLEMS = 12
PROBLEM_CHARS = 300
# Beyond the probes' own bounds, before the interval's event loop is given up on.
BACKSTOP_S = 2.0

_HTTP_PROBES = frozenset({"http_latency", "http_errors"})


# --------------------------------------------------------------------------- pure mapping


@dataclass(frozen=True)
class HttpSide:
    """One side's HTTP window as the two HTTP metrics see it, each with its own problems."""

    latency: LatencySamples
    rate: RateSamples
    latency_problems: tuple[str, ...] = ()
    rate_problems: tuple[str, ...] = ()


def http_samples(side: SideName, observation: slo.SloObservation) -> HttpSide:
    """One side's HTTP window as samples of http_latency and http_errors; see the module docstring."""
    common: list[str] = []
    total = len(observation.samples)
    if observation.throttled:
        common.append(
            f"{side}: {observation.throttled} of {total} requests throttled (429), left out: the probe plan "
            "(canary.requests_per_interval) is faster than the service's rate limit"
        )
    if observation.client_errors:
        common.append(f"{side}: {observation.client_errors} of {total} requests answered 4xx, left out ({_statuses(observation)})")
    unjudged = _unjudged_paths(observation)
    if unjudged:
        common += [f"{side}: {text}" for text in unjudged]
        common.append(f"{side}: no HTTP samples this interval: a path that cannot be judged must not pass on the strength of the others")
        return HttpSide(LatencySamples(()), RateSamples(0, 0), tuple(common), tuple(common))
    # Judged and not an error: answered 1xx-3xx, so the latency is finite.
    latencies = tuple(s.latency_ms for s in observation.samples if s.judged and not s.is_error and s.latency_ms is not None)
    latency_problems, rate_problems = list(common), list(common)
    if not latencies:
        # Not a path problem: every judged request failed (5xx, refused, timed out). That is
        # data for the error metric; the latency metric has none.
        reason = observation.unmeasurable() or f"all {observation.judged} judged requests were errors ({_statuses(observation)})"
        latency_problems.append(f"{side}: no latency sample: {reason}")
    if observation.transport_errors:
        # Counted as errors (events); what went wrong is worth a line beside the counts.
        first = next(s.failure for s in observation.samples if s.status is None)
        rate_problems.append(f"{side}: {observation.transport_errors} of {total} requests got no answer (e.g. {first})")
    events = observation.errors_5xx + observation.transport_errors
    return HttpSide(LatencySamples(latencies), RateSamples(events, observation.judged), tuple(latency_problems), tuple(rate_problems))


def _unjudged_paths(observation: slo.SloObservation) -> list[str]:
    """Paths whose answers say nothing about the release: none judged, or too many 4xx."""
    problems: list[str] = []
    for path, part in observation.by_path().items():
        requests, client, throttled = part["requests"], part["client_errors_4xx"], part["throttled"]
        answers = requests - part["transport_errors"] - throttled  # answered, 429 aside
        judged = requests - client - throttled
        if judged == 0:
            problems.append(f"{path}: no request could be judged ({client} x 4xx, {throttled} x 429): check canary.paths and the token")
        elif client > slo.MAX_CLIENT_ERROR_SHARE * answers:
            problems.append(
                f"{path}: {client} of {answers} answers were 4xx, over {slo.MAX_CLIENT_ERROR_SHARE:.0%}: a release that broke "
                "the path cannot be told from a wrong path or token"
            )
    return problems


def _statuses(observation: slo.SloObservation) -> str:
    return ", ".join(f"{status} x{count}" for status, count in sorted(observation.status_counts().items()))


def sync_samples(side: SideName, observation: sync_probe.LatencyObservation) -> tuple[LatencySamples, list[str]]:
    """One side's round trips as latency samples (ms, delivered ones only) and problems."""
    closed = [c for c in (observation.sender, observation.receiver) if c.closed is not None]
    if closed:
        # The round trips of a connection that went away are neither fast nor slow: unjudged.
        lost_how = "; ".join(f"{c.label()}: {c.closed}" for c in closed)
        return LatencySamples(()), [f"{side}: a sync connection was lost mid-probe ({lost_how}): no sync samples this interval"]
    all_ms = sync_probe.latencies_ms(observation)
    # A lost round trip (not at the receiver within timeout_ms) is not a latency value: the
    # Mann-Whitney test on log values has no place for infinity. It is counted here; a side
    # that loses many has few samples (min_samples turns that into no data, never a pass), and
    # losses that matter show on the HTTP error metric.
    delivered = tuple(ms for ms in all_ms if math.isfinite(ms))
    problems: list[str] = []
    lost = len(all_ms) - len(delivered)
    if not all_ms:
        problems.append(f"{side}: no sync round trip was sent")
    elif lost:
        problems.append(f"{side}: {lost} of {len(all_ms)} sync round trips lost (not at the receiver within {observation.timeout_ms:g} ms)")
    return LatencySamples(delivered, dropped=lost), problems


def prometheus_latency(side: SideName, answer: PromRange) -> tuple[LatencySamples, list[str]]:
    """One side's range query as latency samples: its finite positive points; the others dropped and counted."""
    if answer.problem is not None:
        return LatencySamples(()), [f"{side}: Prometheus: {answer.problem} (query: {answer.query})"]
    values = tuple(v for v in answer.values if math.isfinite(v) and v > 0)
    dropped = len(answer.values) - len(values)
    problems: list[str] = []
    if dropped:
        problems.append(
            f"{side}: {dropped} of {len(answer.values)} Prometheus points were NaN, infinite or not positive "
            "(a step without traffic is 0/0), dropped"
        )
    return LatencySamples(values, dropped=dropped), problems


def prometheus_rate(side: SideName, errors: PromReading | None, total: PromReading) -> tuple[RateSamples, list[str]]:
    """One side's counts: events out of trials, rounded to whole requests; no data unless the total answered.

    ``errors`` is None when it was not asked (the total had no answer).
    """
    if total.value is None:
        return RateSamples(0, 0), [f"{side}: Prometheus total: {total.problem} (query: {total.query})"]
    if errors is None or errors.value is None:
        problem = "not asked" if errors is None else errors.problem
        query = total.query if errors is None else errors.query
        return RateSamples(0, 0), [f"{side}: Prometheus errors: {problem} (query: {query})"]
    # increase() extrapolates to the window's edges: counts come back fractional, now and then a
    # hair above the total. Whole requests, and never more errors than requests.
    trials = max(0, round(total.value))
    events = min(max(0, round(errors.value)), trials)
    return RateSamples(events, trials), []


# --------------------------------------------------------------------------- the collector


@dataclass(frozen=True)
class _Conversation:
    """One side's sync conversation: its WebSocket URL, how to compose the timed action, who sends and receives."""

    url: str
    compose: Callable[[str], str]
    options: sync_probe.WsOptions
    sender: sync_probe.Member = field(repr=False)
    receiver: sync_probe.Member = field(repr=False)


@dataclass
class _Outcomes:
    """What one interval's probe phase got, per task key, or the error that stopped the task."""

    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


class CanaryCollector:
    """Collects one :class:`IntervalSamples` per interval for the canary judge.

    ``clock``: wall-clock seconds since the epoch (``time.time``): the interval's ``started_at``
    and the times of the Prometheus queries. Pacing and budgets run on the event loop's own
    monotonic clock.

    Use: ``open(budget_s)`` once, ``collect(...)`` once per interval, ``close()``.
    """

    def __init__(self, loaded: LoadedTarget, gates: Gates, *, clock: Clock = time.time) -> None:
        self.loaded = loaded
        self.gates = gates
        self.clock = clock
        self.metrics: tuple[CanaryMetric, ...] = tuple(gates.canary.metrics)
        self.settings: CanaryTargetSettings | None = loaded.target.canary
        self._redactor = Redactor(loaded.secrets())
        # Why a metric cannot be collected at all (the target lacks what it needs), by name.
        self._static: dict[str, str] = {m.name: p for m in self.metrics if (p := self._static_problem(m)) is not None}
        # One conversation per side once open() ran; for a side without one, why.
        self._conversations: dict[SideName, _Conversation] = {}
        self._sync_problems: dict[SideName, str] = {}
        self._contexts: list[runner.RunContext] = []
        self._opened = False

    # ------------------------------------------------------------------ what is needed

    def _live(self, metric: CanaryMetric) -> bool:
        return metric.name not in self._static

    def _wants_http(self) -> bool:
        return any(self._live(m) and m.source == "probe" and m.probe in _HTTP_PROBES for m in self.metrics)

    def _wants_sync(self) -> bool:
        return any(self._live(m) and m.source == "probe" and m.probe == "sync_latency" for m in self.metrics)

    def _prometheus_metrics(self) -> list[CanaryMetric]:
        return [m for m in self.metrics if self._live(m) and m.source == "prometheus"]

    def _static_problem(self, metric: CanaryMetric) -> str | None:
        settings, target = self.settings, self.loaded.target
        if settings is None:
            return "the target has no canary section (key: canary): neither side is known"
        if metric.source == "prometheus":
            return None if settings.prometheus is not None else "the target has no canary.prometheus section (url and both selectors)"
        if metric.probe in _HTTP_PROBES:
            if settings.baseline_url is None:
                return "the target names no canary.baseline_url: there is nothing to compare the canary with"
            missing = runner.missing_token_problem(settings.as_, self.loaded)
            if missing is not None:
                return f"the canary probes (canary.as) {missing}"
            for url in (settings.baseline_url, self._canary_url()):
                refused = token_allowed(url, url, None, explicit=True) if self.loaded.token_of(settings.as_) else None
                if refused is not None:
                    return f"canary probes {refused}"
            return None
        # sync_latency
        if target.sync is None:
            return "the target has no sync section (key: sync): nothing says how to join a conversation"
        if target.scenarios is None:
            return f"the target names no scenarios folder (key: scenarios): the sync setup driver {target.sync.setup} lives there"
        if settings.baseline_ws_url is None:
            return "the target names no canary.baseline_ws_url: the baseline's sync cannot be probed"
        if (settings.canary_ws_url or target.ws_url) is None:
            return "the target names neither canary.canary_ws_url nor ws_url: the canary's sync cannot be probed"
        for identity in dict.fromkeys(self._sync_identities(target.sync)):
            missing = runner.missing_token_problem(identity, self.loaded)
            if missing is not None:
                return f"sync.identities {missing}"
        return None

    def _canary_url(self) -> str:
        settings = self.settings
        return (settings.canary_url if settings is not None else None) or self.loaded.target.base_url

    @staticmethod
    def _sync_identities(settings: SyncSettings) -> tuple[Identity, Identity]:
        """Who sends the timed action and who receives it: as in business.sync_latency."""
        identities = settings.identities
        return identities[0], identities[1 % len(identities)]

    # ------------------------------------------------------------------ lifecycle

    def open(self, budget_s: float) -> None:
        """Set up what every interval reuses: a sync conversation on each side (only for a sync metric).

        ProbeError when the baseline's conversation cannot be set up (the stable version must
        work, or nothing can be compared). The canary's failing setup is a measurement of the
        canary, not of the harness: the sync metric carries it as a problem every interval (no
        data), and the other metrics go on (a dead canary still shows on the HTTP errors).
        """
        self._opened = True
        if not self._wants_sync():
            return
        sync_names = [m.name for m in self.metrics if self._live(m) and m.source == "probe" and m.probe == "sync_latency"]
        target = self.loaded.target
        sync_settings = target.sync
        assert sync_settings is not None and self.settings is not None  # _static_problem rules both out
        try:
            suite = load_scenarios(self.loaded)
        except ConfigError as exc:  # a gate run loads it at start-up (exit 3); a caller of its own may not have
            self._static.update(dict.fromkeys(sync_names, f"the scenarios folder is broken: {exc}"))
            return
        if suite is None or sync_settings.setup not in suite.drivers:
            self._static.update(
                dict.fromkeys(sync_names, f"the setup driver {sync_settings.setup} is not in the scenarios folder's drivers/")
            )
            return
        if budget_s <= 0:
            raise ProbeTimeout("no time left to set up the sync conversations: the run's deadline has passed")
        ws_urls: dict[SideName, str | None] = {
            "baseline": self.settings.baseline_ws_url,
            "canary": self.settings.canary_ws_url or target.ws_url,
        }
        base_urls: dict[SideName, str] = {"baseline": self.settings.baseline_url or target.base_url, "canary": self._canary_url()}
        driver = suite.drivers[sync_settings.setup]
        setup_s = min(runner.scenario_budget_s(driver.scenario), budget_s)

        async def both() -> list[_Conversation | BaseException]:
            work = [self._prepare(side, base_urls[side], ws_urls[side], suite, sync_settings, setup_s) for side in SIDES]
            return await asyncio.gather(*work, return_exceptions=True)

        try:
            results = sync_probe.run_blocking(both, budget_s)
        except ProbeTimeout as exc:
            raise ProbeTimeout(self._text(f"could not set up the sync conversations: {exc}")) from None
        for side, result in zip(SIDES, results, strict=True):
            if isinstance(result, _Conversation):
                self._conversations[side] = result
            elif isinstance(result, ProbeError):
                self._sync_problems[side] = self._text(f"{side}: could not set up the sync conversation: {result}")
            else:
                raise result
        if "baseline" in self._sync_problems:
            raise ProbeError(self._sync_problems["baseline"] + " (the baseline must work, or nothing can be compared)")

    def close(self) -> None:
        """Forget the conversations (their connections are closed after every interval already). Idempotent."""
        self._conversations.clear()
        self._opened = False

    async def _prepare(
        self, side: SideName, base_url: str, ws_url: str | None, suite: ScenarioSuite, settings: SyncSettings, setup_s: float
    ) -> _Conversation:
        """Prepare one side's room (releasegate.probes.sync_room) with the side's URLs as base_url and ws_url; ProbeError on failure."""
        side_target = LoadedTarget(self.loaded.target.model_copy(update={"base_url": base_url, "ws_url": ws_url}), self.loaded.path)
        ctx = runner.context_for(side_target, self._http_settings(base_url))
        self._contexts.append(ctx)  # the redactor learns what the driver saved (a login's token)
        room = await prepare_room(
            suite,
            settings,
            ctx,
            setup_s=setup_s,
            actions=[settings.latency_action],
            ca_bundle=self.loaded.ca_bundle,
            timeout_s=self.gates.probe.timeout_s,
            max_frame_bytes=self.gates.probe.max_body_bytes,
        )
        first, second = self._sync_identities(settings)
        return _Conversation(
            room.url,
            lambda marker: room.compose(settings.latency_action, marker),
            room.options,
            sync_probe.Member(first, self.loaded.token_of(first)),
            sync_probe.Member(second, self.loaded.token_of(second)),
        )

    # ------------------------------------------------------------------ one interval

    def collect(self, index: int, interval_s: float, *, budget_s: float) -> IntervalSamples:
        """Samples of both sides for one interval of ``interval_s``, all of it within ``budget_s``.

        Never raises for a metric that could not be collected: it gets empty sides and the
        reason in its problems. RuntimeError before :meth:`open` (a caller's bug).
        """
        if not self._opened:
            raise RuntimeError("CanaryCollector.open() must run before collect()")
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {interval_s!r}")
        started = self.clock()
        began = time.monotonic()
        problems: dict[str, list[str]] = {m.name: [] for m in self.metrics}
        sides: dict[str, tuple[Side, Side]] = {}

        prometheus = self._prometheus_metrics()
        # Prometheus is asked after the probes; keep it a little time even if a probe hangs.
        reserve = min(self.gates.probe.timeout_s, budget_s / 4) if prometheus else 0.0
        outcomes = self._probe_phase(interval_s, budget_s - reserve)
        self._fill_http(outcomes, sides, problems)
        self._fill_sync(outcomes, sides, problems)
        for metric in prometheus:
            left = budget_s - (time.monotonic() - began)
            self._fill_prometheus(metric, started, interval_s, left, sides, problems)

        metrics: dict[str, MetricSamples] = {}
        for metric in self.metrics:
            texts = problems[metric.name]
            if metric.name in self._static:
                texts = [self._static[metric.name]]
            baseline, canary = sides.get(metric.name) or _empty(metric)
            shown = [self._text(t) for t in texts[:MAX_PROBLEMS]]
            if len(texts) > MAX_PROBLEMS:
                shown.append(f"... and {len(texts) - MAX_PROBLEMS} more problems")
            metrics[metric.name] = MetricSamples(metric.name, metric.kind, baseline, canary, tuple(shown))
        at = datetime.fromtimestamp(started, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return IntervalSamples(index=index, started_at=at, duration_s=interval_s, metrics=metrics)

    def _probe_phase(self, interval_s: float, bound_s: float) -> _Outcomes:
        """The HTTP window and both sides' round trips, concurrently on one event loop, all within ``bound_s``."""
        outcomes = _Outcomes()
        jobs: dict[str, Callable[[], Awaitable[Any]]] = {}
        if self._wants_http():
            endpoints = [self._endpoint(side) for side in SIDES]
            settings = self.settings
            assert settings is not None  # _static_problem
            jobs["http"] = lambda: slo.probe_async(endpoints, settings.paths, settings.requests_per_interval, interval_s)
        if self._wants_sync():
            for side, conversation in self._conversations.items():
                jobs[f"sync:{side}"] = self._round_trips(conversation, interval_s)
        if not jobs and self._prometheus_metrics():
            # Nothing to send: the interval is the deployment's own traffic, read afterwards.
            jobs["wait"] = lambda: asyncio.sleep(interval_s)
        if not jobs:
            return outcomes
        if bound_s <= 0:
            for key in jobs:
                outcomes.errors[key] = "no time left for this interval: the run's deadline has passed"
            return outcomes

        async def run_all() -> None:
            tasks = {key: asyncio.ensure_future(job()) for key, job in jobs.items()}
            _, pending = await asyncio.wait(tasks.values(), timeout=bound_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for key, task in tasks.items():
                if task in pending:
                    outcomes.errors[key] = f"did not finish within the interval's budget of {bound_s:.1f} s"
                elif (exc := task.exception()) is not None:
                    if not isinstance(exc, ProbeError):
                        raise exc  # a bug, not a measurement
                    outcomes.errors[key] = str(exc)
                else:
                    outcomes.results[key] = task.result()

        try:
            sync_probe.run_blocking(run_all, bound_s + BACKSTOP_S)
        except ProbeTimeout as exc:
            for key in jobs:
                if key not in outcomes.results:
                    outcomes.errors.setdefault(key, str(exc))
        return outcomes

    def _round_trips(self, conversation: _Conversation, interval_s: float) -> Callable[[], Awaitable[sync_probe.LatencyObservation]]:
        count = self.settings.sync_round_trips if self.settings is not None else 1
        limits = self.gates.thresholds.sync_latency

        def run() -> Awaitable[sync_probe.LatencyObservation]:
            return sync_probe.round_trips(
                conversation.url,
                conversation.sender,
                conversation.receiver,
                conversation.compose,
                count=count,
                interval_ms=interval_s * 1000 / count,
                timeout_ms=limits.timeout_ms,
                options=conversation.options,
            )

        return run

    def _fill_http(self, outcomes: _Outcomes, sides: dict[str, tuple[Side, Side]], problems: dict[str, list[str]]) -> None:
        wanted = [m for m in self.metrics if self._live(m) and m.source == "probe" and m.probe in _HTTP_PROBES]
        if not wanted:
            return
        if "http" not in outcomes.results:
            for metric in wanted:
                problems[metric.name].append(f"HTTP probes: {outcomes.errors.get('http', 'not run')}")
            return
        observations: Sequence[slo.SloObservation] = outcomes.results["http"]
        baseline, canary = (http_samples(side, observation) for side, observation in zip(SIDES, observations, strict=True))
        for metric in wanted:
            if metric.probe == "http_latency":
                sides[metric.name] = (baseline.latency, canary.latency)
                problems[metric.name] += [*baseline.latency_problems, *canary.latency_problems]
            else:
                sides[metric.name] = (baseline.rate, canary.rate)
                problems[metric.name] += [*baseline.rate_problems, *canary.rate_problems]

    def _fill_sync(self, outcomes: _Outcomes, sides: dict[str, tuple[Side, Side]], problems: dict[str, list[str]]) -> None:
        wanted = [m for m in self.metrics if self._live(m) and m.source == "probe" and m.probe == "sync_latency"]
        for metric in wanted:
            got: dict[SideName, LatencySamples] = {}
            for side in SIDES:
                key = f"sync:{side}"
                if side in self._sync_problems:
                    problems[metric.name].append(self._sync_problems[side])
                elif key in outcomes.results:
                    got[side], found = sync_samples(side, outcomes.results[key])
                    problems[metric.name] += found
                else:
                    problems[metric.name].append(f"{side}: sync round trips: {outcomes.errors.get(key, 'not run')}")
            sides[metric.name] = (got.get("baseline", LatencySamples(())), got.get("canary", LatencySamples(())))

    def _fill_prometheus(
        self,
        metric: CanaryMetric,
        started: float,
        interval_s: float,
        left_s: float,
        sides: dict[str, tuple[Side, Side]],
        problems: dict[str, list[str]],
    ) -> None:
        server = self.settings.prometheus if self.settings is not None else None
        assert server is not None  # _static_problem
        if left_s <= 0:
            problems[metric.name].append("Prometheus: no time left for the queries: the interval's budget is spent")
            return
        # Prometheus is another service: the target's trust anchors (a private PKI), never its token.
        verify: ssl.SSLContext | bool = ssl_context(self.loaded.ca_bundle) if server.url.startswith("https:") else True
        settings = HttpSettings(
            timeout_s=min(self.gates.probe.timeout_s, left_s), max_body_bytes=self.gates.probe.max_body_bytes, verify=verify
        )
        step_s = self.gates.canary.step_s
        # Never past now: Prometheus would answer a future point with the last sample it has.
        end = min(started + interval_s, self.clock())
        selectors: dict[SideName, str] = {"baseline": server.baseline_selector, "canary": server.canary_selector}
        got: dict[SideName, Side] = {}
        for side in SIDES:
            fill = {"selector": selectors[side], "step": duration(step_s), "interval": duration(interval_s)}
            if metric.kind == "latency":
                assert metric.query is not None  # the model requires it
                start = started + step_s
                if start > end:
                    problems[metric.name].append(f"{side}: the interval ({end - started:.1f} s) is shorter than one step ({step_s:g} s)")
                    got[side] = LatencySamples(())
                    continue
                answer = read_range(server.url, render(metric.query, **fill), settings, start=start, end=end, step_s=step_s)
                got[side], found = prometheus_latency(side, answer)
            else:
                assert metric.errors_query is not None and metric.total_query is not None  # the model requires both
                total = read(server.url, render(metric.total_query, **fill), settings, at=end)
                errors = None if total.value is None else read(server.url, render(metric.errors_query, **fill), settings, at=end, empty=0.0)
                got[side], found = prometheus_rate(side, errors, total)
            problems[metric.name] += found
        sides[metric.name] = (got["baseline"], got["canary"])

    # ------------------------------------------------------------------ helpers

    def _http_settings(self, url: str) -> HttpSettings:
        verify: ssl.SSLContext | bool = ssl_context(self.loaded.ca_bundle) if url.startswith("https:") else True
        return HttpSettings(timeout_s=self.gates.probe.timeout_s, max_body_bytes=self.gates.probe.max_body_bytes, verify=verify)

    def _endpoint(self, side: SideName) -> slo.Endpoint:
        settings = self.settings
        assert settings is not None and settings.baseline_url is not None  # _static_problem
        url = settings.baseline_url if side == "baseline" else self._canary_url()
        return slo.Endpoint(f"{side} ({url})", url, self._http_settings(url), self.loaded.token_of(settings.as_))

    def _text(self, text: str) -> str:
        """A problem as shown: without any secret (the target's, or one a setup driver saved), and short."""
        redactor = self._redactor
        for ctx in self._contexts:
            for name, value in ctx.secret_pairs():
                redactor.add(name, value)
        cleaned = redactor.text(text)
        return cleaned if len(cleaned) <= PROBLEM_CHARS else cleaned[: PROBLEM_CHARS - 3] + "..."


def _empty(metric: CanaryMetric) -> tuple[Side, Side]:
    if metric.kind == "latency":
        return LatencySamples(()), LatencySamples(())
    return RateSamples(0, 0), RateSamples(0, 0)
