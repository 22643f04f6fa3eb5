"""http.get against real loopback servers: bodies, caps, slow and broken peers, name errors, TLS, evidence.

The ``loopback`` helper serves well-formed HTTP; the hostile peers it cannot play (headers dripped a
byte at a time, endless bodies, lying Content-Length, resets, TLS) are small raw-socket servers here.
"""

from __future__ import annotations

import gzip
import json
import socket
import ssl
import struct
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from loopback import Route, refused_port, serve
from releasegate._exceptions import ProbeError, ProbeTimeout
from releasegate.probes import http
from releasegate.probes.http import EVIDENCE_BODY_CHARS, HttpObservation, HttpSettings

# Timings are asserted loosely: a probe must end within its timeout plus this slack.
SLACK_S = 2.0
# No raw-server behaviour runs longer than this, whatever the client does.
MAX_BEHAVIOUR_S = 10.0

Behaviour = Callable[[socket.socket, threading.Event], None]


def settings(timeout_s: float = 2.0, max_body_bytes: int = 64 * 1024, **kwargs: object) -> HttpSettings:
    return HttpSettings(timeout_s=timeout_s, max_body_bytes=max_body_bytes, **kwargs)


@contextmanager
def raw_server(behaviour: Behaviour, *, tls: ssl.SSLContext | None = None) -> Iterator[int]:
    """A TCP (or TLS) server on 127.0.0.1 that reads one request head, then runs ``behaviour``; yields the port."""
    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    handlers: list[threading.Thread] = []

    def handle(conn: socket.socket) -> None:
        try:
            conn.settimeout(2.0)
            if tls is not None:
                conn = tls.wrap_socket(conn, server_side=True)
            _read_head(conn)
            behaviour(conn, stop)
        except OSError:
            pass  # the client gave up, timed out or refused our certificate: what these tests are about
        finally:
            conn.close()

    def accept_loop() -> None:
        deadline = time.monotonic() + 3 * MAX_BEHAVIOUR_S
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=handle, args=(conn,), daemon=True)
            handlers.append(thread)
            thread.start()

    acceptor = threading.Thread(target=accept_loop, daemon=True)
    acceptor.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        acceptor.join(timeout=2)
        listener.close()
        for thread in handlers:
            thread.join(timeout=2)


def _read_head(conn: socket.socket) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head and len(head) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            break
        head += chunk
    return head


def _for_a_while(stop: threading.Event) -> Iterator[int]:
    """Bounded loop counter: ends on stop, after MAX_BEHAVIOUR_S, or after 100,000 rounds."""
    deadline = time.monotonic() + MAX_BEHAVIOUR_S
    for round_ in range(100_000):
        if stop.is_set() or time.monotonic() > deadline:
            return
        yield round_


def drip(data: bytes, every_s: float) -> Behaviour:
    def behaviour(conn: socket.socket, stop: threading.Event) -> None:
        for index in _for_a_while(stop):
            if index >= len(data):
                return
            conn.sendall(data[index : index + 1])
            stop.wait(every_s)

    return behaviour


def endless_body(*, chunked: bool) -> Behaviour:
    def behaviour(conn: socket.socket, stop: threading.Event) -> None:
        framing = b"Transfer-Encoding: chunked\r\n" if chunked else b"Connection: close\r\n"
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n" + framing + b"\r\n")
        block = b"x" * 16384
        for _ in _for_a_while(stop):
            conn.sendall(b"4000\r\n" + block + b"\r\n" if chunked else block)

    return behaviour


def lying_length(body: bytes, *, then_close: bool) -> Behaviour:
    """Announce 5 GB, send ``body``, then close or keep the connection open."""

    def behaviour(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 5000000000\r\n\r\n" + body)
        if not then_close:
            stop.wait(MAX_BEHAVIOUR_S)

    return behaviour


def reset(conn: socket.socket, stop: threading.Event) -> None:
    # SO_LINGER with a zero timeout turns close() into a TCP RST.
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def answer(body: bytes = b"hello over tls", content_type: bytes = b"text/plain") -> Behaviour:
    def behaviour(conn: socket.socket, stop: threading.Event) -> None:
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: "
            + content_type
            + b"\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\nConnection: close\r\n\r\n"
        )
        conn.sendall(head + body)

    return behaviour


