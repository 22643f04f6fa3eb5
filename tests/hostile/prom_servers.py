"""A fake Prometheus HTTP API on loopback that answers every query the same hostile way.

    with fake_prometheus(nan()) as prometheus:
        prometheus.base_url          # http://127.0.0.1:<port>, the target's prometheus.url
        prometheus.asked()           # the API paths the gate asked, in order

It answers the four endpoints the gate reads: ``/api/v1/query`` (SLO checks, canary rates),
``/api/v1/query_range`` (canary latency), ``/api/v1/targets`` and ``/api/v1/rules`` (monitoring).
An :class:`Answers` says what each of them returns; the constructors below are the hostile
cases: an error (``status: error`` with HTTP 400/422, or a proxy's 503 page), empty results,
and NaN or +Inf samples. Built on tests/loopback.py (a ThreadingHTTPServer in a daemon
thread on 127.0.0.1 port 0, stopped in a finally): nothing here can wedge a test.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from loopback import Handler, LoopbackServer, Route, serve

QUERY, QUERY_RANGE, TARGETS, RULES = "/api/v1/query", "/api/v1/query_range", "/api/v1/targets", "/api/v1/rules"
# The points a range answer carries (one series).
RANGE_POINTS = 10


@dataclass(frozen=True)
class Answers:
    """What each endpoint returns: ``query`` also stands for ``query_range``'s points (same sample text)."""

    name: str
    query: Route  # /api/v1/query
    query_range: Route
    targets: Route
    rules: Route


def _success(data: dict[str, Any]) -> dict[str, Any]:
    return {"status": "success", "data": data}


def _vector(sample: str | None) -> Route:
    result = [] if sample is None else [{"metric": {}, "value": [time.time(), sample]}]
    return Route(200, _success({"resultType": "vector", "result": result}))


def _matrix(sample: str | None) -> Route:
    now = time.time()
    points = [[now - RANGE_POINTS + i, sample] for i in range(RANGE_POINTS)]
    result = [] if sample is None else [{"metric": {}, "values": points}]
    return Route(200, _success({"resultType": "matrix", "result": result}))


def error(status: int) -> Answers:
    """Every endpoint refuses: Prometheus' own error document (400 bad_data, 422 execution), or a proxy's 503 page."""
    if status == 503:
        # What an ingress in front of a restarting Prometheus answers: not the API's JSON at all.
        route = Route(503, "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>", content_type="text/html")
    else:
        kind = {400: "bad_data", 422: "execution"}[status]
        route = Route(status, {"status": "error", "errorType": kind, "error": f"hostile fake: {kind} for every query"})
    return Answers(f"error {status}", route, route, route, route)


def empty() -> Answers:
    """Success, but nothing: no series, no targets, no rule groups."""
    return Answers(
        "empty",
        _vector(None),
        _matrix(None),
        Route(200, _success({"activeTargets": [], "droppedTargets": []})),
        Route(200, _success({"groups": []})),
    )


def sample(text: str) -> Answers:
    """Every query evaluates to ``text`` ("NaN", "+Inf"); targets and rules have no samples, so they refuse."""
    refused = Route(404, {"status": "error", "errorType": "not_found", "error": "this fake only answers queries"})
    return Answers(text, _vector(text), _matrix(text), refused, refused)


class FakePrometheus:
    """The running fake: its URL and what it was asked."""

    def __init__(self, server: LoopbackServer) -> None:
        self._server = server
        self.base_url = server.base_url

    def asked(self) -> list[str]:
        return [path for path, _ in self._server.requests]


@contextmanager
def fake_prometheus(answers: Answers) -> Iterator[FakePrometheus]:
    """A fake Prometheus on 127.0.0.1 answering every query with ``answers``."""

    routes: dict[str, Route | Handler] = {
        QUERY: answers.query,
        QUERY_RANGE: answers.query_range,
        TARGETS: answers.targets,
        RULES: answers.rules,
    }
    with serve(routes) as server:
        yield FakePrometheus(server)
