"""Limits family: request size (413/431) and rate limits per IP, per user and per endpoint.

Probes here are the only ones that *try* to be refused, so each is bounded twice: by a request
cap (``rate_limit.max_probe_requests``, at most :data:`CONCURRENCY` in flight, stopping at the
first 429) and by a wall-clock deadline; an upload never sends more than ``max_body_bytes + 1``
bytes. Request and answer headers are never kept whole (the token travels in one of them): the
evidence holds statuses, counts, timings and the parsed rate-limit fields only.

The rate-limit checks share the client's buckets on the server (all of them come from one
address), so a :class:`Ledger` remembers when the quotas an earlier probe drained are whole again
(from RateLimit ``t``, the legacy ``-Reset`` fields or Retry-After) and the next probe waits for
that, bounded by :data:`MAX_WAIT_S`. A failure after a wait that had to be cut short is reported
as ``error``: it may be the residue of the previous burst rather than the target's design.

A burst without a 429 fails, except when the answers advertised a quota that never ran out: a
slow target (say 300 ms an answer) refills faster than two requests in flight can drain it, so
the limit can be neither shown nor ruled out politely, and the check says so (``error``).

The user and endpoint checks compare: after the burst's 429, two requests of the other identity
(or endpoint), then the burst's own request again as a control (up to three times). A per-IP bucket that refills fast
lets the comparison through as surely as a separate limit would, so the verdict rests first on
the IETF-draft policy names (``RateLimit: "ip";r=0``): the policy that refused the burst either
counts the comparison too (shared: failed) or is absent from its answer (separate: passed). When
the names do not decide, the comparison's success counts only if the control is still refused;
a control that got through means the first limit lifted in between (``error``, inconclusive).

The judges are pure: observations in, one :class:`Finding` out.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import httpx

from releasegate.probes import ratelimit_headers
from releasegate.probes.http import HttpSettings, client_tls
from releasegate.probes.ratelimit_headers import RateLimitHeaders
from releasegate.results import Finding

CONCURRENCY = 2  # the politeness bound (issue 4): a burst is sequential or at most two in flight
MAX_WAIT_S = 5.0  # never sleep longer than this between rate-limit probes, whatever the server advertises
FALLBACK_WAIT_S = 1.0  # after a 429 that advertises nothing about when to come back
SINGLE_ATTEMPTS = 5  # a one-off request is repeated while it answers 5xx (a 5xx says nothing about the limit)
# After the burst's 429: the other side's request this many times, then the burst's own request
# (the control) up to this many times. Two through, then two refused, cannot come from one bucket
# that refills evenly (the two controls take as long as the two comparisons did, which found a
# token each). No more controls than that: each one is time for a fast per-user quota to refill,
# which would turn a real separate limit into "inconclusive". See _judge_separation.
COMPARISONS = 2
CONTROLS = 2
EXCERPT_CHARS = 300
ANSWER_READ_BYTES = 8192
ANSWER_HEAD_BYTES = 65536
SEQUENCE_KEPT = 60
CHUNK_BYTES = 64 * 1024
PADDING_HEADER = "X-Releasegate-Padding"
EXPECT_WAIT_S = 1.0  # how long an upload waits for 100 Continue before sending the body anyway
# Statuses some servers and proxies use for an oversized header block instead of 431 (nginx: 400 "Request
# Header Or Cookie Too Large", its internal 494; some CDNs 413): the block is refused, but not as RFC 6585 says.
NONSTANDARD_HEADER_REFUSALS = frozenset({400, 413, 494})
# A log-in attempt that can never succeed: the endpoint burst must not lock out or log in a real account.
BOGUS_LOGIN = {"username": "releasegate-rate-limit-probe", "password": "not-a-real-password"}

Identity = Literal["anonymous", "token", "second"]
SizeKind = Literal["streamed body", "declared body", "header block"]
Clock = Callable[[], float]
Sleep = Callable[[float], None]
T = TypeVar("T")


# --------------------------------------------------------------------------- plumbing


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a private event loop (the checks are synchronous pytest functions)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


def client(settings: HttpSettings, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """A client for one probe: no redirects, no proxies from the environment, no default credentials."""
    return httpx.AsyncClient(
        verify=settings.verify,
        timeout=httpx.Timeout(settings.timeout_s),
        follow_redirects=False,
        trust_env=False,
        transport=transport,
        limits=httpx.Limits(max_connections=CONCURRENCY),
    )


def _cause(exc: BaseException) -> str:
    inner: BaseException = exc
    seen = {id(exc)}
    while (nxt := inner.__cause__ or inner.__context__) is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        inner = nxt
    text = str(inner) or type(inner).__name__
    return f"{type(exc).__name__}: {text}"[:200]


async def _bounded_read(response: httpx.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for raw in response.aiter_raw():
        chunks.append(raw[: limit - size])
        size += len(raw)
        if size >= limit:
            break
    return b"".join(chunks)


# --------------------------------------------------------------------------- request size: probes


@dataclass(frozen=True)
class SizeAttempt:
    """One oversized request and what came back (``status`` None: no HTTP answer at all)."""

    kind: SizeKind
    status: int | None
    bytes_sent: int  # body bytes handed to the connection (header block: the padding header's size)
    latency_ms: float
    error: str | None = None
    excerpt: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "status": self.status,
            "bytes_sent": self.bytes_sent,
            "latency_ms": round(self.latency_ms, 1),
            "error": self.error,
            "body_excerpt": self.excerpt,
        }


def filler(total: int, counter: list[int]) -> AsyncIterator[bytes]:
    """``total`` bytes of one JSON object with a single long string field, in chunks; counts what was taken.

    Valid JSON on purpose: a server without a size limit then rejects it for its content (422/400)
    at worst, and there is no body for which an API would create anything.
    """
    head, tail = b'{"releasegate_size_probe":"', b'"}'

    async def chunks() -> AsyncIterator[bytes]:
        if total < len(head) + len(tail):
            counter[0] += total
            yield b"a" * total
            return
        counter[0] += len(head)
        yield head
        remaining = total - len(head) - len(tail)
        while remaining > 0:
            size = min(CHUNK_BYTES, remaining)
            remaining -= size
            counter[0] += size
            yield b"a" * size
        counter[0] += len(tail)
        yield tail

    return chunks()


async def _upload(url: str, settings: HttpSettings, size: int, *, declare_length: bool) -> SizeAttempt:
    kind: SizeKind = "declared body" if declare_length else "streamed body"
    framing = f"Content-Length: {size}" if declare_length else "Transfer-Encoding: chunked"
    return await _raw_request(kind, "POST", url, settings, ["Content-Type: application/json", "Expect: 100-continue", framing], size)


async def _big_header(url: str, settings: HttpSettings, size: int) -> SizeAttempt:
    """GET with one padding header of ``size`` bytes of value: the header block alone is over the limit."""
    return await _raw_request("header block", "GET", url, settings, [f"{PADDING_HEADER}: {'a' * size}"], None, bytes_sent=size)


async def _raw_request(
    kind: SizeKind,
    method: str,
    url: str,
    settings: HttpSettings,
    extra: list[str],
    body_size: int | None,
    *,
    bytes_sent: int | None = None,
) -> SizeAttempt:
    """POST ``size`` bytes over a raw HTTP/1.1 connection, reading the answer while still sending.

    Not httpx (nor asyncio streams): a server that refuses early answers 413 and closes while the
    body is still going out, so the client's next send fails, and both close the connection on
    that failure, dropping the 413 that already sits in the socket. Here a failed send only ends
    the sending; TLS runs in memory (:class:`_Wire`), so the answer is still read and decrypted.
    The body also waits for ``100 Continue`` (RFC 9110 §10.1.1): a server that judges the declared
    length refuses before a byte of body is on the wire. A server that ignores Expect gets the
    body after :data:`EXPECT_WAIT_S`, as curl does it.
    """
    parts = urlsplit(url)
    https = parts.scheme == "https"
    head = [
        f"{method} {(parts.path or '/') + (f'?{parts.query}' if parts.query else '')} HTTP/1.1",
        f"Host: {parts.netloc.rpartition('@')[2]}",
        "Accept-Encoding: identity",
        "Connection: close",
        *(f"{name}: {value}" for name, value in settings.headers.items()),
        *extra,
    ]
    counter = [0]
    started = time.perf_counter()
    tasks: list[asyncio.Task[Any]] = []
    wire: _Wire | None = None
    try:
        async with asyncio.timeout(settings.timeout_s):
            try:
                wire = await _Wire.open(
                    parts.hostname or "", parts.port or (443 if https else 80), client_tls(settings.verify) if https else None
                )
                await wire.send(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
                go_on = asyncio.Event()
                answer = asyncio.create_task(_read_answer(wire, go_on))
                tasks = [answer]
                if body_size is not None:
                    chunked = "Transfer-Encoding: chunked" in extra
                    tasks.append(asyncio.create_task(_send_body(wire, go_on, filler(body_size, counter), chunked=chunked)))
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                # Body sent, or the send broke off (the server stopped reading): either way the answer decides.
                status, excerpt = await answer
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
    except TimeoutError:
        return SizeAttempt(kind, None, _sent(bytes_sent, counter), _ms(started), f"no answer within {settings.timeout_s:g} s")
    except (OSError, ssl.SSLError, ValueError) as exc:
        error = f"connection ended without an HTTP status ({_cause(exc)})"
        return SizeAttempt(kind, None, _sent(bytes_sent, counter), _ms(started), error)
    finally:
        if wire is not None:
            wire.close()
    return SizeAttempt(kind, status, _sent(bytes_sent, counter), _ms(started), None, excerpt)


def _sent(fixed: int | None, counter: list[int]) -> int:
    return fixed if fixed is not None else counter[0]


class _Wire:
    """One connection's bytes, with TLS done in memory (``ssl.MemoryBIO``).

    OpenSSL never sees the socket, so a send that fails because the server closed cannot put the
    TLS session into an error state: what the server sent before closing can still be read.
    """

    def __init__(self, sock: socket.socket, tls: ssl.SSLObject | None, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO) -> None:
        self._sock, self._tls, self._in, self._out = sock, tls, incoming, outgoing
        self._loop = asyncio.get_running_loop()

    @classmethod
    async def open(cls, host: str, port: int, context: ssl.SSLContext | None) -> _Wire:
        loop = asyncio.get_running_loop()
        last: OSError = OSError(f"no address for {host}")
        for family, kind, proto, _, address in await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM):
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, address)
            except OSError as exc:
                sock.close()
                last = exc
                continue
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            tls = context.wrap_bio(incoming, outgoing, server_hostname=host) if context is not None else None
            wire = cls(sock, tls, incoming, outgoing)
            try:
                await wire._handshake()
            except BaseException:
                wire.close()
                raise
            return wire
        raise last

    async def _handshake(self) -> None:
        if self._tls is None:
            return
        while True:
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush()
                data = await self._loop.sock_recv(self._sock, 65536)
                if not data:
                    raise ConnectionResetError("the server closed the connection during the TLS handshake") from None
                self._in.write(data)
        await self._flush()

    async def _flush(self) -> None:
        if data := self._out.read():
            await self._loop.sock_sendall(self._sock, data)

    async def send(self, data: bytes) -> None:
        if self._tls is None:
            await self._loop.sock_sendall(self._sock, data)
            return
        self._tls.write(data)
        await self._flush()

    async def recv(self) -> bytes:
        """Some bytes of the answer; b"" once the server has closed."""
        if self._tls is None:
            return await self._loop.sock_recv(self._sock, 65536)
        while True:
            try:
                return self._tls.read(65536)
            except ssl.SSLWantReadError:
                # Anything TLS wants to send from here (a key update) waits for the sender's next
                # flush: two tasks writing the socket at once would interleave records.
                try:
                    data = await self._loop.sock_recv(self._sock, 65536)
                except OSError:
                    data = b""  # a reset after the answer: what was decrypted so far is all there is
                if not data:
                    self._in.write_eof()
                else:
                    self._in.write(data)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    def close(self) -> None:
        self._sock.close()


async def _send_body(wire: _Wire, go_on: asyncio.Event, chunks: AsyncIterator[bytes], *, chunked: bool) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(go_on.wait(), timeout=EXPECT_WAIT_S)
    async for piece in chunks:
        await wire.send(b"%x\r\n%b\r\n" % (len(piece), piece) if chunked else piece)
    if chunked:
        await wire.send(b"0\r\n\r\n")


async def _read_answer(wire: _Wire, go_on: asyncio.Event) -> tuple[int, str]:
    """Status of an HTTP/1.x answer and the start of its body; ``100 Continue`` lets the body go."""
    buffer = b""
    while True:
        while b"\r\n\r\n" not in buffer:
            if len(buffer) > ANSWER_HEAD_BYTES:
                raise ValueError(f"answer head longer than {ANSWER_HEAD_BYTES} bytes")
            data = await wire.recv()
            if not data:
                raise ConnectionResetError("the server closed the connection" + (" mid-answer" if buffer else " without an answer"))
            buffer += data
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        fields = head.split(b"\r\n", 1)[0].split(b" ", 2)
        if len(fields) < 2 or not fields[0].startswith(b"HTTP/1.") or not fields[1].isdigit():
            raise ValueError(f"not an HTTP/1.x status line: {head[:60]!r}")
        status = int(fields[1])
        if status >= 200 or status == 101:
            break
        if status == 100:
            go_on.set()
    with contextlib.suppress(Exception):  # a body cut by the close does not matter: the status does
        while len(buffer) < EXCERPT_CHARS and (data := await asyncio.wait_for(wire.recv(), timeout=0.5)):
            buffer += data
    return status, buffer[:EXCERPT_CHARS].decode("utf-8", errors="replace")


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def observe_request_size(
    url: str,
    settings: HttpSettings,
    *,
    max_body_bytes: int,
    max_header_bytes: int | None,
) -> list[SizeAttempt]:
    """A streamed (chunked) and a declared-length body of max+1 bytes, then (if a limit is named) one header of max+1 bytes."""

    async def probe() -> list[SizeAttempt]:
        # One connection per attempt: a 413 closes the connection, and the next attempt must not inherit that.
        attempts = []
        for declare in (False, True):
            attempts.append(await _upload(url, settings, max_body_bytes + 1, declare_length=declare))
        if max_header_bytes is not None:
            attempts.append(await _big_header(url, settings, max_header_bytes + 1))
        return attempts

    return run(probe())


# --------------------------------------------------------------------------- request size: judge


def judge_request_size(attempts: list[SizeAttempt], *, max_body_bytes: int, max_header_bytes: int | None) -> Finding:
    """413 for both bodies, 431 for the header block (400/413/494 there only warns); every problem listed, then one verdict."""
    failures: list[str] = []
    errors: list[str] = []
    warnings: list[str] = []
    for attempt in attempts:
        what = f"{attempt.kind} of {attempt.bytes_sent if attempt.kind == 'header block' else max_body_bytes + 1} bytes"
        if attempt.status is None:
            errors.append(f"{what}: {attempt.error}")
        elif attempt.kind == "header block":
            if attempt.status == 431:
                continue
            if attempt.status in NONSTANDARD_HEADER_REFUSALS:
                warnings.append(f"{what}: refused with {attempt.status}, not 431")
            else:
                failures.append(f"{what}: accepted or mishandled with HTTP {attempt.status} (expected 431)")
        elif attempt.status == 413:
            continue
        elif attempt.kind == "streamed body" and attempt.status == 411:
            warnings.append(f"{what}: chunked uploads refused with 411 Length Required, so the streamed limit is not shown")
        else:
            failures.append(f"{what}: HTTP {attempt.status} (expected 413)")
    observed = {a.kind: a.status if a.status is not None else "no answer" for a in attempts}
    expected = {"streamed body": 413, "declared body": 413}
    if max_header_bytes is not None:
        expected["header block"] = 431
    evidence: dict[str, Any] = {
        "max_body_bytes": max_body_bytes,
        "max_header_bytes": max_header_bytes,
        "attempts": [a.to_json() for a in attempts],
    }
    if max_header_bytes is None:
        evidence["header_block"] = "not probed: the target names no limits.max_header_bytes"
    if failures:
        return Finding("failed", "; ".join(failures), observed, expected, evidence)
    if errors:
        return Finding("error", "could not observe a status: " + "; ".join(errors), observed, expected, evidence)
    if warnings:
        return Finding("warned", "; ".join(warnings), observed, expected, evidence)
    header = f", header block of {max_header_bytes + 1} bytes -> 431" if max_header_bytes is not None else " (header limit not named)"
    return Finding("passed", f"bodies of {max_body_bytes + 1} bytes (streamed and declared) -> 413{header}", observed, expected, evidence)


# --------------------------------------------------------------------------- rate limits: observations


@dataclass(frozen=True)
class Answer:
    """One answer of a rate-limit probe; ``status`` None when the exchange failed."""

    status: int | None
    at: float  # clock() when it arrived: the origin of the advertised reset times
    latency_ms: float
    limits: RateLimitHeaders = field(default_factory=RateLimitHeaders)
    error: str | None = None
    excerpt: str = ""

    @property
    def exhausted(self) -> tuple[str, ...]:
        """Names of the IETF-draft policies this answer advertises as used up (``"name";r=0``).

        On a 429 these are the policies that refused the request: the draft lists the state of
        every policy that applied, and only a used-up one can have refused.
        """
        return tuple(dict.fromkeys(s.name for s in self.limits.states if s.source == "RateLimit" and s.name and s.remaining == 0))

    def policy_names(self) -> tuple[str, ...]:
        """Names of every IETF-draft policy whose state this answer advertises."""
        return tuple(dict.fromkeys(s.name for s in self.limits.states if s.source == "RateLimit" and s.name))

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"status": self.status, "latency_ms": round(self.latency_ms, 1), "rate_limit": self.limits.to_json()}
        if exhausted := self.exhausted:
            data["refused_by" if self.status == 429 else "exhausted_policies"] = list(exhausted)
        if self.error:
            data["error"] = self.error
        if self.excerpt:
            data["body_excerpt"] = self.excerpt
        return data


@dataclass(frozen=True)
class RequestSpec:
    """What one probe request is: never logged whole, since ``headers`` may hold a token."""

    method: Literal["GET", "POST"]
    url: str
    identity: Identity
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    json_body: Mapping[str, str] | None = None

    def describe(self) -> dict[str, Any]:
        return {"method": self.method, "url": self.url, "identity": self.identity}


BurstStop = Literal["429", "cap", "deadline", "error"]


@dataclass(frozen=True)
class Burst:
    """A burst of identical requests, in the order the answers arrived."""

    request: dict[str, Any]
    cap: int
    answers: tuple[Answer, ...]
    stopped: BurstStop
    elapsed_s: float

    @property
    def refused(self) -> Answer | None:
        return next((a for a in self.answers if a.status == 429), None)

    @property
    def requests_to_429(self) -> int | None:
        """How many answers arrived up to and including the first 429."""
        for index, answer in enumerate(self.answers, 1):
            if answer.status == 429:
                return index
        return None

    def min_remaining(self) -> int | None:
        counts = [r for a in self.answers if (r := a.limits.min_remaining()) is not None]
        return min(counts) if counts else None

    def advertised(self) -> bool:
        return any(a.limits.advertised for a in self.answers)

    def rate_per_s(self) -> float:
        return len(self.answers) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def evidence(self) -> dict[str, Any]:
        statuses = [a.status if a.status is not None else "error" for a in self.answers]
        data: dict[str, Any] = {
            **self.request,
            "cap": self.cap,
            "requests": len(self.answers),
            "stopped": self.stopped,
            "elapsed_s": round(self.elapsed_s, 3),
            "rate_per_s": round(self.rate_per_s(), 1),
            "statuses": {str(k): v for k, v in Counter(statuses).items()},
            "sequence": statuses[:SEQUENCE_KEPT],
            "min_remaining_advertised": self.min_remaining(),
        }
        if self.answers:
            data["first_answer"] = self.answers[0].to_json()
        if (refused := self.refused) is not None:
            data["first_429"] = {**refused.to_json(), "after_requests": self.requests_to_429}
        errors = [a.error for a in self.answers if a.error]
        if errors:
            data["errors"] = errors[:3]
        return data


@dataclass(frozen=True)
class Wait:
    """How long a probe waited for the quotas of earlier probes to refill."""

    wanted_s: float
    slept_s: float

    @property
    def cut_short(self) -> bool:
        return self.wanted_s > self.slept_s + 0.05

    def to_json(self) -> dict[str, Any]:
        return {"wanted_s": round(self.wanted_s, 3), "slept_s": round(self.slept_s, 3), "cut_short": self.cut_short}


class Ledger:
    """When every quota the rate-limit probes have touched is whole again.

    Keyed by (identity, header family, policy name): the latest answer about one quota is the
    freshest word on it. The IP quota appears under several identities; taking the latest
    ready time over all keys is merely conservative.
    """

    def __init__(self, clock: Clock = time.monotonic, sleep: Sleep = time.sleep, max_wait_s: float = MAX_WAIT_S) -> None:
        self.clock = clock
        self._sleep = sleep
        self.max_wait_s = max_wait_s
        self._ready: dict[tuple[str, str, str], float] = {}

    def note(self, identity: Identity, answer: Answer) -> None:
        for state in answer.limits.states:
            if state.reset_s is not None:
                self._ready[(identity, state.source, state.name)] = answer.at + state.reset_s
        if answer.limits.retry_after_s is not None:
            self._ready[(identity, "Retry-After", "")] = answer.at + answer.limits.retry_after_s
        if answer.status == 429 and answer.limits.full_reset_s() is None:
            self._ready[(identity, "429", "")] = answer.at + FALLBACK_WAIT_S

    def wanted_s(self) -> float:
        return max(0.0, max(self._ready.values(), default=0.0) - self.clock())

    def wait(self) -> Wait:
        wanted = self.wanted_s()
        slept = min(wanted, self.max_wait_s)
        if slept > 0:
            self._sleep(slept)
        return Wait(wanted_s=wanted, slept_s=slept)


# --------------------------------------------------------------------------- rate limits: probes


async def _exchange(http: httpx.AsyncClient, spec: RequestSpec, timeout_s: float, clock: Clock) -> Answer:
    started = time.perf_counter()
    headers = {**spec.headers, "Accept-Encoding": "identity"}
    try:
        async with asyncio.timeout(timeout_s):
            async with http.stream(spec.method, spec.url, headers=headers, json=spec.json_body) as response:
                body = await _bounded_read(response, ANSWER_READ_BYTES)
    except (TimeoutError, httpx.TimeoutException):
        return Answer(None, clock(), _ms(started), error=f"no answer within {timeout_s:g} s")
    except (httpx.HTTPError, OSError, ssl.SSLError) as exc:
        return Answer(None, clock(), _ms(started), error=_cause(exc))
    names = {k.lower(): v for k, v in response.headers.items()}
    limits = ratelimit_headers.parse(names, datetime.now(UTC))
    excerpt = body[:EXCERPT_CHARS].decode("utf-8", errors="replace") if response.status_code == 429 else ""
    return Answer(response.status_code, clock(), _ms(started), limits, None, excerpt)


async def burst(
    http: httpx.AsyncClient, spec: RequestSpec, *, cap: int, timeout_s: float, deadline_s: float, clock: Clock = time.monotonic
) -> Burst:
    """Up to ``cap`` requests, :data:`CONCURRENCY` in flight, none started after the first 429, an error or the deadline."""
    answers: list[Answer] = []
    started = clock()
    sent = 0
    stop: BurstStop | None = None

    async def worker() -> None:
        nonlocal sent, stop
        while stop is None and sent < cap:
            if clock() - started > deadline_s:
                stop = "deadline"
                return
            sent += 1
            answer = await _exchange(http, spec, timeout_s, clock)
            answers.append(answer)
            if answer.status == 429 and stop is None:
                stop = "429"
            elif answer.status is None and stop is None:
                stop = "error"

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return Burst(spec.describe(), cap, tuple(answers), stop or "cap", clock() - started)


async def single(http: httpx.AsyncClient, spec: RequestSpec, *, timeout_s: float, clock: Clock = time.monotonic) -> list[Answer]:
    """One request, repeated (up to :data:`SINGLE_ATTEMPTS`) only while it answers 5xx."""
    answers = []
    for _ in range(SINGLE_ATTEMPTS):
        answer = await _exchange(http, spec, timeout_s, clock)
        answers.append(answer)
        if answer.status is None or answer.status < 500:
            break
    return answers


@dataclass(frozen=True)
class LimitObservation:
    """A burst, and for the user/endpoint checks the comparison that tells the limits apart.

    ``follow_up``: the other identity's (or endpoint's) requests after the burst's 429, up to
    :data:`COMPARISONS` of them (each repeated only while it answers 5xx), stopping at a 429.
    ``control``: then the burst's own request again, up to :data:`CONTROLS` times, stopping at the
    first that is not refused: a limit that lets it through has refilled, and then the
    comparison's success may show nothing but that refill.
    """

    wait: Wait
    burst: Burst
    follow_up: tuple[Answer, ...] = ()
    follow_up_request: dict[str, Any] | None = None
    control: tuple[Answer, ...] = ()

    def comparisons(self) -> tuple[Answer, ...]:
        """The follow-up answers that count: failed exchanges and 429s, and every answer but 5xx."""
        return tuple(a for a in self.follow_up if a.status is None or a.status < 500)

    def evidence(self) -> dict[str, Any]:
        data: dict[str, Any] = {"waited": self.wait.to_json(), "burst": self.burst.evidence()}
        if self.follow_up_request is not None:
            data["follow_up"] = {**self.follow_up_request, "answers": [a.to_json() for a in self.follow_up]}
        if self.control:
            data["control"] = {**self.burst.request, "answers": [a.to_json() for a in self.control]}
        return data


def observe_limit(
    settings: HttpSettings,
    ledger: Ledger,
    burst_spec: RequestSpec,
    follow_up: RequestSpec | None,
    *,
    cap: int,
    transport: httpx.AsyncBaseTransport | None = None,
) -> LimitObservation:
    """Wait for earlier quotas to refill, burst until 429, then (after a 429) the comparison and the control requests."""
    waited = ledger.wait()
    clock = ledger.clock
    deadline_s = settings.timeout_s * 3  # a slow target ends the burst early (judged as could-not-judge)

    async def probe() -> LimitObservation:
        async with client(settings, transport) as http:
            result = await burst(http, burst_spec, cap=cap, timeout_s=settings.timeout_s, deadline_s=deadline_s, clock=clock)
            for answer in result.answers:
                ledger.note(burst_spec.identity, answer)
            if follow_up is None or result.refused is None:
                return LimitObservation(waited, result)
            # Back to back, no pause anywhere: every moment after the burst's 429 is time for the
            # first limit to refill, which is what the comparison must not be fooled by.
            answers: list[Answer] = []
            for _ in range(COMPARISONS):
                answers += await single(http, follow_up, timeout_s=settings.timeout_s, clock=clock)
                if answers[-1].status is None or answers[-1].status == 429 or answers[-1].status >= 500:
                    break
            for answer in answers:
                ledger.note(follow_up.identity, answer)
            controls: list[Answer] = []
            if all(a.status is not None and a.status != 429 for a in answers):
                for _ in range(CONTROLS):
                    controls.append(await _exchange(http, burst_spec, settings.timeout_s, clock))
                    ledger.note(burst_spec.identity, controls[-1])
                    if controls[-1].status != 429:
                        break
            return LimitObservation(waited, result, tuple(answers), follow_up.describe(), tuple(controls))

    return run(probe())


# --------------------------------------------------------------------------- rate limits: judges


def _no_429(observation: LimitObservation, who: str) -> Finding:
    """The burst never got a 429: failed, unless the burst could not have shown a limit."""
    burst_ = observation.burst
    evidence = observation.evidence()
    observed = {"requests": len(burst_.answers), "statuses": evidence["burst"]["statuses"]}
    expected = f"429 within {burst_.cap} requests"
    if burst_.stopped in ("error", "deadline"):
        reason = "a request failed" if burst_.stopped == "error" else "the burst ran out of time"
        return Finding(
            "error",
            f"{reason} after {len(burst_.answers)} requests before any 429 ({who}): no verdict on the limit",
            observed,
            expected,
            evidence,
        )
    remaining = burst_.min_remaining()
    if remaining is not None and remaining > 0:
        return Finding(
            "error",
            f"{len(burst_.answers)} requests ({who}) at {burst_.rate_per_s():.1f}/s never used up the advertised quota "
            f"(at least {remaining} left): the target refills faster than a polite burst drains it, no verdict",
            observed,
            expected,
            evidence,
        )
    also = ""
    if (n503 := evidence["burst"]["statuses"].get("503", 0)) > 0:
        also = f"; {n503} answers were 503 (nginx limit_req refuses with 503 unless limit_req_status 429)"
    if remaining == 0:
        also += "; the quota was advertised as used up, yet requests still went through"
    return Finding("failed", f"no 429 within {len(burst_.answers)} requests ({who}){also}", observed, expected, evidence)


def _retry_after(refused: Answer, summary: str, observed: dict[str, Any], expected: Any, evidence: dict[str, Any]) -> Finding:
    """A proven limit passes when its 429 says when to retry; without (or with an unreadable) Retry-After it warns."""
    limits = refused.limits
    observed = {**observed, "retry_after": limits.retry_after_raw, "families": list(limits.families)}
    if limits.retry_after_raw is None:
        return Finding("warned", summary + ", but the 429 has no Retry-After", observed, expected, evidence)
    if limits.retry_after_s is None:
        return Finding("warned", summary + f", but Retry-After {limits.retry_after_raw!r} is unreadable", observed, expected, evidence)
    return Finding("passed", summary + f" (Retry-After {limits.retry_after_s:g} s)", observed, expected, evidence)


def judge_ip_limit(observation: LimitObservation) -> Finding:
    """A burst of unauthenticated requests from one address is refused with 429 within the cap."""
    refused = observation.burst.refused
    if refused is None:
        return _no_429(observation, "unauthenticated, one address")
    count = observation.burst.requests_to_429
    observed = {"first_429_after": count}
    return _retry_after(refused, f"429 after {count} unauthenticated requests", observed, "429 with Retry-After", observation.evidence())


Sharing = Literal["shared", "separate", "unknown"]


@dataclass(frozen=True)
class PolicyReading:
    """Whether a policy that refused the burst also counts the comparison request, read from the comparison's answer."""

    name: str
    sharing: Sharing
    why: str

    def to_json(self) -> dict[str, Any]:
        return {"policy": self.name, "sharing": self.sharing, "why": self.why}