# --- well-formed answers -------------------------------------------------------------------------


def test_reads_a_200_body() -> None:
    with serve({"/hello": Route(200, "hello, world", headers={"X-Trace": "abc"})}) as server:
        observation = http.get(server.url("/hello"), settings())
    assert observation.status == 200
    assert observation.reason == "OK"
    assert observation.body == b"hello, world"
    assert observation.truncated is False
    assert observation.content_type == "text/plain"
    assert observation.headers["x-trace"] == "abc"
    assert 0 < observation.latency_ms < 2000


def test_sends_the_configured_headers_and_follows_no_redirect() -> None:
    with serve({"/old": Route(302, "", headers={"Location": "/new"}), "/new": Route(200, "moved")}) as server:
        observation = http.get(server.url("/old"), settings(headers={"Authorization": "Bearer sekret"}))
        requests = list(server.requests)
    assert observation.status == 302
    assert observation.headers["location"] == "/new"
    assert [path for path, _ in requests] == ["/old"]
    assert requests[0][1]["authorization"] == "Bearer sekret"


def test_body_exactly_at_the_cap_is_not_truncated() -> None:
    with serve({"/b": Route(200, b"a" * 1000)}) as server:
        observation = http.get(server.url("/b"), settings(max_body_bytes=1000))
    assert observation.body == b"a" * 1000
    assert observation.truncated is False


def test_body_over_the_cap_keeps_only_the_cap() -> None:
    with serve({"/big": Route(200, b"b" * 300_000)}) as server:
        observation = http.get(server.url("/big"), settings(max_body_bytes=1000))
    assert observation.truncated is True
    assert observation.body == b"b" * 1000


@pytest.mark.parametrize("chunked", [False, True], ids=["close-delimited", "chunked"])
def test_endless_body_is_cut_at_the_cap_promptly(chunked: bool) -> None:
    # Given a server that streams a body forever, when the cap is 64 KiB,
    # then the probe returns soon with exactly 64 KiB and truncated=True.
    with raw_server(endless_body(chunked=chunked)) as port:
        started = time.monotonic()
        observation = http.get(f"http://127.0.0.1:{port}/", settings(timeout_s=5, max_body_bytes=64 * 1024))
        elapsed = time.monotonic() - started
    assert observation.truncated is True
    assert len(observation.body) == 64 * 1024
    assert elapsed < 5


def test_five_gigabyte_content_length_with_a_longer_than_cap_body_is_truncated() -> None:
    with raw_server(lying_length(b"z" * 100_000, then_close=False)) as port:
        observation = http.get(f"http://127.0.0.1:{port}/", settings(timeout_s=3, max_body_bytes=64 * 1024))
    assert observation.truncated is True
    assert len(observation.body) == 64 * 1024


def test_five_gigabyte_content_length_then_close_is_a_probe_error() -> None:
    with raw_server(lying_length(b"short", then_close=True)) as port:
        with pytest.raises(ProbeError) as caught:
            http.get(f"http://127.0.0.1:{port}/", settings(timeout_s=3))
    assert not isinstance(caught.value, ProbeTimeout)


def test_five_gigabyte_content_length_that_stalls_times_out() -> None:
    with raw_server(lying_length(b"short", then_close=False)) as port:
        started = time.monotonic()
        with pytest.raises(ProbeTimeout):
            http.get(f"http://127.0.0.1:{port}/", settings(timeout_s=0.5))
    assert time.monotonic() - started < 0.5 + SLACK_S


# --- slow, silent and broken peers ---------------------------------------------------------------


def test_headers_dripped_a_byte_at_a_time_time_out_as_a_whole() -> None:
    # Each byte comes well within httpx's per-read timeout; only the overall deadline can stop this.
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Pad: " + b"p" * 200 + b"\r\n\r\nok"
    with raw_server(drip(head, every_s=0.2)) as port:
        started = time.monotonic()
        with pytest.raises(ProbeTimeout) as caught:
            http.get(f"http://127.0.0.1:{port}/", settings(timeout_s=1.0))
        elapsed = time.monotonic() - started
    assert elapsed < 1.0 + SLACK_S
    assert caught.value.url == f"http://127.0.0.1:{port}/"


