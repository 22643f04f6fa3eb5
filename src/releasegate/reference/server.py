"""Run the reference service on loopback: HTTPS (API + WebSocket) and a plain-HTTP port.

    with start(ServiceSettings(data_dir=tmp)) as service:
        httpx.get(service.base_url + "/healthz", verify=ssl.create_default_context(cafile=service.ca_path))

Each service runs two uvicorn servers (HTTPS with the app, plain HTTP with a 308 redirect to
HTTPS and ws:// upgrades refused; see :func:`plain_http_app` for the faults ``http-no-redirect``
and ``ws-plaintext``) on one event loop in one background
thread, so that many services can run in one process side by side (the fault matrix, a
baseline and a canary). The listening sockets are bound here, before uvicorn starts, on
127.0.0.1 port 0 and on [::1] with the same port when IPv6 loopback exists, so that
``localhost`` works whichever address a client tries first.

:func:`start` returns only once a real TLS handshake and ``GET /healthz`` succeeded, and raises
:class:`ServiceStartError` with uvicorn's own startup error otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, cast

import uvicorn

from releasegate._exceptions import ReleasegateError
from releasegate.reference import tls
from releasegate.reference.settings import ServiceSettings

__all__ = ["ASGIApp", "RunningService", "ServiceStartError", "ServiceStopError", "start"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# uvicorn's own WebSocket cap must sit far above the app's (settings.ws_max_message_bytes): the
# app enforces the size limit and closes with 1009 itself, and fault ws-no-size-limit must be
# able to switch that off. 16 MiB still bounds a hostile client.
WS_MAX_SIZE = 16 * 1024 * 1024
GRACEFUL_SHUTDOWN_S = 3.0  # open WebSocket or keep-alive connections must not hold stop() for long
PROBE_TIMEOUT_S = 2.0
_LOGGERS = ("uvicorn.error", "uvicorn.asgi")


class ServiceStartError(ReleasegateError):
    """The reference service did not come up: the message carries uvicorn's startup error."""


class ServiceStopError(ReleasegateError):
    """The reference service's thread did not finish within the stop timeout."""


