"""The edge of the service: one pure-ASGI middleware that every HTTP request passes through.

In order, for every HTTP request:

1. header size: total request header bytes over ``max_header_bytes`` -> 431;
2. body size: ``Content-Length`` over ``max_body_bytes`` -> 413 up front; otherwise the body is read
   (counting, so a chunked body cannot sneak past) before the app sees it -> 413 when it overflows;
3. on ``/api`` only: a slot of the in-flight budget (all taken -> 503, like an exhausted connection
   pool; see metrics.py), held until the answer is sent; the delay of fault slow-api; then the
   per-IP bucket, then the login bucket (log-in; gone under fault no-endpoint-rate-limit) or the
   bearer token (everything else, 401) and the per-user bucket -> 429; then fault error-burst;
   then, for a request let through, the CPU that fault cpu-hog burns;
4. on every answer: security headers, RateLimit fields (``/api``), and the request metrics by
   route template and status, plus the response body bytes sent.

One middleware rather than a stack of them, so the order above is visible in one place.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Any

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from releasegate.reference.auth import ANONYMOUS, Principal, TokenError
from releasegate.reference.ratelimit import Verdict, header_fields
from releasegate.reference.service import Service

LOGIN_PATH = "/api/v1/auth/login"
PRINCIPAL = "releasegate.principal"  # scope key carrying the authenticated Principal to the routes
UNMATCHED = "<unmatched>"  # route label for paths no route knows: keeps metric cardinality bounded

# Fault cpu-hog: CPU burnt per /api request let through. Busy work, never a sleep: the fault is
# about cores per conversation (infra.capacity), not latency. It runs on a worker thread with the
# GIL released, so the event loop keeps serving and the answer is late only by the burn itself
# (~30 ms): the load thresholds hold while the CPU used per conversation grows ~10x.
CPU_HOG_S = 0.030
CPU_HOG_WALL_CAP_S = 1.0  # the loop's bound when the thread is starved of CPU (a busy host)
_BURN_BLOCK = bytes(range(256)) * 256  # 64 KiB: hashlib releases the GIL for inputs over 2 KiB

HSTS = "max-age=31536000; includeSubDomains"
SHORT_HSTS = "max-age=86400; includeSubDomains"
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),  # every answer of this service is per-user, dynamic data
)


class _BodyTooLarge(Exception):
    pass


def problem(status: int, title: str, detail: str, headers: list[tuple[str, str]] | None = None) -> tuple[int, list[tuple[str, str]], bytes]:
    """An RFC 9457 problem document as (status, headers, body)."""
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail}).encode()
    return status, [("Content-Type", "application/problem+json"), *(headers or [])], body


class Edge:
    """Limits, authentication, faults, security headers and metrics for one service instance."""

    def __init__(self, app: ASGIApp, service: Service, routes: list[BaseRoute]) -> None:
        self.app = app
        self.service = service
        self.routes = routes
        settings = service.settings
        self._headers: list[tuple[bytes, bytes]] = []
        if not settings.has("no-hsts"):
            self._headers.append((b"strict-transport-security", (SHORT_HSTS if settings.has("short-hsts") else HSTS).encode()))
        if not settings.has("no-security-headers"):
            self._headers.extend((name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS)

    def route_template(self, scope: Scope) -> str:
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return str(getattr(route, "path", UNMATCHED))
        return UNMATCHED

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()  # real time: the latency histogram measures the service, not a test clock
        route = self.route_template(scope)
        extra: list[tuple[bytes, bytes]] = list(self._headers)
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                present = {name.lower() for name, _ in message.get("headers", [])}
                message = {**message, "headers": [*message.get("headers", []), *((k, v) for k, v in extra if k not in present)]}
            elif message["type"] == "http.response.body":
                self.service.metrics.response_bytes.inc(len(message.get("body", b"")))
            await send(message)

        try:
            await self._handle(scope, receive, send_with_headers, extra)
        finally:
            labels = (scope["method"], route, str(status))
            self.service.metrics.requests.labels(*labels).inc()
            self.service.metrics.latency.labels(*labels).observe(time.perf_counter() - started)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, extra: list[tuple[bytes, bytes]]) -> None:
        settings = self.service.settings
        header_bytes = sum(len(name) + len(value) + 4 for name, value in scope["headers"])  # "name: value\r\n"
        if header_bytes > settings.max_header_bytes:
            detail = f"request headers are {header_bytes} bytes, the limit is {settings.max_header_bytes}"
            await _answer(send, problem(431, "Request Header Fields Too Large", detail))
            return

        if not settings.has("no-body-limit"):
            try:
                receive = await self._bounded_body(scope, receive, settings.max_body_bytes)
            except _BodyTooLarge:
                detail = f"request bodies are limited to {settings.max_body_bytes} bytes"
                await _answer(send, problem(413, "Content Too Large", detail, [("Connection", "close")]))
                return

        if not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        metrics = self.service.metrics
        if not metrics.slots_free:
            detail = f"{metrics.max_in_flight} API requests are in flight already, the most this instance serves at once"
            await _answer(send, problem(503, "Service Unavailable", detail, [("Retry-After", "1")]))
            return
        with metrics.api_slot():
            answer = await self._api_gate(scope, extra)
            if answer is not None:
                await _answer(send, answer)
                return
            if settings.has("cpu-hog"):
                await asyncio.to_thread(burn_cpu, CPU_HOG_S, wall_cap_s=CPU_HOG_WALL_CAP_S)
            await self.app(scope, receive, send)

    async def _bounded_body(self, scope: Scope, receive: Receive, limit: int) -> Receive:
        """Read the whole body up front, refusing more than ``limit`` bytes; replay it to the app."""
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0  # the server rejects a malformed length itself
                if declared > limit:
                    raise _BodyTooLarge
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                pending: Message | None = message  # a disconnect: hand it on as it is
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                pending = None
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return pending if pending is not None else {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay

    async def _api_gate(self, scope: Scope, extra: list[tuple[bytes, bytes]]) -> tuple[int, list[tuple[str, str]], bytes] | None:
        """Rate limits and authentication of an /api request: an answer to send instead, or None to go on."""
        service, settings = self.service, self.service.settings
        if settings.has("slow-api"):
            await asyncio.sleep(settings.slow_api_ms / 1000)
        client = scope.get("client")
        ip = client[0] if client else "unknown"
        verdicts: list[Verdict] = []

        def refused(verdict: Verdict) -> tuple[int, list[tuple[str, str]], bytes]:
            detail = f"rate limit {verdict.policy!r} exceeded: retry in {verdict.retry_after_s} s"
            return problem(429, "Too Many Requests", detail)

        def take(verdict: Verdict) -> bool:
            verdicts.append(verdict)
            extra[:] = [(k, v) for k, v in extra if not k.startswith(b"ratelimit") and k != b"retry-after"]
            extra.extend((k.lower().encode(), v.encode()) for k, v in header_fields(verdicts))
            return verdict.allowed

        if not settings.has("no-rate-limit") and not take(service.ip_limiter.take(ip)):
            return refused(verdicts[-1])
        if scope["path"] == LOGIN_PATH:
            # Fault no-endpoint-rate-limit: log-in keeps only the per-IP limit shared with the rest of /api.
            if not settings.has("no-endpoint-rate-limit") and not take(service.login_limiter.take(ip)):
                return refused(verdicts[-1])
            return None  # log-in needs no token, and error-burst spares it (the gate must be able to log in)

        authorization = _header(scope, b"authorization")
        try:
            principal = service.auth.from_authorization(authorization)
        except TokenError as exc:
            if not settings.has("auth-bypass"):
                return problem(401, "Unauthorized", str(exc), [("WWW-Authenticate", exc.www_authenticate())])
            principal = Principal(ANONYMOUS, anonymous=True)
        scope[PRINCIPAL] = principal
        if not principal.anonymous and not settings.has("no-user-rate-limit") and not take(service.user_limiter.take(principal.username)):
            return refused(verdicts[-1])

        if settings.has("error-burst"):
            # Deterministic: the first round(ratio * 10) of every ten API requests fail.
            if next(service.api_requests) % 10 < round(settings.error_burst_ratio * 10):
                return problem(500, "Internal Server Error", "injected failure (fault error-burst)")
        return None


def burn_cpu(seconds: float, *, wall_cap_s: float) -> float:
    """Busy-work on this thread until it has used ``seconds`` of CPU, or ``wall_cap_s`` passed; the CPU used.

    Thread CPU time, not process time: other threads' work (other instances in the same process,
    the test runner) must not shorten the burn. The work is SHA-256 over 64 KiB blocks, during
    which hashlib releases the GIL: the process really spends the CPU, other threads still run.
    """
    cpu0, deadline = time.thread_time(), time.perf_counter() + wall_cap_s
    while time.thread_time() - cpu0 < seconds and time.perf_counter() < deadline:
        hashlib.sha256(_BURN_BLOCK).digest()
    return time.thread_time() - cpu0


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


async def _answer(send: Send, answer: tuple[int, list[tuple[str, str]], bytes]) -> None:
    status, headers, body = answer
    raw: list[Any] = [(k.lower().encode(), v.encode("latin-1")) for k, v in headers]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