def test_hanging_route_times_out() -> None:
    with serve({"/hang": Route(200, "late", delay_s=3)}) as server:
        started = time.monotonic()
        with pytest.raises(ProbeTimeout, match="within 0.5 s"):
            http.get(server.url("/hang"), settings(timeout_s=0.5))
        assert time.monotonic() - started < 0.5 + SLACK_S


def test_connection_refused_is_an_error_not_a_timeout() -> None:
    url = f"http://127.0.0.1:{refused_port()}/healthz"
    with pytest.raises(ProbeError, match="cannot connect") as caught:
        http.get(url, settings())
    assert not isinstance(caught.value, ProbeTimeout)
    assert caught.value.url == url


def test_reset_after_the_request_is_an_error() -> None:
    with raw_server(reset) as port:
        with pytest.raises(ProbeError) as caught:
            http.get(f"http://127.0.0.1:{port}/", settings(timeout_s=3))
    assert not isinstance(caught.value, ProbeTimeout)


def test_unresolvable_name_is_an_error_naming_the_host_and_dns() -> None:
    # .invalid is reserved (RFC 6761): resolution fails locally, no network needed.
    with pytest.raises(ProbeError, match=r"^cannot resolve host name no-such-host\.invalid \(DNS\): ") as caught:
        http.get("http://no-such-host.invalid/healthz", settings(timeout_s=5))
    assert not isinstance(caught.value, ProbeTimeout)


def test_a_resolver_failure_is_told_apart_from_a_refused_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a resolver that fails for any name (as in a container with no DNS): the socket error
    # reaches the probe wrapped in httpx.ConnectError, whose own text names neither host nor DNS
    def nxdomain(*_args: object, **_kwargs: object) -> list[object]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", nxdomain)
    with pytest.raises(ProbeError) as caught:
        http.get("https://api.example.test/healthz", settings(timeout_s=2))
    assert str(caught.value) == "cannot resolve host name api.example.test (DNS): Name or service not known"
    assert not isinstance(caught.value, ProbeTimeout)


def test_slow_name_resolution_does_not_outlive_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    # A resolver that answers after seconds (a common misconfiguration) runs in a worker thread
    # that cannot be cancelled; the probe must still give up at its own deadline.
    release = threading.Event()

    def slow_getaddrinfo(*args: object, **kwargs: object) -> list[object]:
        release.wait(5)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", slow_getaddrinfo)
    started = time.monotonic()
    try:
        with pytest.raises(ProbeTimeout):
            http.get("http://slow-dns.invalid/", settings(timeout_s=0.3))
        assert time.monotonic() - started < 0.3 + 1.0
    finally:
        release.set()


# --- TLS -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    """A server context with a certificate for 127.0.0.1 from a private CA, and that CA's PEM file."""
    import trustme

    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    ca_file = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return server_context, ca_file


def test_https_verifies_with_the_private_ca(tls_pair: tuple[ssl.SSLContext, Path]) -> None:
    server_context, ca_file = tls_pair
    with raw_server(answer(), tls=server_context) as port:
        observation = http.get(f"https://127.0.0.1:{port}/", settings(verify=http.ssl_context(ca_file)))
    assert observation.status == 200
    assert observation.body == b"hello over tls"


@pytest.mark.parametrize("verify", ["system", "httpx-default"])
def test_https_without_the_private_ca_fails_verification(tls_pair: tuple[ssl.SSLContext, Path], verify: str) -> None:
    server_context, _ = tls_pair
    context: ssl.SSLContext | bool = http.ssl_context(None) if verify == "system" else True
    with raw_server(answer(), tls=server_context) as port:
        with pytest.raises(ProbeError, match="(?i)certificate verif") as caught:
            http.get(f"https://127.0.0.1:{port}/", settings(verify=context))
    assert not isinstance(caught.value, ProbeTimeout)


