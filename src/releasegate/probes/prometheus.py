"""Prometheus instant queries for the SLO checks: one bounded GET, one number, or "could not measure".

The PromQL lives in gates.yaml (``thresholds.slo.prometheus``) with ``$selector`` and ``$window``
placeholders; :func:`render` fills them in. :func:`parse_instant` is pure: it turns the HTTP API's
standard answer (``{"status": "success", "data": {"resultType": "vector", "result": [...]}}``) into
one finite number, and raises :class:`~releasegate.ProbeError` for everything else: an error
status, an empty result (no series matched: the selector is wrong or there was no traffic), more
than one series (the query must aggregate), NaN (0/0: no traffic in the window) or an infinity
(a histogram quantile beyond the last finite bucket). Never a silent zero.

:func:`read` never raises: the checks judge a :class:`PromReading`, whose ``value`` is None when
the query could not be measured and ``problem`` says why.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
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


def render(query: str, *, selector: str, window: str) -> str:
    """``query`` with ``$selector`` and ``$window`` filled in; other ``$`` text is left alone."""
    return Template(query).safe_substitute(selector=selector, window=window)


def query_url(server: str, query: str) -> str:
    return f"{server.rstrip('/')}/api/v1/query?{urlencode({'query': query})}"


def parse_instant(status: int, body: bytes, *, truncated: bool = False) -> float:
    """The single finite value of an instant query's answer; ProbeError when there is none."""
    if truncated:
        raise ProbeError(f"the answer was cut at {len(body)} bytes: the query returns far more than one series")
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        excerpt = body[:120].decode("utf-8", errors="replace")
        raise ProbeError(f"HTTP {status}, not a Prometheus API answer (not JSON): {excerpt!r}") from None
    if not isinstance(document, dict):
        raise ProbeError(f"HTTP {status}, not a Prometheus API answer (a JSON {type(document).__name__})")
    if document.get("status") != "success":
        kind = document.get("errorType", "unknown")
        error = str(document.get("error", "no error text"))[:_ERROR_CHARS]
        raise ProbeError(f"Prometheus refused the query (HTTP {status}, {kind}): {error}")
    data = document.get("data")
    if not isinstance(data, dict):
        raise ProbeError("the answer has no data object")
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        return _finite(result)
    if kind != "vector" or not isinstance(result, list):
        raise ProbeError(f"expected an instant vector or a scalar, got {kind!r}: use an instant query that aggregates to one number")
    if not result:
        raise ProbeError("no series matched (empty result): check prometheus.selector, and that the service had traffic in the window")
    if len(result) > 1:
        labels = [entry.get("metric") for entry in result[:3] if isinstance(entry, dict)]
        raise ProbeError(f"{len(result)} series instead of one (e.g. {labels}): aggregate the query, e.g. with sum(...)")
    entry = result[0]
    return _finite(entry.get("value") if isinstance(entry, dict) else None)


def _finite(sample: Any) -> float:
    """The value of a ``[timestamp, "value"]`` pair, refusing NaN and infinities."""
    if not isinstance(sample, list) or len(sample) != 2 or not isinstance(sample[1], str):
        raise ProbeError(f'malformed sample {str(sample)[:80]!r} (expected [timestamp, "value"])')
    try:
        value = float(sample[1])
    except ValueError:
        raise ProbeError(f"sample value {sample[1][:40]!r} is not a number") from None
    if math.isnan(value):
        raise ProbeError("the query evaluated to NaN (typically 0/0: no requests in the window)")
    if math.isinf(value):
        raise ProbeError(f"the query evaluated to {sample[1]} (for a quantile: beyond the highest finite bucket)")
    return value


def read(server: str, query: str, settings: HttpSettings) -> PromReading:
    """Run one instant query against ``server`` within ``settings.timeout_s``; never raises.

    ``settings.headers`` are sent as they are: pass settings without the target's token
    (Prometheus is another service; the deployment's bearer token has no business there).
    """
    try:
        answer = get(query_url(server, query), settings)
        value = parse_instant(answer.status, answer.body, truncated=answer.truncated)
    except ProbeError as exc:
        return PromReading(url=server, query=query, value=None, problem=str(exc))
    return PromReading(url=server, query=query, value=value)
