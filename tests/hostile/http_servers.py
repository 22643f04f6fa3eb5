"""Hostile HTTP and TLS servers: raw sockets on loopback, port 0, that misbehave on purpose.

    with HostileServer(http(drip(OK_PLAIN, every_s=1.0))) as server:
        server.url("/healthz")

A server accepts on one daemon thread and hands each connection to a *behaviour* (a function of
the socket and the server) on its own daemon thread. Every loop is bounded in count and in time
(:data:`MAX_LIFE_S`, :data:`MAX_CONNECTIONS`), every socket is closed in a ``finally``, and
leaving the ``with`` block stops the lot: a case cannot wedge the suite, whatever the gate does.
``server.seen`` keeps the head of every request read (to tell, say, whether a token arrived).

The TLS side: :func:`chain_of` builds a certificate chain of any length with ``cryptography``,
and ``HostileServer(behaviour, tls=context)`` runs the behaviour over a server-side TLS socket.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

MAX_LIFE_S = 60.0  # no behaviour outlives this, whatever the client does
MAX_CONNECTIONS = 400  # sslyze opens a connection per probe; more than this is a runaway client
HEAD_LIMIT = 65_536
TICK_S = 0.1  # how often a waiting behaviour looks at the stop flag

Behaviour = Callable[[socket.socket, "HostileServer"], None]


@dataclass(frozen=True)
class Seen:
    """The head (request line and headers) of one request a behaviour read."""

    head: bytes

    @property
    def request_line(self) -> str:
        return self.head.split(b"\r\n", 1)[0].decode("latin-1")

    @property
    def method(self) -> str:
        return self.request_line.split(" ")[0]

    @property
    def path(self) -> str:
        parts = self.request_line.split(" ")
        return parts[1].split("?")[0] if len(parts) > 1 else "/"

    @property
    def headers(self) -> dict[str, str]:
        lines = self.head.decode("latin-1").split("\r\n")[1:]
        return {name.strip().lower(): value.strip() for name, sep, value in (line.partition(":") for line in lines) if sep}


class HostileServer:
    """Listens on ``host`` (a loopback address), port 0; runs ``behaviour`` on every connection."""

    def __init__(self, behaviour: Behaviour, *, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"{host} is not a loopback address")
        self.behaviour = behaviour
        self.host = host
        self.tls = tls
        self.seen: list[Seen] = []
        self.stop = threading.Event()
        self.started = time.monotonic()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, 0))
        self._listener.listen(64)
        self._listener.settimeout(TICK_S)
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, name=f"hostile-{host}:{self.port}", daemon=True)
        self._connections: list[socket.socket] = []

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def expired(self) -> bool:
        return self.stop.is_set() or time.monotonic() - self.started > MAX_LIFE_S

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.stop.set()
        self._thread.join(2)
        self._listener.close()
        for conn in list(self._connections):
            _close(conn)

    def _accept(self) -> None:
        accepted = 0
        while not self.expired() and accepted < MAX_CONNECTIONS:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # the tick timeout, or the listener closed
                continue
            accepted += 1
            self._connections.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                conn.settimeout(5)
                conn = self.tls.wrap_socket(conn, server_side=True)
                self._connections.append(conn)
            self.behaviour(conn, self)
        except (OSError, ssl.SSLError):
            pass  # the client gave up, or refused our certificate: both are what some cases are about
        finally:
            _close(conn)

    def read_head(self, conn: socket.socket) -> bytes:
        """The request head (up to the blank line), recorded in ``seen``; b"" when none came in time."""
        data = b""
        conn.settimeout(TICK_S)
        while b"\r\n\r\n" not in data and len(data) < HEAD_LIMIT and not self.expired():
            try:
                chunk = conn.recv(4096)
            except TimeoutError:
                continue
            if not chunk:
                break
            data += chunk
        head = data.split(b"\r\n\r\n", 1)[0]
        if head:
            self.seen.append(Seen(head))
        return head

    def hold(self, conn: socket.socket, seconds: float = MAX_LIFE_S) -> None:
        """Keep ``conn`` open and silent (reading and dropping what comes) until the client leaves or time is up."""
        conn.settimeout(TICK_S)
        until = time.monotonic() + seconds
        while not self.expired() and time.monotonic() < until:
            try:
                if not conn.recv(4096):
                    return
            except TimeoutError:
                continue


def _close(conn: socket.socket) -> None:
    try:
        conn.close()
    except OSError:
        pass


def response(status: str, body: bytes = b"", content_type: str = "text/plain", headers: dict[str, str] | None = None) -> bytes:
    """A complete HTTP/1.1 answer that closes the connection."""
    lines = [f"HTTP/1.1 {status}", f"Content-Type: {content_type}", f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# --------------------------------------------------------------------------- HTTP behaviours

Responder = Callable[[socket.socket, "HostileServer", Seen], None]


def http(default: Responder, routes: dict[str, Responder] | None = None) -> Behaviour:
    """Read the request head, then answer it with the responder of its path (else ``default``)."""

    def behave(conn: socket.socket, server: HostileServer) -> None:
        head = server.read_head(conn)
        if head:
            seen = Seen(head)
            (routes or {}).get(seen.path, default)(conn, server, seen)

    return behave


def answer(status: str, body: bytes = b"", content_type: str = "text/plain", headers: dict[str, str] | None = None) -> Responder:
    """A well-formed answer (the hostility is in what it says); no body to a HEAD."""

    def respond(conn: socket.socket, server: HostileServer, request: Seen) -> None:
        full = response(status, body, content_type, headers)
        conn.sendall(full[: len(full) - len(body)] if request.method == "HEAD" else full)

    return respond


def drip(payload: bytes, *, every_s: float = 1.0) -> Responder:
    """Send ``payload`` one byte every ``every_s`` seconds."""

    def respond(conn: socket.socket, server: HostileServer, request: Seen) -> None:
        for byte in payload:
            if server.expired():
                return
            conn.sendall(bytes([byte]))
            server.stop.wait(every_s)

    return respond


def endless_chunked(content_type: str, chunk: bytes = b" " * 65_536) -> Responder:
    """200 with a chunked body that never ends: chunk after chunk until the client leaves (or MAX_LIFE_S)."""

    def respond(conn: socket.socket, server: HostileServer, request: Seen) -> None:
        conn.settimeout(5)
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        while not server.expired():
            conn.sendall(framed)  # raises once the client has closed: the responder ends there

    return respond


def huge_length(length: int, first: bytes, content_type: str, *, then: str) -> Responder:
    """200 announcing ``Content-Length: length`` but sending only ``first``; then "hold" the connection, or "close" it."""

    def respond(conn: socket.socket, server: HostileServer, request: Seen) -> None:
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n".encode() + first)
        if then == "hold":
            server.hold(conn)

    return respond


def reset() -> Responder:
    """Abort the connection once the request is read: SO_LINGER 0 makes close() send RST."""

    def respond(conn: socket.socket, server: HostileServer, request: Seen) -> None:
        _reset(conn)

    return respond


def _reset(conn: socket.socket) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


# --------------------------------------------------------------------------- TLS behaviours (over plain TCP)


def read_client_hello(conn: socket.socket, server: HostileServer) -> bytes:
    """The first TLS record the client sends (its ClientHello), or b"" if none came in time."""
    data = b""
    conn.settimeout(TICK_S)
    until = time.monotonic() + 10
    while not server.expired() and time.monotonic() < until:
        try:
            chunk = conn.recv(4096)
        except TimeoutError:
            continue
        if not chunk:
            break
        data += chunk
        if len(data) >= 5 and len(data) >= 5 + int.from_bytes(data[3:5], "big"):
            break
    return data


def tls_stall() -> Behaviour:
    """Accept, read the ClientHello, never answer."""

    def behave(conn: socket.socket, server: HostileServer) -> None:
        if read_client_hello(conn, server):
            server.hold(conn)

    return behave


# A handshake record header announcing 80 bytes of ServerHello, and only its first 4 bytes.
PARTIAL_SERVER_HELLO = b"\x16\x03\x03\x00\x50" + b"\x02\x00\x00\x4c"


def tls_reset_mid_handshake() -> Behaviour:
    """Read the ClientHello, send the start of a ServerHello, then reset the connection."""

    def behave(conn: socket.socket, server: HostileServer) -> None:
        if read_client_hello(conn, server):
            conn.sendall(PARTIAL_SERVER_HELLO)
            _reset(conn)

    return behave


# --------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class Chain:
    """PEM files of a chain: ``cert_file`` holds the leaf then every intermediate; ``root_file`` the root."""

    cert_file: Path
    key_file: Path
    root_file: Path
    length: int  # certificates served (leaf + intermediates)

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def chain_of(folder: Path, intermediates: int, *, host: str = "127.0.0.1") -> Chain:
    """A root, ``intermediates`` CAs each signed by the one before, and a leaf for ``host``; P-256 throughout (fast)."""
    now = dt.datetime.now(dt.UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _certificate(_name("hostile root"), root_key, _name("hostile root"), root_key, ca=True, now=now)
    issuer_name, issuer_key, issuer = _name("hostile root"), root_key, root
    served: list[x509.Certificate] = []
    for index in range(intermediates):
        key = ec.generate_private_key(ec.SECP256R1())
        name = _name(f"hostile intermediate {index + 1}")
        issuer = _certificate(name, key, issuer_name, issuer_key, ca=True, now=now, issuer_cert=issuer)
        served.insert(0, issuer)
        issuer_name, issuer_key = name, key
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _certificate(_name(host), leaf_key, issuer_name, issuer_key, ca=False, now=now, issuer_cert=issuer, host=host)
    pem = serialization.Encoding.PEM
    cert_file, key_file, root_file = folder / "chain.pem", folder / "leaf.key", folder / "root.pem"
    cert_file.write_bytes(b"".join(c.public_bytes(pem) for c in [leaf, *served]))
    key_file.write_bytes(
        leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    root_file.write_bytes(root.public_bytes(pem))
    return Chain(cert_file, key_file, root_file, 1 + intermediates)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    now: dt.datetime,
    issuer_cert: x509.Certificate | None = None,
    host: str | None = None,
) -> x509.Certificate:
    # Strict RFC 5280 shapes (sslyze 6 validates with cryptography's verifier): critical basic
    # constraints and key usage, SKI/AKI, and a SAN plus serverAuth on the leaf.
    public = key.public_key()
    authority = issuer_cert.public_key() if issuer_cert is not None else public
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(authority), critical=False)  # type: ignore[arg-type]
    )
    if ca:
        builder = builder.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
    else:
        builder = builder.add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host or "127.0.0.1"))]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())
