"""business.data_consistency: write once through the API, read it back everywhere listed.

The target names a write driver (a scenario under ``scenarios/drivers/``, given a unique
``${marker}``) and the reads that must show it: API endpoints, or replicas by absolute URL, each
as an identity and with an expectation (default: HTTP 200 and the body contains the marker).
Right after the write every read is polled, all at once, every ``poll_interval_ms`` until it
shows the write or ``window_s`` has passed. A read that answers but never shows the write is a
stale read or a lost write: the check fails. A read that never answers usably (refused, timed
out, 5xx) could not be measured: the check is an error, unless another read was stale.

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
from urllib.parse import urlsplit

from pydantic import ValidationError

from releasegate._exceptions import ProbeError, ProbeTimeout
from releasegate.config import LOOPBACK_HOSTS, ConsistencySettings, LoadedTarget
from releasegate.probes.api import ApiClient
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
    error: str | None = None  # no usable answer: refused, timed out, 5xx
    excerpt: str = ""

    @property
    def visible(self) -> bool:
        return self.error is None and not self.problems


@dataclass(frozen=True)
class ReadHistory:
    """Every poll of one read."""

    url: str
    identity: str
    polls: tuple[Poll, ...]
    window_ms: float

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
        if any(poll.error is None for poll in self.polls):
            return "stale"
        return "unmeasured"

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
) -> ReadHistory:
    """Poll one read until it shows the write or the window (measured from ``started``) has closed.

    ``attempt`` raising :class:`ProbeError` or answering 5xx is a poll without a usable answer.
    """
    polls: list[Poll] = []
    for _ in range(max_polls(window_s, interval_s)):
        sent = clock() - started
        try:
            answer = await attempt()
        except ProbeError as exc:
            polls.append(Poll(sent * 1000, (clock() - started) * 1000, error=str(exc)[:300]))
        else:
            answered = (clock() - started) * 1000
            if answer.status >= 500:
                error = f"HTTP {answer.status}"
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
) -> Finding:
    """Write through the target's write driver, then poll every read at once; judge the histories."""
    expected = _expected(window_s)
    marker = new_marker()
    ctx = runner.context_for(target, http)
    write_started = time.monotonic()
    try:
        outputs = await runner.run_driver(suite, settings.write, ctx, {"marker": marker})
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
        problem = _token_problem(url, read.as_, token)
        if problem is not None:
            return Finding("error", f"consistency.reads[{index}]: {problem}", expected=expected, evidence={"write": write})
        reads.append(_Read(url, read.as_, expect, token))
    async with ApiClient(target.target.base_url, http) as api:

        def attempt_for(read: _Read) -> Callable[[], Awaitable[Answer]]:
            async def attempt() -> Answer:
                answer = await api.request("GET", read.url, token=read.token)
                problems = check_answer(read.expect, answer, variables)
                return Answer(answer.status, tuple(problems), answer.text()[:EXCERPT_CHARS])

            return attempt

        started = time.monotonic()
        histories = await asyncio.gather(
            *(
                watch(read.url, read.identity, attempt_for(read), window_s=window_s, interval_s=interval_s, started=started)
                for read in reads
            )
        )
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


def _token_problem(url: str, identity: str, token: str | None) -> str | None:
    if identity != "anonymous" and token is None:
        env = "auth.token_env" if identity == "primary" else "auth.second_token_env"
        return f"the read is as {identity}, but the target names no {env} (or it is empty)"
    parts = urlsplit(url)
    if token is not None and parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        return f"{url} is plain http:// to {parts.hostname}: the token would cross the network in clear; use https://"
    return None


def _short(value: Any) -> Any:
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= 200 else text[:199] + "…"