def _quota(name: str, *answers: Answer) -> int | None:
    for answer in answers:
        for policy in answer.limits.policies:
            if policy.name == name and policy.quota is not None:
                return policy.quota
    return None


def _remaining(answer: Answer | None, name: str) -> int | None:
    if answer is None:
        return None
    return next((s.remaining for s in answer.limits.states if s.source == "RateLimit" and s.name == name), None)


def read_policies(refusal: Answer, comparisons: Sequence[Answer], control: Answer | None = None) -> tuple[PolicyReading, ...]:
    """For each IETF-draft policy that refused the burst (``refusal``, a 429): is it shared with the comparison?

    ``comparisons``: the other side's answers in order (its first requests of the probe);
    ``control``: the burst's own request right after them. Sound signals only. Shared: a comparison
    was refused by the policy too, or its n-th answer shows it below ``quota - n`` (a quota of its
    own would have lost n requests). Separate: the comparisons' answers name their policies and this
    one is not among them (it does not apply there); or the control finds it more than one below
    what the last comparison left (one quota only refills between the two, and the control takes
    one). A comparison that merely sees the policy nearly full proves nothing: a shared quota that
    refills fast looks just like that.
    """
    answered = [a for a in comparisons if a.status is not None]
    readings = []
    for name in refusal.exhausted:
        quota = _quota(name, *answered, refusal)
        of = f" of {quota}" if quota is not None else ""
        shared = None
        for number, answer in enumerate(answered, 1):
            left = _remaining(answer, name)
            if answer.status == 429 and name in answer.exhausted:
                shared = f"{name!r} refused the comparison request too"
            elif left is not None and (
                (quota is not None and quota > number and left < quota - number) or (quota is None and number == 1 and left == 0)
            ):
                shared = (
                    f"comparison request {number}, of the first {number} of its kind, left {name!r} at {left}{of}: others had drained it"
                )
            if shared:
                break
        last = answered[-1] if answered else None
        left = _remaining(last, name)
        after = _remaining(control, name)
        if shared:
            readings.append(PolicyReading(name, "shared", shared))
        elif left is not None and after is not None and after < left - 1:
            why = f"the comparison left {name!r} at {left}{of}, the control right after found it at {after}: two quotas"
            readings.append(PolicyReading(name, "separate", why))
        elif left is not None:
            why = f"{name!r} at {left}{of} after the comparison: a quota of its own, or a shared one that refilled"
            readings.append(PolicyReading(name, "unknown", why))
        elif answered and all(a.status != 429 and a.policy_names() for a in answered):
            names = ", ".join(map(repr, answered[-1].policy_names()))
            why = f"the comparison's answer advertises {names} but not {name!r}: it does not apply there"
            readings.append(PolicyReading(name, "separate", why))
        else:
            readings.append(PolicyReading(name, "unknown", f"the comparison's answer says nothing about {name!r}"))
    return tuple(readings)


