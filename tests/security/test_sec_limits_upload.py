"""The size probe against tiny loopback servers that misbehave on purpose (plain and TLS, port 0)."""

from __future__ import annotations

import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import trustme

from releasegate.probes import limits
from releasegate.probes.http import HttpSettings

LIMIT = 200_000
Behaviour = Callable[[socket.socket, bytes], None]


def read_head(conn: socket.socket) -> tuple[bytes, bytes]:
    """The request head and whatever body bytes came with it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def answer(conn: socket.socket, status: int, reason: str) -> None:
    body = b'{"status": %d}' % status
    conn.sendall(b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (status, reason.encode(), len(body), body))


def declared_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return None


def refuse_on_declared_length(conn: socket.socket, head: bytes) -> None:
    """Judges Content-Length before any body, like the reference; counts a chunked body as it comes."""
    length = declared_length(head)
    if length is not None and length > LIMIT:
        answer(conn, 413, "Content Too Large")
        return
    if b"100-continue" in head.lower():
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    received = 0
    while received <= LIMIT:
        chunk = conn.recv(65536)
        if not chunk:
            return
        received += len(chunk)
    answer(conn, 413, "Content Too Large")  # and close with the rest unread: the peer may see a reset


def ignore_expect_and_refuse_mid_body(conn: socket.socket, head: bytes) -> None:
    """No 100 Continue; reads a little of the body, answers 413 and closes under the client's feet."""
    received = 0
    while received < 10_000:
        chunk = conn.recv(4096)
        if not chunk:
            return
        received += len(chunk)
    answer(conn, 413, "Content Too Large")


def accept_everything(conn: socket.socket, head: bytes) -> None:
    """No limit: reads the whole body (either framing) and judges only its content."""
    if b"100-continue" in head.lower():
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    length = declared_length(head)
    data = b""
    while (len(data) < length) if length is not None else not data.endswith(b"0\r\n\r\n"):
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    answer(conn, 422, "Unprocessable Content")


def reset_without_answer(conn: socket.socket, head: bytes) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST


def header_limit(conn: socket.socket, head: bytes) -> None:
    if len(head) > 1000:
        answer(conn, 431, "Request Header Fields Too Large")
    else:
        answer(conn, 200, "OK")


@contextmanager
def serving(behaviour: Behaviour, tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """A one-thread server on 127.0.0.1 port 0; each connection gets ``behaviour`` after its head is read."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    stop = threading.Event()
    seen: list[bytes] = []

    def loop() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            raw.settimeout(5)
            try:
                conn = tls.wrap_socket(raw, server_side=True) if tls is not None else raw
                with conn:
                    head, _ = read_head(conn)
                    seen.append(head)
                    behaviour(conn, head)
            except OSError:
                pass  # the client went away: that is what some of these tests provoke

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://localhost:{port}/api/v1/conversations"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def tls_pair(ca: trustme.CA) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


def probe(url: str, verify: ssl.SSLContext | bool = True, max_header_bytes: int | None = None) -> list[limits.SizeAttempt]:
    settings = HttpSettings(timeout_s=5.0, max_body_bytes=1 << 20, verify=verify, headers={"Authorization": "Bearer abcdefghijklmnop"})
    return limits.observe_request_size(url, settings, max_body_bytes=LIMIT, max_header_bytes=max_header_bytes)


@pytest.mark.parametrize("use_tls", [False, True])
def test_an_early_413_is_read_even_though_the_server_closes_mid_upload(ca: trustme.CA, use_tls: bool) -> None:
    server_tls, client_tls = tls_pair(ca) if use_tls else (None, None)
    with serving(refuse_on_declared_length, server_tls) as url:
        attempts = probe(url, client_tls or True)
    assert [(a.kind, a.status, a.error) for a in attempts] == [("streamed body", 413, None), ("declared body", 413, None)]
    # Then the declared body was refused before a byte of it went out (Expect: 100-continue)
    assert attempts[1].bytes_sent == 0
    assert all(a.bytes_sent <= LIMIT + 1 for a in attempts)
    assert attempts[0].excerpt == '{"status": 413}'


def test_a_server_ignoring_expect_still_gets_the_body_and_its_413_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "EXPECT_WAIT_S", 0.05)
    with serving(ignore_expect_and_refuse_mid_body) as url:
        attempts = probe(url)
    assert [a.status for a in attempts] == [413, 413], [a.error for a in attempts]


def test_a_server_without_a_limit_reads_it_all_and_the_judge_fails_it(ca: trustme.CA) -> None:
    server_tls, client_tls = tls_pair(ca)
    with serving(accept_everything, server_tls) as url:
        attempts = probe(url, client_tls)
    assert [(a.status, a.bytes_sent) for a in attempts] == [(422, LIMIT + 1), (422, LIMIT + 1)]
    assert limits.judge_request_size(attempts, max_body_bytes=LIMIT, max_header_bytes=None).outcome == "failed"


def test_the_filler_is_one_json_object_of_exactly_the_size() -> None:
    import json

    counter = [0]

    async def collect() -> bytes:
        return b"".join([piece async for piece in limits.filler(LIMIT + 1, counter)])

    body = limits.run(collect())
    assert len(body) == LIMIT + 1 == counter[0]
    assert list(json.loads(body)) == ["releasegate_size_probe"]


def test_a_reset_without_a_status_is_no_verdict() -> None:
    with serving(reset_without_answer) as url:
        attempts = probe(url)
    assert [a.status for a in attempts] == [None, None]
    assert all("without an HTTP status" in (a.error or "") for a in attempts)
    assert limits.judge_request_size(attempts, max_body_bytes=LIMIT, max_header_bytes=None).outcome == "error"


def test_the_credentials_go_on_the_wire_but_never_into_the_evidence() -> None:
    with serving(refuse_on_declared_length) as url:
        attempts = probe(url)
    finding = limits.judge_request_size(attempts, max_body_bytes=LIMIT, max_header_bytes=None)
    assert "abcdefghijklmnop" not in repr(finding)


def test_an_oversized_header_block_gets_431(ca: trustme.CA) -> None:
    server_tls, client_tls = tls_pair(ca)
    with serving(header_limit, server_tls) as url:
        settings = HttpSettings(timeout_s=5.0, max_body_bytes=1 << 20, verify=client_tls)
        attempts = limits.observe_request_size(url, settings, max_body_bytes=10, max_header_bytes=1000)
    # the server answers the bodies before reading them (no 100 Continue), so none of them is sent; the header block gets 431
    assert [(a.kind, a.status, a.bytes_sent) for a in attempts] == [
        ("streamed body", 200, 0),
        ("declared body", 200, 0),
        ("header block", 431, 1001),
    ]


def test_nothing_listening_is_no_verdict() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    attempts = probe(f"http://127.0.0.1:{port}/x", max_header_bytes=100)
    assert [a.status for a in attempts] == [None, None, None]
    assert limits.judge_request_size(attempts, max_body_bytes=LIMIT, max_header_bytes=100).outcome == "error"
