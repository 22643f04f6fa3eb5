"""Small real HTTP servers on 127.0.0.1, port 0, for tests that must not be mocks.

    with serve({"/healthz": Route(200, "ok"), "/readyz": Route(503)}) as server:
        server.url("/healthz")

A route can delay, hang (bounded), or be a function of the request. Every server thread is a
daemon and every sleep is bounded, so a failing test cannot wedge the suite.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_HANG_S = 30.0


@dataclass
class Route:
    status: int = 200
    body: bytes | str | dict[str, Any] = b""
    content_type: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # sleep before answering (bounded by MAX_HANG_S)

    def payload(self) -> tuple[bytes, str]:
        if isinstance(self.body, dict):
            return json.dumps(self.body).encode(), self.content_type or "application/json"
        if isinstance(self.body, str):
            return self.body.encode(), self.content_type or "text/plain; charset=utf-8"
        return self.body, self.content_type or "application/octet-stream"


Handler = Callable[[BaseHTTPRequestHandler], Route]


class LoopbackServer:
    def __init__(self, routes: dict[str, Route | Handler]) -> None:
        self.routes = routes
        self.requests: list[tuple[str, dict[str, str]]] = []
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                path = self.path.split("?")[0]
                server.requests.append((path, {k.lower(): v for k, v in self.headers.items()}))
                route = server.routes.get(path, Route(404, "not found"))
                if callable(route) and not isinstance(route, Route):
                    route = route(self)
                if route.delay_s:
                    time.sleep(min(route.delay_s, MAX_HANG_S))
                body, content_type = route.payload()
                try:
                    self.send_response(route.status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(body)))
                    for name, value in route.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up first (timeouts are what some tests are about)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@contextmanager
def serve(routes: dict[str, Route | Handler]) -> Iterator[LoopbackServer]:
    server = LoopbackServer(routes).start()
    try:
        yield server
    finally:
        server.stop()


def refused_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def healthy_routes(release: str = "2026.11.26-1") -> dict[str, Route | Handler]:
    """What a healthy service answers on the health paths the example target names."""
    return {
        "/healthz": Route(200, "ok"),
        "/readyz": Route(200, "ready"),
        "/health": Route(
            200,
            {
                "status": "pass",
                "version": "1.4.0",
                "releaseId": release,
                "checks": {"db:responseTime": [{"status": "pass", "componentType": "datastore"}]},
            },
            content_type="application/health+json",
        ),
        "/version": Route(200, {"version": "1.4.0", "releaseId": release}),
    }
