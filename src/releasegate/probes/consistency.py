"""business.data_consistency: write once through the API, read it back everywhere listed.

The target names a write driver (a scenario under ``scenarios/drivers/``, given a unique
``${marker}``) and the reads that must show it: API endpoints, or replicas by absolute URL, each
as an identity and with an expectation (default: HTTP 200 and the body contains the marker).
Right after the write every read is polled, all at once, every ``poll_interval_ms`` until it
shows the write or ``window_s`` has passed. A read that answers but never shows the write is a
stale read or a lost write: the check fails. A read that never answers usably (refused, timed
out, 5xx, 401/403 for its identity, a 429 that outlasts the short wait allowed) could not be
measured: the check is an error, unless another read was stale. So is a read whose polling the
gate run's deadline cut before its window closed: what was seen until then is still reported.

A read never sends its identity's token in clear beyond loopback, nor to another origin than
the target's unless the read names its ``as:`` on purpose (:func:`releasegate.probes.api.token_allowed`),
and an identity without a token is an error, never an anonymous read.

:func:`watch` (one read's polling, time and sleep injected) and :func:`judge` (histories in, a
Finding out) know nothing of HTTP or of the scenario engine; :func:`measure` wires them to both.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import ValidationError

from releasegate._exceptions import ProbeError, ProbeTimeout
from releasegate.config import ConsistencySettings, Identity, LoadedTarget
from releasegate.probes.api import ApiClient, mask_secrets_in_json_text, token_allowed
from releasegate.probes.http import HttpSettings
from releasegate.results import Finding
from releasegate.scenarios import runner
from releasegate.scenarios.expectations import check_answer
from releasegate.scenarios.loader import ScenarioSuite
from releasegate.scenarios.model import Expect
from releasegate.scenarios.template import TemplateSyntaxError, UndefinedVariable, render, to_text

Visibility = Literal["visible", "stale", "unmeasured"]
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
T = TypeVar("T")

MAX_POLLS = 1000  # per read, whatever window and interval say
EXCERPT_CHARS = 300
MAX_PROBLEMS_SHOWN = 3
# A 429 is waited out once, briefly: a read that needs more is throttled, not stale, and the
# window is seconds long.
MAX_THROTTLE_RETRIES = 1
MAX_THROTTLE_WAIT_S = 1.0
# Answers that say nothing about the write: the service is failing, the identity may not read, or
# the gate is throttled.
_UNREADABLE = {
    401: "the read's identity is not authenticated",
    403: "the read's identity may not read it",
    429: "throttled longer than the gate waits",
}


@dataclass(frozen=True)
class Answer:
    """One read's answer, already compared with its expectation (``problems`` empty: the write shows)."""

    status: int
    problems: tuple[str, ...]
    excerpt: str = ""


@dataclass(frozen=True)
class Poll:
    """One poll of one read, timed from the moment the write completed."""

    sent_ms: float
    answered_ms: float
    status: int | None = None
    problems: tuple[str, ...] = ()
    error: str | None = None  # no usable answer: refused, timed out, 5xx, 401, 403, 429
    excerpt: str = ""

    @property
    def visible(self) -> bool:
        return self.error is None and not self.problems


@dataclass(frozen=True)
class ReadHistory:
    """Every poll of one read; ``cut_ms``: when the run's deadline stopped polling early (else None)."""

    url: str
    identity: str
    polls: tuple[Poll, ...]
    window_ms: float
    cut_ms: float | None = None

    @property
    def label(self) -> str:
        return f"{self.url} as {self.identity}"

    def first_visible(self) -> Poll | None:
        # A read sent within the window that shows the write proves it was visible in time,
        # even if a slow answer arrived a little after the window closed.
        return next((poll for poll in self.polls if poll.visible and poll.sent_ms <= self.window_ms), None)

    @property
    def visibility(self) -> Visibility:
        if self.first_visible() is not None:
            return "visible"
        if self.cut_short:
            return "unmeasured"  # not watched for the whole window: not shown *yet* proves nothing
        if any(poll.error is None for poll in self.polls):
            return "stale"
        return "unmeasured"

    @property
    def cut_short(self) -> bool:
        return self.cut_ms is not None and not any(poll.sent_ms >= self.window_ms for poll in self.polls)

    def last(self) -> Poll | None:
        return self.polls[-1] if self.polls else None

    def evidence(self) -> dict[str, Any]:
        record: dict[str, Any] = {"url": self.url, "as": self.identity, "result": self.visibility, "attempts": len(self.polls)}
        seen = self.first_visible()
        if seen is not None:
            record["visible_after_ms"] = round(seen.answered_ms, 1)
        last = self.last()
        if last is not None and seen is None:
            record["last_status"] = last.status
            if last.error is not None:
                record["last_error"] = last.error
            record["last_problems"] = list(last.problems[:MAX_PROBLEMS_SHOWN])
            record["last_answer_excerpt"] = last.excerpt
            record["last_answered_ms"] = round(last.answered_ms, 1)
        errors = sum(1 for poll in self.polls if poll.error is not None)
        if errors:
            record["errored_polls"] = errors
        if self.cut_short and self.cut_ms is not None:
            record["cut_at_ms"] = round(self.cut_ms, 1)
        return record


