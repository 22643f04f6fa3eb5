"""The reference service's runner (releasegate.reference.server), over real loopback sockets.

A tiny stand-in ASGI app replaces the service's own app: these tests are about the runner
(ports, TLS, redirect, lifecycle), not about what the app answers.
"""

from __future__ import annotations

import json
import socket
import ssl
import sys
import threading
import time
import types
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from releasegate.reference import server
from releasegate.reference.server import Message, Receive, Scope, Send
from releasegate.reference.settings import ServiceSettings

TIMEOUT = httpx.Timeout(5.0)


class StandInApp:
    """Answers /healthz 'ok', echoes method, path, query and Host as JSON, echoes WebSocket messages; counts lifespan events."""

    def __init__(self, *, fail_startup: bool = False) -> None:
        self.fail_startup = fail_startup
        self.events: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                self.events.append(message["type"])
                if message["type"] == "lifespan.startup":
                    if self.fail_startup:
                        raise RuntimeError("database file is locked (stand-in startup failure)")
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif scope["type"] == "http":
            await self._http(scope, send)
        elif scope["type"] == "websocket":
            await self._websocket(receive, send)

    async def _http(self, scope: Scope, send: Send) -> None:
        if scope["path"] == "/healthz":
            body = b"ok"
        else:
            headers = {k.decode(): v.decode() for k, v in scope["headers"]}
            body = json.dumps(
                {"method": scope["method"], "path": scope["path"], "query": scope["query_string"].decode(), "host": headers.get("host")}
            ).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def _websocket(self, receive: Receive, send: Send) -> None:
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message: Message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "bytes": message.get("bytes"), "text": message.get("text")})


def trust(service: server.RunningService) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(service.ca_path))


@pytest.fixture
def started(tmp_path: Path) -> Iterator[tuple[server.RunningService, StandInApp]]:
    app = StandInApp()
    with server.start(ServiceSettings(data_dir=tmp_path), app=app) as service:
        yield service, app


def start(tmp_path: Path, *faults: str) -> server.RunningService:
    return server.start(ServiceSettings(data_dir=tmp_path, faults=frozenset(faults)), app=StandInApp())


def listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        return probe.connect_ex((host, port)) == 0


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


# --- URLs and TLS ---------------------------------------------------------------------------------


def test_start_reports_urls_and_serves_https_with_verified_certificate(started: tuple[server.RunningService, StandInApp]) -> None:
    service, app = started
    assert service.base_url == f"https://localhost:{service.port}"
    assert service.ws_url == f"wss://localhost:{service.port}/ws/sync"
    assert service.http_url == f"http://localhost:{service.http_port}"
    assert service.port != service.http_port
    assert service.ca_path == service.settings.data_dir / "tls" / "ca.pem"
    assert app.events == ["lifespan.startup"]  # started once, although two servers run it

    with httpx.Client(verify=trust(service), timeout=TIMEOUT) as client:
        answer = client.get(service.base_url + "/healthz")
        echo = client.get(service.base_url + "/echo").json()
    assert (answer.status_code, answer.text) == (200, "ok")
    assert "server" not in answer.headers and "date" in answer.headers  # no server banner
    assert echo["host"] == f"localhost:{service.port}"


def test_hostname_verification_passes_for_every_loopback_name(started: tuple[server.RunningService, StandInApp]) -> None:
    service, _ = started
    names = ["localhost", "127.0.0.1"] + (["[::1]"] if ipv6_loopback() else [])
    with httpx.Client(verify=trust(service), timeout=TIMEOUT) as client:
        for name in names:
            assert client.get(f"https://{name}:{service.port}/healthz").status_code == 200, name