class _ThreadLogCapture(logging.Handler):
    """Keeps uvicorn's warnings and errors logged from one service's thread.

    uvicorn logs to process-wide loggers; filtering on the thread keeps the messages of services
    running side by side apart, so a start error shows this service's cause and no other.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread_name = ""
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.threadName == self.thread_name and len(self.lines) < 50:
            self.lines.append(self.format(record))


def redirect_app(https_origin: str) -> ASGIApp:
    """The plain-HTTP port's app: 308 to the same path and query on ``https_origin``, no body.

    308 (not 301) keeps the method and body of a POST. The origin is the service's own, never
    the request's Host header, so the redirect cannot be pointed at another host.
    """
    origin = https_origin.encode("ascii")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            target = scope.get("raw_path") or scope["path"].encode("utf-8")
            if scope.get("query_string"):
                target += b"?" + scope["query_string"]
            headers = [(b"location", origin + target), (b"content-length", b"0")]
            await send({"type": "http.response.start", "status": 308, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # ws:// is refused (uvicorn answers 403)

    return app


def plain_http_app(https_origin: str, app: ASGIApp, *, serve_http: bool, serve_websocket: bool) -> ASGIApp:
    """The plain-HTTP port's app: redirect HTTP and refuse ws:// upgrades, unless a fault says otherwise.

    The two transport faults break one thing each: ``http-no-redirect`` (``serve_http``) serves
    HTTP requests with the real app but still refuses WebSocket upgrades, and ``ws-plaintext``
    (``serve_websocket``) hands ws:// upgrades to the real app (its /ws/sync answers 101 to valid
    credentials) while HTTP requests are still redirected. So security.transport.https and
    security.websocket.tls each fail under their own fault only.
    """
    redirect = redirect_app(https_origin)
    if not serve_http and not serve_websocket:
        return redirect

    async def plain(scope: Scope, receive: Receive, send: Send) -> None:
        served = serve_http if scope["type"] == "http" else serve_websocket if scope["type"] == "websocket" else False
        await (app if served else redirect)(scope, receive, send)

    return plain


def _bind_loopback(host: str) -> list[socket.socket]:
    """A socket on ``host`` port 0, plus [::1] on the same port when ``host`` is IPv4 loopback and IPv6 works.

    Bound but not listening: uvicorn (asyncio) calls listen(), so a client connecting before
    the server is up is refused at once instead of hanging in the backlog.

    proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say so, and
    accepted sockets inherit the listener's proto. Without it Nagle's algorithm holds the last
    small write of every answer until the client's delayed ACK, ~40 ms on loopback.
    """
    v4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        v4.bind((host, 0))
    except OSError:
        v4.close()
        raise
    sockets = [v4]
    if host == "127.0.0.1" and socket.has_ipv6:
        v6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            v6.bind(("::1", v4.getsockname()[1]))
        except OSError:
            v6.close()  # no IPv6 loopback, or the port is taken there: IPv4 alone will do
        else:
            sockets.append(v6)
    return sockets


def _uvicorn_config(
    app: ASGIApp, settings: ServiceSettings, *, ssl_context: ssl.SSLContext | None, lifespan: Literal["on", "off"]
) -> uvicorn.Config:
    config = uvicorn.Config(
        app,
        http="h11",
        # websockets-sansio: uvicorn's "websockets" implementation is built on websockets.legacy,
        # which warns (DeprecationWarning) with websockets >= 14.
        ws="websockets-sansio",
        ws_max_size=WS_MAX_SIZE,
        lifespan=lifespan,
        # No dictConfig: uvicorn's default log config would reconfigure process-wide loggers on
        # every start; warnings reach the root logger, and _ThreadLogCapture keeps start errors.
        log_config=None,
        log_level="warning",
        access_log=False,
        server_header=False,
        date_header=True,
        # The client address is the socket peer: with proxy headers on, any loopback client could
        # choose its rate-limit identity with X-Forwarded-For.
        proxy_headers=False,
        # h11 answers 400 (not 431) above this size, so it sits well above the app's own header
        # limit: the app sees oversized headers and answers 431 itself.
        h11_max_incomplete_event_size=max(4 * settings.max_header_bytes, 65_536),
        timeout_graceful_shutdown=int(GRACEFUL_SHUTDOWN_S),
        ssl_context_factory=(lambda _config, _default: ssl_context) if ssl_context is not None else None,
    )
    return config


def _load_app(settings: ServiceSettings) -> ASGIApp:
    # Imported late: the runner must not depend on the app module at import time (and the app
    # pulls in the whole service).
    module = importlib.import_module("releasegate.reference.app")
    return cast(ASGIApp, module.create_app(settings))


def _probe_healthz(port: int, server_name: str, timeout_s: float) -> str:
    """One real TLS handshake and ``GET /healthz`` on 127.0.0.1; returns the status line.

    The certificate is deliberately not verified: under the certificate faults it is meant to
    fail verification, and this only asks whether the server is up.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    request = f"GET /healthz HTTP/1.1\r\nHost: {server_name}:{port}\r\nConnection: close\r\n\r\n".encode("ascii")
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as conn:
            conn.sendall(request)
            head = b""
            while b"\r\n" not in head and len(head) < 4096:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                head += chunk
    status = head.split(b"\r\n", 1)[0].decode("latin-1")
    if not status.startswith("HTTP/1.1 "):
        raise OSError(f"unexpected answer to GET /healthz: {status!r}")
    return status


@dataclass(eq=False)
class RunningService:
    """A started reference service. ``stop()`` (or leaving the ``with`` block) shuts it down.

    URLs use ``settings.server_name`` (``localhost``), the name in the certificate, so that
    clients verify the certificate the way they would in production.
    """

    settings: ServiceSettings
    base_url: str  # https://localhost:<port>
    ws_url: str  # wss://localhost:<port>/ws/sync
    http_url: str  # http://localhost:<http_port>
    ca_path: Path  # the CA to trust (the target file's tls.ca_bundle)
    port: int
    http_port: int
    tls_paths: tls.TlsPaths
    _thread: threading.Thread = field(repr=False)
    _servers: tuple[uvicorn.Server, ...] = field(repr=False)
    _sockets: tuple[socket.socket, ...] = field(repr=False)
    _capture: _ThreadLogCapture = field(repr=False)
    _stopped: bool = field(default=False, repr=False)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Shut both servers down (lifespan shutdown included), join the thread, free the ports. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        try:
            for server in self._servers:
                server.should_exit = True  # uvicorn polls this flag every 0.1 s on its own loop
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                for server in self._servers:
                    server.force_exit = True  # skip waiting for connections and the lifespan shutdown
                self._thread.join(2.0)
            if self._thread.is_alive():
                raise ServiceStopError(f"reference service on port {self.port} did not stop within {timeout_s:.0f} s")
        finally:
            for sock in self._sockets:
                sock.close()
            _detach(self._capture)

    def __enter__(self) -> RunningService:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def _attach(capture: _ThreadLogCapture) -> None:
    for name in _LOGGERS:
        logging.getLogger(name).addHandler(capture)