def max_polls(window_s: float, interval_s: float) -> int:
    """Polls one read may make: one per interval across the window, one at its end, one spare."""
    return min(MAX_POLLS, math.ceil(window_s / interval_s) + 2)


async def watch(
    url: str,
    identity: str,
    attempt: Callable[[], Awaitable[Answer]],
    *,
    window_s: float,
    interval_s: float,
    started: float,
    clock: Clock = time.monotonic,
    sleep: Sleep = asyncio.sleep,
    polls: list[Poll] | None = None,
) -> ReadHistory:
    """Poll one read until it shows the write or the window (measured from ``started``) has closed.

    ``attempt`` raising :class:`ProbeError` or answering 5xx, 401, 403 or 429 is a poll without a
    usable answer. Each poll is appended to ``polls`` as it completes, so a caller that cancels
    the watch still has them.
    """
    polls = [] if polls is None else polls
    for _ in range(max_polls(window_s, interval_s)):
        sent = clock() - started
        try:
            answer = await attempt()
        except ProbeError as exc:
            polls.append(Poll(sent * 1000, (clock() - started) * 1000, error=str(exc)[:300]))
        else:
            answered = (clock() - started) * 1000
            if answer.status >= 500 or answer.status in _UNREADABLE:
                error = f"HTTP {answer.status}" + (f" ({_UNREADABLE[answer.status]})" if answer.status in _UNREADABLE else "")
                polls.append(Poll(sent * 1000, answered, status=answer.status, error=error, excerpt=answer.excerpt[:EXCERPT_CHARS]))
            else:
                polls.append(Poll(sent * 1000, answered, answer.status, answer.problems, excerpt=answer.excerpt[:EXCERPT_CHARS]))
        if polls[-1].visible:
            break
        elapsed = clock() - started
        if elapsed >= window_s:
            break
        # The last sleep ends exactly at the window's end, so one poll is made there.
        await sleep(min(interval_s, window_s - elapsed))
    return ReadHistory(url=url, identity=identity, polls=tuple(polls), window_ms=window_s * 1000)


def judge(histories: Sequence[ReadHistory], *, window_s: float, write: Mapping[str, Any]) -> Finding:
    """Every read showed the write within the window -> passed; one never did -> failed; a read
    that could not be measured (and none stale) -> error."""
    expected = _expected(window_s)
    stale = [h for h in histories if h.visibility == "stale"]
    unmeasured = [h for h in histories if h.visibility == "unmeasured"]
    visible = [h for h in histories if h.visibility == "visible"]
    observed = {h.label: _observed(h) for h in histories}
    evidence: dict[str, Any] = {
        "samples": len(stale) + len(visible),
        "window_s": window_s,
        "write": dict(write),
        "reads": [h.evidence() for h in histories],
    }
    if not histories:
        return Finding("error", "no read to check the write against", observed, expected, evidence)
    if stale:
        details = "; ".join(_stale_detail(h, window_s) for h in stale)
        extra = f" ({len(unmeasured)} more reads could not be measured)" if unmeasured else ""
        return Finding("failed", f"stale or lost write: {details}{extra}", observed, expected, evidence)
    if unmeasured:
        details = "; ".join(f"{h.label}: {_last_error(h)}" for h in unmeasured)
        return Finding("error", f"could not read the write back: {details}", observed, expected, evidence)
    slowest = max(visible, key=lambda h: _visible_ms(h))
    return Finding(
        "passed",
        f"the write was visible on all {len(visible)} reads within {window_s:g} s "
        f"(slowest: {slowest.label} after {_visible_ms(slowest):.0f} ms)",
        observed,
        expected,
        evidence,
    )