@dataclass(frozen=True)
class _Wording:
    """How the user and endpoint checks name their two sides."""

    burst: str  # for a burst without 429
    first: str
    second: str
    observed_first: str
    observed_second: str
    expected: str
    shared: str  # what a shared limit means for this check
    identity: bool  # a 401/403 on the comparison means it is not a valid identity


_USER = _Wording(
    burst="one identity",
    first="the first identity",
    second="a second identity",
    observed_first="first_identity_429_after",
    observed_second="second_identity",
    expected="429 for the first identity (still 429 right after); the second identity, same address, not 429",
    shared="the limit is per IP, not per user",
    identity=True,
)
_ENDPOINT = _Wording(
    burst="one endpoint",
    first="the endpoint",
    second="the other endpoint",
    observed_first="endpoint_429_after",
    observed_second="other_endpoint",
    expected="429 on the endpoint (still 429 right after); the other endpoint not 429",
    shared="no endpoint-specific limit, only one shared by the whole address",
    identity=False,
)


def _names(readings: Iterable[PolicyReading]) -> str:
    return ", ".join(repr(r.name) for r in readings)


def _judge_separation(observation: LimitObservation, w: _Wording) -> Finding:
    """The burst's 429, the comparison's answers and the controls', judged by policy names first, then by timing.

    Timing alone (no names that decide): every comparison got through and every control was
    refused. Against one shared bucket that refills evenly, :data:`COMPARISONS` successes need
    about one refilled token per request, and then the controls, sent as quickly, get tokens too;
    so a control that got through makes the comparison inconclusive (``error``), never a pass.
    """
    refused = observation.burst.refused
    if refused is None:
        return _no_429(observation, w.burst)
    evidence = observation.evidence()
    count = observation.burst.requests_to_429
    seconds = observation.comparisons()
    second = seconds[-1] if seconds else (observation.follow_up[-1] if observation.follow_up else None)
    controls = observation.control
    observed: dict[str, Any] = {
        w.observed_first: count,
        w.observed_second: [a.status for a in observation.follow_up] if observation.follow_up else None,
        "control": [a.status for a in controls],
        "refused_by": list(refused.exhausted),
    }
    if second is None or second.status is None:
        why = second.error if second is not None else "not sent"
        return Finding("error", f"{w.second}'s request failed: {why}", observed, w.expected, evidence)
    if w.identity and second.status in (401, 403):
        return Finding(
            "error",
            f"{w.second} was refused with {second.status}: it is not a valid identity (auth.second_token_env)",
            observed,
            w.expected,
            evidence,
        )
    if second.status >= 500:
        return Finding("error", f"{w.second} got {second.status} on every attempt: no verdict", observed, w.expected, evidence)
    first_control = controls[0] if controls and controls[0].status is not None else None
    readings = read_policies(refused, seconds, first_control)
    evidence["policies"] = {"burst_refused_by": list(refused.exhausted), "comparison": [r.to_json() for r in readings]}
    shared = [r for r in readings if r.sharing == "shared"]
    separate = [r for r in readings if r.sharing == "separate"]
    statuses = "/".join(str(a.status) for a in seconds)
    if readings and len(shared) == len(readings):
        # Whatever the timing: the quota that stopped the burst also counts the other side's requests.
        return Finding(
            "failed",
            f"{w.first} was refused by policy {_names(shared)} (request {count}) and {w.second} counts against the same quota "
            f"({'; '.join(r.why for r in shared)}), answered {statuses}: {w.shared}",
            observed,
            w.expected,
            evidence,
        )
    if separate and second.status != 429:
        summary = (
            f"429 after {count} requests of {w.first} by policy {_names(separate)}, which does not apply to {w.second} "
            f"(answered {statuses})"
        )
        return _retry_after(refused, summary, observed, w.expected, evidence)
    # The policy names do not decide (none advertised, or the quota looked whole): the timing must.
    if second.status == 429:
        own, theirs = set(refused.exhausted), set(second.exhausted)
        if own and theirs and not own <= theirs:
            return Finding(
                "error",
                f"{w.second} was refused by {', '.join(map(repr, sorted(theirs)))}, but {w.first} was also refused by "
                f"{', '.join(map(repr, sorted(own - theirs)))}: no verdict on the latter",
                observed,
                w.expected,
                evidence,
            )
        if observation.wait.cut_short:
            return Finding(
                "error",
                f"{w.second} was refused too, but the wait for earlier bursts was cut to {observation.wait.slept_s:g} s "
                f"of {observation.wait.wanted_s:g} s: this may be their residue",
                observed,
                w.expected,
                evidence,
            )
        return Finding(
            "failed",
            f"after 429 for {w.first} (request {count}) {w.second} was refused as well: {w.shared}",
            observed,
            w.expected,
            evidence,
        )
    if len(seconds) < COMPARISONS:
        return Finding(
            "error",
            f"only {len(seconds)} of {COMPARISONS} comparison requests of {w.second} were answered other than 5xx: no verdict",
            observed,
            w.expected,
            evidence,
        )
    lifted = next((c for c in controls if c.status != 429), None)
    if lifted is not None and lifted.status is None:
        return Finding("error", f"the control request ({w.first} again) failed: {lifted.error}", observed, w.expected, evidence)
    if lifted is not None or len(controls) < CONTROLS:
        got = lifted.status if lifted is not None else "nothing"
        return Finding(
            "error",
            f"inconclusive: the first limit lifted within the comparison: {w.first} got {got} right after {w.second}'s "
            f"{statuses}, so those may only show a refill, not a separate limit",
            observed,
            w.expected,
            evidence,
        )
    summary = (
        f"429 after {count} requests of {w.first} while {w.second} got {statuses} and {w.first} was still refused "
        f"{len(controls)} times right after"
    )
    return _retry_after(refused, summary, observed, w.expected, evidence)


def judge_user_limit(observation: LimitObservation) -> Finding:
    """One identity gets 429 while a second identity from the same address still gets through, and the first is still refused."""
    return _judge_separation(observation, _USER)


def judge_endpoint_limit(observation: LimitObservation) -> Finding:
    """The limited endpoint gets 429 while another endpoint, same address and a valid token, still answers."""
    return _judge_separation(observation, _ENDPOINT)