def test_websocket_over_tls_is_not_capped_by_the_server(started: tuple[server.RunningService, StandInApp]) -> None:
    # The app owns the message size limit (fault ws-no-size-limit turns it off), so uvicorn must
    # carry a message far above the app's 64 KiB cap.
    service, _ = started
    big = b"x" * (1024 * 1024)
    with ws_connect(service.ws_url, ssl=trust(service), open_timeout=5, close_timeout=2) as ws:
        ws.send(big)
        assert ws.recv(timeout=5) == big


def tls_connect(port: int, context: ssl.SSLContext, host: str = "127.0.0.1") -> str | None:
    with socket.create_connection((host, port), timeout=5) as raw, context.wrap_socket(raw, server_hostname="localhost") as conn:
        return conn.version()


def pinned(service: server.RunningService, version: ssl.TLSVersion) -> ssl.SSLContext:
    context = trust(service)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1 are deprecated: that is what is tested
        context.minimum_version = context.maximum_version = version
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # Debian's OpenSSL 3 needs level 0 for TLS 1.0/1.1
    return context


def test_tls_versions_over_tcp_healthy(started: tuple[server.RunningService, StandInApp]) -> None:
    service, _ = started
    assert tls_connect(service.port, pinned(service, ssl.TLSVersion.TLSv1_2)) == "TLSv1.2"
    assert tls_connect(service.port, pinned(service, ssl.TLSVersion.TLSv1_3)) == "TLSv1.3"
    for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        with pytest.raises(ssl.SSLError):
            tls_connect(service.port, pinned(service, old))
    cbc = trust(service)
    cbc.maximum_version = ssl.TLSVersion.TLSv1_2
    cbc.set_ciphers("ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA")
    with pytest.raises(ssl.SSLError):
        tls_connect(service.port, cbc)


def test_tls_legacy_accepts_tls10_over_tcp(tmp_path: Path) -> None:
    with start(tmp_path, "tls-legacy") as service:
        assert tls_connect(service.port, pinned(service, ssl.TLSVersion.TLSv1)) == "TLSv1"
        assert tls_connect(service.port, pinned(service, ssl.TLSVersion.TLSv1_1)) == "TLSv1.1"
        assert tls_connect(service.port, pinned(service, ssl.TLSVersion.TLSv1_3)) == "TLSv1.3"


def test_wrong_host_certificate_fails_verification_by_name_and_by_address(tmp_path: Path) -> None:
    with start(tmp_path, "cert-wrong-host") as service, httpx.Client(verify=trust(service), timeout=TIMEOUT) as client:
        for url in (service.base_url, f"https://127.0.0.1:{service.port}"):
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                client.get(url + "/healthz")


def test_expired_certificate_fails_verification(tmp_path: Path) -> None:
    with start(tmp_path, "cert-expired") as service, httpx.Client(verify=trust(service), timeout=TIMEOUT) as client:
        with pytest.raises(httpx.ConnectError, match="certificate has expired"):
            client.get(service.base_url + "/healthz")


# --- plain HTTP -----------------------------------------------------------------------------------


def test_plain_port_redirects_to_the_same_path_and_query_on_https(started: tuple[server.RunningService, StandInApp]) -> None:
    service, _ = started
    with httpx.Client(timeout=TIMEOUT) as client:
        for method in ("GET", "POST", "HEAD"):
            answer = client.request(method, service.http_url + "/api/v1/x%20y?a=1&b=two", content=b"body" if method == "POST" else None)
            assert answer.status_code == 308, method
            assert answer.headers["location"] == f"https://localhost:{service.port}/api/v1/x%20y?a=1&b=two"
            assert answer.content == b""
        assert client.get(service.http_url + "/").headers["location"] == service.base_url + "/"
        # The Host header cannot steer the redirect elsewhere.
        assert client.get(service.http_url + "/p", headers={"Host": "evil.example"}).headers["location"] == service.base_url + "/p"