def write_failed(driver: str, error: str, *, window_s: float, marker: str) -> Finding:
    """The write itself did not happen: nothing can be read back. ``error`` names the driver's failing step."""
    return Finding(
        "error",
        f"could not write: {error}",
        expected=_expected(window_s),
        evidence={"samples": 0, "write": {"driver": driver, "marker": marker, "error": error[:500]}},
    )


def new_marker() -> str:
    """Unique per run, easy to find in a body, harmless in a URL or JSON."""
    return f"rg-consistency-{uuid.uuid4().hex[:16]}"


def _expected(window_s: float) -> str:
    return f"the write is visible on every read within {window_s:g} s"


def _visible_ms(history: ReadHistory) -> float:
    seen = history.first_visible()
    return seen.answered_ms if seen is not None else math.inf


def _observed(history: ReadHistory) -> str:
    if history.visibility == "visible":
        return f"visible after {_visible_ms(history):.0f} ms"
    if history.visibility == "stale":
        return f"not visible after {len(history.polls)} reads"
    return f"not measured: {_last_error(history)}"


def _stale_detail(history: ReadHistory, window_s: float) -> str:
    last = history.last()
    shown = ""
    if last is not None:
        problems = "; ".join(last.problems[:MAX_PROBLEMS_SHOWN]) or (last.error or "")
        shown = f"; last answer HTTP {last.status}: {problems}" if last.status is not None else f"; last poll: {problems}"
    return f"{history.label} still did not show the write after {window_s:g} s ({len(history.polls)} reads){shown}"


def _last_error(history: ReadHistory) -> str:
    last = history.last()
    if history.cut_short and history.cut_ms is not None:
        seen = f"; last answer: {last.error or '; '.join(last.problems[:MAX_PROBLEMS_SHOWN])}" if last is not None else ""
        return (
            f"the run's deadline stopped polling after {history.cut_ms:.0f} ms, before the {history.window_ms:.0f} ms window closed{seen}"
        )
    if last is None:
        return "never polled"
    return last.error or "; ".join(last.problems) or "no usable answer"


# --------------------------------------------------------------------------- the probe


@dataclass(frozen=True)
class _Read:
    url: str
    identity: str
    expect: Expect
    token: str | None


async def measure(
    target: LoadedTarget,
    suite: ScenarioSuite,
    settings: ConsistencySettings,
    http: HttpSettings,
    *,
    window_s: float,
    interval_s: float,
    end: float = math.inf,
) -> Finding:
    """Write through the target's write driver, then poll every read at once; judge the histories.

    ``end`` (time.monotonic) bounds everything: the driver's run, then the polling, which is cut
    there and judged on what was seen.
    """
    ctx = runner.context_for(target, http)
    finding = await _measure(target, suite, settings, ctx, window_s=window_s, interval_s=interval_s, end=end)
    # The driver may have saved a credential (a login's token) that its outputs, the read URLs
    # or the answers repeat.
    return runner.scrubbed(finding, ctx.redactor())


