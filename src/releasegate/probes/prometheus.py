"""Prometheus queries: one bounded GET, one number (instant) or one series (range), or "could not measure".

The PromQL lives in gates.yaml (``thresholds.slo.prometheus``, ``canary.metrics``) with
``$selector``, ``$window``, ``$step`` and ``$interval`` placeholders; :func:`render` fills them in
(:func:`duration` writes seconds the way PromQL wants them). :func:`parse_instant` is pure: it
turns the HTTP API's standard answer (``{"status": "success", "data": {"resultType": "vector",
"result": [...]}}``) into one finite number, and raises :class:`~releasegate.ProbeError` for
everything else: an error status, an empty result (no series matched: the selector is wrong or
there was no traffic; unless the caller says what an empty result means, e.g. a count of 5xx
answers of which there were none), more than one series (the query must aggregate), NaN (0/0: no
traffic in the window) or an infinity (a histogram quantile beyond the last finite bucket).
Never a silent zero.

:func:`parse_range` is the same for a range query (``/api/v1/query_range``, resultType
``matrix``): the values of its one series in time order. There NaN and infinities are kept, one
per point: a step without traffic (0/0) says nothing about the steps around it, so the caller
drops and counts such points rather than losing the whole range.

:func:`read` and :func:`read_range` never raise: the checks judge a :class:`PromReading` or a
:class:`PromRange`, whose ``problem`` says why nothing could be measured.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from string import Template
from typing import Any
from urllib.parse import urlencode

from releasegate._exceptions import ProbeError
from releasegate.probes.http import HttpSettings, get

# How much of Prometheus' own error text an evidence record keeps.
_ERROR_CHARS = 300


@dataclass(frozen=True)
class PromReading:
    """One instant query and its answer: a finite ``value``, or ``problem`` saying why there is none."""

    url: str  # the Prometheus server (no query string)
    query: str
    value: float | None
    problem: str | None = None

    def evidence(self) -> dict[str, Any]:
        record: dict[str, Any] = {"prometheus": self.url, "query": self.query, "value": self.value}
        if self.problem is not None:
            record["problem"] = self.problem
        return record


@dataclass(frozen=True)
class PromRange:
    """One range query and its answer: the values of its one series, or ``problem`` saying why there are none.

    ``values`` are in time order, one per step that had a point, NaN and infinities included
    (a step without traffic is 0/0): the caller decides what a point worth judging is.
    """

    url: str  # the Prometheus server (no query string)
    query: str
    start: float  # seconds since the epoch
    end: float
    step_s: float
    values: tuple[float, ...] = ()
    problem: str | None = None

    def evidence(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "prometheus": self.url,
            "query": self.query,
            "start": self.start,
            "end": self.end,
            "step_s": self.step_s,
            "points": len(self.values),
        }
        if self.problem is not None:
            record["problem"] = self.problem
        return record


def render(query: str, *, selector: str, window: str | None = None, step: str | None = None, interval: str | None = None) -> str:
    """``query`` with ``$selector`` (and ``$window``, ``$step``, ``$interval`` when given) filled in; other ``$`` text is left alone."""
    given = {"window": window, "step": step, "interval": interval}
    return Template(query).safe_substitute(selector=selector, **{name: value for name, value in given.items() if value is not None})


def duration(seconds: float) -> str:
    """``seconds`` as a PromQL duration: whole seconds as "5s", anything finer in milliseconds ("2500ms")."""
    millis = round(seconds * 1000)
    if millis <= 0:
        raise ValueError(f"a PromQL duration must be at least 1 ms, got {seconds!r} s")
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def query_url(server: str, query: str, *, at: float | None = None) -> str:
    """The instant query's URL; ``at`` (seconds since the epoch) is the evaluation time (default: now)."""
    params = {"query": query} | ({} if at is None else {"time": f"{at:.3f}"})
    return f"{server.rstrip('/')}/api/v1/query?{urlencode(params)}"


def range_query_url(server: str, query: str, *, start: float, end: float, step_s: float) -> str:
    params = {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step_s:g}"}
    return f"{server.rstrip('/')}/api/v1/query_range?{urlencode(params)}"


def parse_instant(status: int, body: bytes, *, truncated: bool = False, empty: float | None = None) -> float:
    """The single finite value of an instant query's answer; ProbeError when there is none.

    ``empty``: the value an empty result stands for (e.g. 0 for a count of 5xx answers, whose
    series does not exist until the first one); None: an empty result is a ProbeError.
    """
    kind, result = _data(status, body, truncated=truncated, instant=True)
    if kind == "scalar":
        return _finite(result)
    if kind != "vector" or not isinstance(result, list):
        raise ProbeError(f"expected an instant vector or a scalar, got {kind!r}: use an instant query that aggregates to one number")
    if not result:
        if empty is not None:
            return empty
        raise ProbeError("no series matched (empty result): check the selector, and that the service had traffic in the window")
    _one_series(result)
    entry = result[0]
    return _finite(entry.get("value") if isinstance(entry, dict) else None)


