"""Prometheus instruments of one service instance, on its own registry.

Several instances run in one process (the tests and ``demo --canary`` start many), so nothing is
registered on prometheus_client's global registry: each app owns a ``CollectorRegistry`` and
``/metrics`` renders only that one.

Names (stable: the SLO checks and the Prometheus queries in the canary gate use them)::

    http_requests_total{method, route, status}               counter
    http_request_duration_seconds{method, route, status}     histogram
    websocket_connections                                    gauge
    sync_event_latency_seconds{type}                         histogram (event created -> sent to a client)
    worker_queue_depth                                       gauge
    tool_runs_total{tool}                                    counter (finished runs)
    assistant_replies_total{outcome}                         counter (outcome: ok | empty)
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Plain text format 0.0.4: understood by every Prometheus and by prometheus_client's own parser.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("method", "route", "status")
        self.requests = Counter("http_requests", "HTTP requests answered", labels, registry=self.registry)
        self.latency = Histogram(
            "http_request_duration_seconds", "Time to answer an HTTP request", labels, buckets=_LATENCY_BUCKETS, registry=self.registry
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

    def render(self) -> bytes:
        return generate_latest(self.registry)