async def _measure(
    target: LoadedTarget,
    suite: ScenarioSuite,
    settings: ConsistencySettings,
    ctx: runner.RunContext,
    *,
    window_s: float,
    interval_s: float,
    end: float,
) -> Finding:
    expected = _expected(window_s)
    marker = new_marker()
    driver = suite.drivers.get(settings.write)
    write_started = time.monotonic()
    budget = runner.scenario_budget_s(driver.scenario) if driver is not None else 0.0
    try:
        outputs = await runner.run_driver(
            suite, settings.write, ctx, {"marker": marker}, deadline_s=max(0.0, min(budget, end - write_started))
        )
    except runner.DriverFailed as exc:
        finding = write_failed(settings.write, str(exc), window_s=window_s, marker=marker)
        return Finding(finding.outcome, finding.summary, finding.observed, finding.expected, {**finding.evidence, **exc.evidence()})
    write = {
        "driver": settings.write,
        "marker": marker,
        "outputs": {key: _short(value) for key, value in outputs.items()},
        "duration_ms": round((time.monotonic() - write_started) * 1000, 1),
    }
    variables = {**runner.builtin_variables(ctx), **outputs, "marker": marker}
    reads: list[_Read] = []
    for index, read in enumerate(settings.reads):
        try:
            url = to_text(render(read.url, variables))
            expect = Expect.model_validate(read.expect)
        except (UndefinedVariable, TemplateSyntaxError, ValidationError) as exc:
            return Finding("error", f"consistency.reads[{index}] cannot be used: {exc}", expected=expected, evidence={"write": write})
        token = ctx.tokens.get(read.as_)
        problem = _token_problem(target, ctx, url, read.as_, explicit="as_" in read.model_fields_set)
        if problem is not None:
            return Finding("error", f"consistency.reads[{index}]: {problem}", expected=expected, evidence={"write": write})
        reads.append(_Read(url, read.as_, expect, token))
    api_client = ApiClient(
        target.target.base_url, ctx.http, max_throttle_retries=MAX_THROTTLE_RETRIES, max_throttle_wait_s=MAX_THROTTLE_WAIT_S
    )
    async with api_client as api:

        def attempt_for(read: _Read) -> Callable[[], Awaitable[Answer]]:
            async def attempt() -> Answer:
                try:
                    answer = await api.request("GET", read.url, token=read.token)
                    problems = check_answer(read.expect, answer, variables)
                except ProbeError:
                    raise
                except Exception as exc:  # a hostile answer (or URL) is an unusable poll, not a crash
                    raise ProbeError(f"could not read: {type(exc).__name__}: {str(exc)[:200]}", url=read.url) from None
                return Answer(answer.status, tuple(problems), mask_secrets_in_json_text(answer.text()[:EXCERPT_CHARS]))

            return attempt

        started = time.monotonic()
        sinks: list[list[Poll]] = [[] for _ in reads]
        watches = [
            asyncio.ensure_future(
                watch(read.url, read.identity, attempt_for(read), window_s=window_s, interval_s=interval_s, started=started, polls=sink)
            )
            for read, sink in zip(reads, sinks, strict=True)
        ]
        remaining = end - started
        # Never empty: the target's schema asks for at least one read (asyncio.wait refuses none).
        done, pending = await asyncio.wait(watches, timeout=None if math.isinf(remaining) else max(0.0, remaining))
        cut_ms = (time.monotonic() - started) * 1000
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    histories = [
        task.result() if task in done else ReadHistory(read.url, read.identity, tuple(sink), window_s * 1000, cut_ms=cut_ms)
        for task, read, sink in zip(watches, reads, sinks, strict=True)
    ]
    return judge(histories, window_s=window_s, write=write)


def blocking(coroutine: Coroutine[Any, Any, T], *, timeout_s: float, what: str) -> T:
    """Run ``coroutine`` on a fresh event loop within ``timeout_s``; ProbeTimeout beyond it."""

    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, timeout_s)

    # Not asyncio.run(): it joins the default executor on the way out, so a getaddrinfo() stuck
    # in a slow resolver would hold the check past its deadline (as in probes.http).
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(bounded())
    except TimeoutError:
        raise ProbeTimeout(f"{what} did not finish within {timeout_s:g} s") from None
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


def _token_problem(target: LoadedTarget, ctx: runner.RunContext, url: str, identity: Identity, *, explicit: bool) -> str | None:
    """Why the read cannot be sent as ``identity`` (the same rules as a scenario step), or None."""
    missing = runner.missing_token_problem(identity, target)
    if missing is not None:
        return f"the read {missing}"
    if identity == "anonymous":
        return None
    absolute = url if url.startswith(("http://", "https://")) else target.target.base_url.rstrip("/") + "/" + url.lstrip("/")
    problem = token_allowed(absolute, ctx.base_url, ctx.ws_url, explicit=explicit)
    return None if problem is None else f"the read {problem}"


def _short(value: Any) -> Any:
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= 200 else text[:199] + "…"