def parse_range(status: int, body: bytes, *, truncated: bool = False) -> tuple[float, ...]:
    """The values of a range query's one series, in time order (NaN and infinities kept); ProbeError when there is no series."""
    kind, result = _data(status, body, truncated=truncated, instant=False)
    if kind != "matrix" or not isinstance(result, list):
        raise ProbeError(f"expected a range vector (matrix), got {kind!r}: use a query that yields one series over time")
    if not result:
        raise ProbeError("no series matched (empty result): check the selector, and that the service had traffic in the range")
    _one_series(result)
    entry = result[0]
    points = entry.get("values") if isinstance(entry, dict) else None
    if not isinstance(points, list):
        raise ProbeError("the series has no values list")
    values: list[tuple[float, float]] = []
    for point in points:
        if not isinstance(point, list) or len(point) != 2 or not isinstance(point[0], (int, float)):
            raise ProbeError(f'malformed point {str(point)[:80]!r} (expected [timestamp, "value"])')
        values.append((float(point[0]), _number(point)))
    # Prometheus answers in time order; sorting costs nothing and does not trust it to.
    return tuple(value for _, value in sorted(values, key=lambda pair: pair[0]))


def api_data(status: int, body: bytes, *, truncated: bool, too_big: str, what: str = "request") -> Any:
    """The ``data`` of a Prometheus HTTP API answer; ProbeError for anything but ``status: success``.

    ``too_big`` says why an answer cut at probe.max_body_bytes was so large (and what to do);
    ``what`` names what Prometheus refused (the query, the request).
    """
    if truncated:
        raise ProbeError(f"the answer was cut at {len(body)} bytes: {too_big}")
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        excerpt = body[:120].decode("utf-8", errors="replace")
        raise ProbeError(f"HTTP {status}, not a Prometheus API answer (not JSON): {excerpt!r}") from None
    if not isinstance(document, dict):
        raise ProbeError(f"HTTP {status}, not a Prometheus API answer (a JSON {type(document).__name__})")
    if document.get("status") != "success":
        kind = document.get("errorType", "unknown")
        error = str(document.get("error", "no error text"))[:_ERROR_CHARS]
        raise ProbeError(f"Prometheus refused the {what} (HTTP {status}, {kind}): {error}")
    return document.get("data")


def _data(status: int, body: bytes, *, truncated: bool, instant: bool) -> tuple[Any, Any]:
    """(resultType, result) of a successful query answer; ProbeError for everything else."""
    too_big = "the query returns " + ("far more than one series" if instant else "far more points or series than the range needs")
    data = api_data(status, body, truncated=truncated, too_big=too_big, what="query")
    if not isinstance(data, dict):
        raise ProbeError("the answer has no data object")
    return data.get("resultType"), data.get("result")


def _one_series(result: list[Any]) -> None:
    if len(result) > 1:
        labels = [entry.get("metric") for entry in result[:3] if isinstance(entry, dict)]
        raise ProbeError(f"{len(result)} series instead of one (e.g. {labels}): aggregate the query, e.g. with sum(...)")


def _number(sample: Any) -> float:
    """The value of a ``[timestamp, "value"]`` pair (NaN and infinities included)."""
    if not isinstance(sample, list) or len(sample) != 2 or not isinstance(sample[1], str):
        raise ProbeError(f'malformed sample {str(sample)[:80]!r} (expected [timestamp, "value"])')
    try:
        return float(sample[1])
    except ValueError:
        raise ProbeError(f"sample value {sample[1][:40]!r} is not a number") from None


def _finite(sample: Any) -> float:
    """The value of a ``[timestamp, "value"]`` pair, refusing NaN and infinities."""
    value = _number(sample)
    if math.isnan(value):
        raise ProbeError("the query evaluated to NaN (typically 0/0: no requests in the window)")
    if math.isinf(value):
        # Not only quantiles: an error-rate ratio is x/0 = +Inf when the total has no series values but errors do.
        raise ProbeError(f"the query evaluated to {sample[1]} (a division by zero, or a quantile beyond the highest finite bucket)")
    return value


def read(server: str, query: str, settings: HttpSettings, *, at: float | None = None, empty: float | None = None) -> PromReading:
    """Run one instant query against ``server`` within ``settings.timeout_s``; never raises.

    ``at``: evaluation time (seconds since the epoch; default now); ``empty``: see
    :func:`parse_instant`. ``settings.headers`` are sent as they are: pass settings without the
    target's token (Prometheus is another service; the deployment's bearer token has no business there).
    """
    try:
        answer = get(query_url(server, query, at=at), settings)
        value = parse_instant(answer.status, answer.body, truncated=answer.truncated, empty=empty)
    except ProbeError as exc:
        return PromReading(url=server, query=query, value=None, problem=str(exc))
    return PromReading(url=server, query=query, value=value)


def read_range(server: str, query: str, settings: HttpSettings, *, start: float, end: float, step_s: float) -> PromRange:
    """Run one range query (``start``..``end``, seconds since the epoch, every ``step_s``) within ``settings.timeout_s``; never raises.

    Bounded like :func:`read`: one GET, ``settings.max_body_bytes`` of answer at most (a cut
    answer is a problem, never a shorter series). Settings without the target's token, as for :func:`read`.
    """
    asked = PromRange(url=server, query=query, start=start, end=end, step_s=step_s)
    if not (math.isfinite(start) and math.isfinite(end) and end >= start):
        return replace(asked, problem=f"the range ends before it starts ({start:.3f} .. {end:.3f})")
    if not (math.isfinite(step_s) and step_s > 0):
        return replace(asked, problem=f"the step must be a positive number of seconds, got {step_s!r}")
    try:
        answer = get(range_query_url(server, query, start=start, end=end, step_s=step_s), settings)
        values = parse_range(answer.status, answer.body, truncated=answer.truncated)
    except ProbeError as exc:
        return replace(asked, problem=str(exc))
    return replace(asked, values=values)
