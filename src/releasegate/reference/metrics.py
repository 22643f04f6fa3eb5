"""Prometheus instruments of one service instance, on its own registry.

Several instances run in one process (the tests and ``demo --canary`` start many), so nothing is
registered on prometheus_client's global registry: each app owns a ``CollectorRegistry`` and
``/metrics`` renders only that one.

Names (stable: the SLO checks, infra.capacity and the Prometheus queries in the canary gate use them)::

    http_requests_total{method, route, status}               counter
    http_request_duration_seconds{method, route, status}     histogram
    http_response_bytes_total                                counter (response body bytes sent, every HTTP answer)
    api_requests_in_flight                                   gauge (/api requests being served now)
    api_requests_in_flight_limit                             gauge (the most served at once; beyond it 503)
    api_requests_in_flight_seconds_total                     counter (slot-seconds held: its rate is the mean in flight)
    websocket_connections                                    gauge
    sync_event_latency_seconds{type}                         histogram (event created -> sent to a client)
    worker_queue_depth                                       gauge
    tool_runs_total{tool}                                    counter (finished runs)
    assistant_replies_total{outcome}                         counter (outcome: ok | empty)
    process_cpu_seconds_total, process_resident_memory_bytes,
    process_virtual_memory_bytes, process_start_time_seconds,
    process_open_fds, process_max_fds                        prometheus_client's ProcessCollector

The ``process_*`` figures are the operating system's for the whole process. Where several
instances share one process (the tests, ``demo --canary``) they all report the same, shared
figures: acceptable for the reference, whose capacity check measures one instance under load
while the others idle; a real deployment runs one service per process.

The "connection pool" of the sizing rules: the reference's SQLite store has one connection,
used synchronously by one request at a time, so a database pool gauge would always read 0 or
1 of 1. What does run out under concurrency is the service's budget of /api requests in
flight (:data:`MAX_IN_FLIGHT`), enforced by the edge with 503 like a pool that cannot hand out
another connection; the ``api_requests_in_flight*`` series measure that budget.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

# Plain text format 0.0.4: understood by every Prometheus and by prometheus_client's own parser.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# /api requests served at once. The per-IP (30/s) and per-user (20/s) rate limits keep a
# healthy client far below it; only requests stuck behind a slow dependency pile up this high.
MAX_IN_FLIGHT = 64


class Metrics:
    def __init__(self, *, max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        labels = ("method", "route", "status")
        self.requests = Counter("http_requests", "HTTP requests answered", labels, registry=self.registry)
        self.latency = Histogram(
            "http_request_duration_seconds", "Time to answer an HTTP request", labels, buckets=_LATENCY_BUCKETS, registry=self.registry
        )
        self.response_bytes = Counter("http_response_bytes", "HTTP response body bytes sent", registry=self.registry)
        self.in_flight = 0
        self._in_flight_gauge = Gauge("api_requests_in_flight", "/api requests being served now", registry=self.registry)
        self._limit_gauge = Gauge(
            "api_requests_in_flight_limit", "The most /api requests served at once (beyond: 503)", registry=self.registry
        )
        self.max_in_flight = max_in_flight
        self._slot_seconds = Counter(
            "api_requests_in_flight_seconds", "Seconds of /api request slots held (rate: mean requests in flight)", registry=self.registry
        )
        self.ws_connections = Gauge("websocket_connections", "Open WebSocket sync connections", registry=self.registry)
        self.sync_latency = Histogram(
            "sync_event_latency_seconds",
            "Time from a sync event's creation to its delivery to one client",
            ("type",),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge("worker_queue_depth", "Tool runs waiting for the worker", registry=self.registry)
        self.tool_runs = Counter("tool_runs", "Tool runs finished", ("tool",), registry=self.registry)
        self.assistant_replies = Counter("assistant_replies", "Assistant replies", ("outcome",), registry=self.registry)

    @property
    def max_in_flight(self) -> int:
        return self._max_in_flight

    @max_in_flight.setter
    def max_in_flight(self, value: int) -> None:
        self._max_in_flight = value
        self._limit_gauge.set(value)

    @property
    def slots_free(self) -> bool:
        return self.in_flight < self.max_in_flight

    @contextmanager
    def api_slot(self) -> Iterator[None]:
        """Hold one /api slot while a request is served (callers check :attr:`slots_free` first)."""
        self.in_flight += 1
        self._in_flight_gauge.set(self.in_flight)
        started = time.perf_counter()
        try:
            yield
        finally:
            self._slot_seconds.inc(time.perf_counter() - started)
            self.in_flight -= 1
            self._in_flight_gauge.set(self.in_flight)

    def render(self) -> bytes:
        return generate_latest(self.registry)