def test_plain_port_serves_the_app_under_http_no_redirect(tmp_path: Path) -> None:
    with start(tmp_path, "http-no-redirect") as service, httpx.Client(timeout=TIMEOUT) as client:
        answer = client.get(service.http_url + "/echo?q=1")
        assert answer.status_code == 200
        assert answer.json() == {"method": "GET", "path": "/echo", "query": "q=1", "host": f"localhost:{service.http_port}"}
        assert client.get(service.http_url + "/healthz").text == "ok"


# --- lifecycle ------------------------------------------------------------------------------------


def test_stop_leaves_no_thread_or_listening_port(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    app = StandInApp()
    service = server.start(ServiceSettings(data_dir=tmp_path), app=app)
    hosts = ["127.0.0.1"] + (["::1"] if ipv6_loopback() else [])
    assert all(listening(port, host) for port in (service.port, service.http_port) for host in hosts)

    service.stop()
    service.stop()  # idempotent

    assert app.events == ["lifespan.startup", "lifespan.shutdown"]
    assert not any(listening(port, host) for port in (service.port, service.http_port) for host in hosts)
    assert set(threading.enumerate()) <= before
    with socket.socket() as again:  # the port is really free
        again.bind(("127.0.0.1", service.port))


def test_stop_does_not_wait_for_an_open_websocket(tmp_path: Path) -> None:
    service = start(tmp_path)
    with ws_connect(service.ws_url, ssl=trust(service), open_timeout=5, close_timeout=2) as ws:
        began = time.monotonic()
        service.stop()
        assert time.monotonic() - began < server.GRACEFUL_SHUTDOWN_S + 2
        with pytest.raises(Exception):  # noqa: B017 - any close is fine: the server went away
            ws.recv(timeout=2)


def test_two_services_run_side_by_side(tmp_path: Path) -> None:
    # Given two services started concurrently from two threads
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda name: start(tmp_path / name), ["a", "b"])
    try:
        # Then each has its own ports and CA, and both answer
        assert len({first.port, first.http_port, second.port, second.http_port}) == 4
        assert first.ca_path.read_bytes() != second.ca_path.read_bytes()
        for service in (first, second):
            with httpx.Client(verify=trust(service), timeout=TIMEOUT) as client:
                assert client.get(service.base_url + "/healthz").status_code == 200
        # When one stops, the other still answers
        first.stop()
        with httpx.Client(verify=trust(second), timeout=TIMEOUT) as client:
            assert client.get(second.base_url + "/healthz").status_code == 200
    finally:
        first.stop()
        second.stop()


def test_startup_failure_raises_with_the_apps_error_and_cleans_up(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    began = time.monotonic()
    with pytest.raises(server.ServiceStartError, match="database file is locked"):
        server.start(ServiceSettings(data_dir=tmp_path), app=StandInApp(fail_startup=True), timeout_s=10)
    assert time.monotonic() - began < 5  # reported at once, not after the timeout
    assert set(threading.enumerate()) <= before


def test_without_an_app_argument_the_service_app_is_created_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a stand-in for releasegate.reference.app (the runner imports it only when starting)
    made: list[ServiceSettings] = []

    def create_app(settings: ServiceSettings) -> StandInApp:
        made.append(settings)
        return StandInApp()

    monkeypatch.setitem(sys.modules, "releasegate.reference.app", types.SimpleNamespace(create_app=create_app))
    settings = ServiceSettings(data_dir=tmp_path)
    with server.start(settings) as service, httpx.Client(verify=trust(service), timeout=TIMEOUT) as client:
        assert client.get(service.base_url + "/healthz").text == "ok"
    assert made == [settings]


def test_listening_sockets_say_tcp_so_answers_are_not_held_by_nagle(started: tuple[server.RunningService, StandInApp]) -> None:
    # asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, and accepted sockets
    # inherit it from the listener; with proto 0, every answer's last write waited ~40 ms for the
    # client's delayed ACK (measured: health answers 50 ms on loopback, 10 ms after the fix).
    service, _ = started
    assert service._sockets and all(sock.proto == socket.IPPROTO_TCP for sock in service._sockets)