def _detach(capture: _ThreadLogCapture) -> None:
    for name in _LOGGERS:
        logging.getLogger(name).removeHandler(capture)
    capture.close()


class _Runner:
    """The body of a service's thread: both servers on one event loop."""

    def __init__(
        self, https: uvicorn.Server, https_sockets: list[socket.socket], http: uvicorn.Server, http_sockets: list[socket.socket]
    ) -> None:
        self.https, self.https_sockets = https, https_sockets
        self.http, self.http_sockets = http, http_sockets
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # uvicorn reports a failed startup with sys.exit(): keep it for start()
            self.error = exc

    async def _main(self) -> None:
        tasks: list[asyncio.Task[None]] = []
        try:
            tasks.append(asyncio.create_task(self.https.serve(sockets=self.https_sockets)))
            await self._started(self.https, tasks[-1])
            tasks.append(asyncio.create_task(self.http.serve(sockets=self.http_sockets)))
            await self._started(self.http, tasks[-1])
            # The plain-HTTP server runs without lifespan (the app must start once), so it
            # shares the lifespan state of the HTTPS server (used under http-no-redirect and ws-plaintext).
            self.http.lifespan.state.update(self.https.lifespan.state)
            self.ready.set()
            await asyncio.gather(*tasks)
        finally:
            for server in (self.https, self.http):
                server.should_exit = True
            await asyncio.gather(*tasks, return_exceptions=True)

    @staticmethod
    async def _started(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
        while not server.started:
            if task.done():
                task.result()  # re-raises uvicorn's SystemExit or error
                raise RuntimeError("uvicorn stopped during startup without an error")
            await asyncio.sleep(0.01)


def start(settings: ServiceSettings, *, timeout_s: float = 15.0, app: ASGIApp | None = None) -> RunningService:
    """Start the reference service and wait until it answers over TLS; the caller must ``stop()`` it.

    ``app`` replaces the service's own app (``releasegate.reference.app.create_app(settings)``),
    for the runner's tests. Raises :class:`ServiceStartError` with uvicorn's startup error when
    the service is not up within ``timeout_s``.
    """
    paths = tls.write_material(settings)
    context = tls.server_ssl_context(settings, paths)
    service_app = app if app is not None else _load_app(settings)

    https_sockets = _bind_loopback(settings.host)
    try:
        http_sockets = _bind_loopback(settings.host)
    except OSError:
        for sock in https_sockets:
            sock.close()
        raise
    port, http_port = https_sockets[0].getsockname()[1], http_sockets[0].getsockname()[1]
    name = settings.server_name
    base_url = f"https://{name}:{port}"
    http_app = plain_http_app(
        base_url, service_app, serve_http=settings.has("http-no-redirect"), serve_websocket=settings.has("ws-plaintext")
    )

    https = uvicorn.Server(_uvicorn_config(service_app, settings, ssl_context=context, lifespan="on"))
    http = uvicorn.Server(_uvicorn_config(http_app, settings, ssl_context=None, lifespan="off"))
    runner = _Runner(https, https_sockets, http, http_sockets)
    thread = threading.Thread(target=runner.run, name=f"releasegate-reference-{port}", daemon=True)
    capture = _ThreadLogCapture()
    service = RunningService(
        settings=settings,
        base_url=base_url,
        ws_url=f"wss://{name}:{port}/ws/sync",
        http_url=f"http://{name}:{http_port}",
        ca_path=paths.ca,
        port=port,
        http_port=http_port,
        tls_paths=paths,
        _thread=thread,
        _servers=(https, http),
        _sockets=(*https_sockets, *http_sockets),
        _capture=capture,
    )
    capture.thread_name = thread.name
    _attach(capture)
    thread.start()

    deadline = time.monotonic() + timeout_s
    problem = f"not up within {timeout_s:g} s"
    try:
        while time.monotonic() < deadline:
            if runner.ready.wait(0.02):
                try:
                    _probe_healthz(port, name, min(PROBE_TIMEOUT_S, max(deadline - time.monotonic(), 0.1)))
                    return service
                except OSError as exc:  # ssl.SSLError included
                    problem = f"GET /healthz over TLS failed: {exc}"
                    time.sleep(0.05)
            elif not thread.is_alive():
                problem = f"uvicorn exited during startup ({runner.error!r})"
                break
    except BaseException:
        service.stop()
        raise
    details = "\n".join(capture.lines)  # read before stop() detaches the handler
    with contextlib.suppress(ServiceStopError):
        service.stop()
    raise ServiceStartError(
        f"reference service on port {port} did not start: {problem}" + (f"\nuvicorn said:\n{details}" if details else "")
    )