def test_unreadable_ca_bundle_is_a_probe_error(tmp_path: Path) -> None:
    with pytest.raises(ProbeError, match="cannot load CA bundle"):
        http.ssl_context(tmp_path / "missing.pem")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ProbeError, match="cannot load CA bundle"):
        http.ssl_context(garbage)


# --- evidence ------------------------------------------------------------------------------------


def test_evidence_redacts_credentials_and_bounds_the_body() -> None:
    secrets = {"Set-Cookie": "session=s3cr3t-cookie", "Authorization": "Bearer s3cr3t-auth", "X-Api-Key": "s3cr3t-key"}
    with serve({"/e": Route(200, "y" * 10_000, headers=secrets)}) as server:
        observation = http.get(server.url("/e"), settings(headers={"Cookie": "id=s3cr3t-request"}))
    evidence = observation.evidence()
    text = json.dumps(evidence)  # JSON-serialisable, and nothing secret inside
    assert "s3cr3t" not in text
    assert evidence["headers"]["set-cookie"] == "[redacted]"
    assert evidence["headers"]["authorization"] == "[redacted]"
    assert evidence["headers"]["x-api-key"] == "[redacted]"
    assert evidence["headers"]["content-type"].startswith("text/plain")
    assert len(evidence["body_excerpt"]) == EVIDENCE_BODY_CHARS
    assert evidence["body_truncated"] is True
    assert evidence["status"] == 200


def test_evidence_redacts_whatever_the_header_case() -> None:
    observation = HttpObservation(
        url="http://x.test/",
        status=200,
        reason="OK",
        headers={"Cookie": "a=secret", "SET-COOKIE": "b=secret", "Content-Type": "text/plain"},
        body=b"\xff\xfe not utf-8",
        truncated=False,
        latency_ms=1.0,
    )
    evidence = observation.evidence()
    assert "secret" not in json.dumps(evidence)
    assert evidence["body_truncated"] is False
    assert "not utf-8" in evidence["body_excerpt"]


def test_asks_for_an_uncompressed_answer_unless_told_otherwise() -> None:
    # The cap applies after decompression; an uncompressed answer keeps a small cap meaningful.
    with serve({"/h": Route(200, "ok")}) as server:
        http.get(server.url("/h"), settings())
        http.get(server.url("/h"), settings(headers={"accept-encoding": "gzip"}))
        sent = [headers.get("accept-encoding") for _, headers in server.requests]
    assert sent == ["identity", "gzip"]


def test_cause_of_a_cyclic_exception_chain_terminates() -> None:
    outer, inner = RuntimeError("outer"), OSError("inner reason")
    outer.__cause__, inner.__cause__ = inner, outer
    assert http._cause(outer) == "inner reason (OSError)"


def test_a_gzip_bomb_is_inflated_only_up_to_the_cap() -> None:
    # Given a server that compresses 64 MiB of zeros into ~64 KiB although identity was asked for
    bomb = gzip.compress(b"0" * (64 * 1024 * 1024), compresslevel=9)
    with serve({"/bomb": Route(200, bomb, content_type="application/json", headers={"Content-Encoding": "gzip"})}) as server:
        # When the probe reads it with a 64 KiB cap
        tracemalloc.start()
        try:
            observation = http.get(server.url("/bomb"), settings(max_body_bytes=64 * 1024))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    # Then it keeps exactly the cap, says there was more, and never held the inflated body
    assert observation.truncated and len(observation.body) == 64 * 1024
    assert peak < 8 * 1024 * 1024


def test_a_gzip_answer_within_the_cap_is_decoded() -> None:
    document = {"status": "pass"}
    with serve(
        {
            "/h": Route(
                200, gzip.compress(json.dumps(document).encode()), content_type="application/json", headers={"Content-Encoding": "gzip"}
            )
        }
    ) as server:
        observation = http.get(server.url("/h"), settings())
    assert json.loads(observation.body) == document and not observation.truncated


def test_an_unknown_content_encoding_is_an_error_not_garbage() -> None:
    with (
        serve({"/h": Route(200, b"\x00\x01", headers={"Content-Encoding": "br"})}) as server,
        pytest.raises(ProbeError, match="Content-Encoding"),
    ):
        http.get(server.url("/h"), settings())
