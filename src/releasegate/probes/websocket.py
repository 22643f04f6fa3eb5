"""WebSocket family: the opening handshake and the limits behind it, probed the way a client meets them.

    security.websocket.auth              no credentials, an invalid token -> refused before 101; the valid token -> 101
    security.websocket.origin            valid token + a foreign Origin -> refused; valid token, no Origin -> 101
    security.websocket.tls               the same path over plaintext ws:// never gets 101 (nor a 401 challenge)
    security.websocket.message_size      a text message of limit + 1 bytes -> the server closes with 1009
    security.websocket.connection_limit  the (cap + 1)-th connection of one user is refused

Each check has a control: the valid token must be accepted, or a refusal proves nothing (the gate's own
token may be stale) and the check is ``error``. I/O is the thin :func:`_open` adapter over the
``websockets`` asyncio client: every handshake is bounded by ``open_timeout``, every close by
``close_timeout``, and each check's whole probe by one deadline. Redirects are never followed: a 3xx is
an answer to judge, and following one could carry credentials to another origin. The token is sent to
the target's ws_url only (never to the plaintext endpoint) and never enters evidence: attempts are
described by what was sent ("valid token"), and server text is scrubbed of anything token-like.

The judge functions are pure: observations in, one :class:`Finding` out.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.typing import Origin

from releasegate._exceptions import ProbeError, ProbeTimeout
from releasegate.config import Gates, LoadedTarget, Target
from releasegate.probes.credentials import FOREIGN_ORIGIN, bearer, tampered_jwt
from releasegate.probes.http import ssl_context
from releasegate.results import Finding

T = TypeVar("T")

USER_AGENT = "releasegate-websocket-probe"
# Refusal statuses that say "not you" / "not from there"; any other non-101 answer is still a refusal (noted).
AUTH_REFUSALS = (401, 403)
ORIGIN_REFUSALS = (403,)
# Statuses that say "too many connections"; a 401 or a 5xx on the extra connection is not a cap.
CAP_REFUSALS = (403, 429, 503)
# A server may enforce a limit by accepting and closing at once; this long is "at once".
CLOSE_GRACE_S = 0.5
# Each check's probe as a whole may take this many probe timeouts (several handshakes, a close)...
BUDGET_FACTOR = 3
# ... and the connection-limit probe this much more per connection it may open (up to 201, one by one).
PER_CONNECTION_S = 0.25
# A "limit + 1" message above this is not sent: the probe must stay bounded whatever the target claims.
MAX_PROBE_MESSAGE_BYTES = 16 * 1024 * 1024
# Early refusals within the cap are retried this often, CLOSE_GRACE_S / 5 apart: a connection this
# family closed a moment ago may still count on the server until its handler has finished.
CAP_RETRIES = 3
EVIDENCE_HEADERS = ("www-authenticate", "location", "retry-after", "content-type", "sec-websocket-protocol", "sec-websocket-extensions")
EVIDENCE_TEXT_CHARS = 200
REDACTED = "[redacted]"


# --------------------------------------------------------------------------- observations


@dataclass(frozen=True)
class Handshake:
    """One opening handshake, credential-free: what was sent (``label``) and what came back.

    ``status`` is 101 when the upgrade was accepted, the HTTP status of a refusal, or None when no
    HTTP answer came (then ``problem`` says why; ``connection_refused`` / ``timed_out`` classify it).
    """

    label: str
    url: str
    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body_excerpt: str = ""
    problem: str | None = None
    connection_refused: bool = False
    timed_out: bool = False
    latency_ms: float = 0.0

    @property
    def accepted(self) -> bool:
        return self.status == 101

    def describe(self) -> str:
        if self.accepted:
            return "101 (accepted)"
        if self.status is not None:
            return f"{self.status} (refused)"
        return f"no answer: {self.problem}"

    def evidence(self) -> dict[str, Any]:
        record: dict[str, Any] = {"sent": self.label, "url": self.url, "status": self.status, "latency_ms": round(self.latency_ms, 1)}
        if self.headers:
            record["headers"] = dict(self.headers)
        if self.body_excerpt:
            record["body_excerpt"] = self.body_excerpt
        if self.problem is not None:
            record["problem"] = self.problem
        return record


@dataclass(frozen=True)
class MessageSizeObservation:
    """An accepted connection (``handshake``), one oversized text message, and how the connection ended."""

    handshake: Handshake
    sent_bytes: int = 0
    server_close_code: int | None = None  # the code in the server's close frame
    server_close_reason: str = ""
    closed_without_frame: bool = False  # the connection ended with no close frame from the server (1006)
    probe_close_code: int | None = None  # the probe closed first (1009: a server frame above its own cap)
    frames_received: int = 0
    waited_ms: float = 0.0

    def evidence(self) -> dict[str, Any]:
        return {
            "handshake": self.handshake.evidence(),
            "sent_bytes": self.sent_bytes,
            "server_close_code": self.server_close_code,
            "server_close_reason": self.server_close_reason,
            "closed_without_frame": self.closed_without_frame,
            "probe_close_code": self.probe_close_code,
            "frames_received": self.frames_received,
            "waited_ms": round(self.waited_ms, 1),
        }


@dataclass(frozen=True)
class ConnectionLimitObservation:
    """Connections of one user opened in order until one was refused or ``cap + 1`` were accepted.

    ``extra_close_code``: the server closed the accepted (cap + 1)-th connection within
    :data:`CLOSE_GRACE_S` (enforcement by accept-then-close), with that code (1006: no close frame).
    """

    cap: int
    attempts: tuple[Handshake, ...]
    extra_close_code: int | None = None
    retries: int = 0

    @property
    def opened(self) -> int:
        return sum(1 for attempt in self.attempts if attempt.accepted)

    def evidence(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "cap": self.cap,
            "statuses": [attempt.status for attempt in self.attempts],
            "retries": self.retries,
            "extra_close_code": self.extra_close_code,
        }
        if self.attempts:
            record["last"] = self.attempts[-1].evidence()
        return record


# --------------------------------------------------------------------------- judges (pure)


def _labels(attempts: Iterable[Handshake]) -> str:
    return "; ".join(f"{a.label}: {a.status if a.status is not None else a.problem}" for a in attempts)


def _judge_refusals(must_refuse: Sequence[Handshake], control: Handshake, *, refusals: tuple[int, ...], subject: str) -> Finding:
    """Every attempt in ``must_refuse`` refused before 101, and the ``control`` accepted."""
    observed = {a.label: a.describe() for a in (*must_refuse, control)}
    expected = {a.label: "refused: " + " or ".join(map(str, refusals)) for a in must_refuse} | {control.label: "101 (accepted)"}
    evidence = {"attempts": [a.evidence() for a in (*must_refuse, control)]}
    accepted = [a for a in must_refuse if a.accepted]
    if accepted:
        # Proof whatever the control says: the upgrade got through without what it needs.
        return Finding("failed", f"{subject}: upgrade accepted with {_labels(accepted)}", observed, expected, evidence)
    if not control.accepted:
        return Finding(
            "error",
            f"{subject}: cannot judge, the control upgrade ({control.label}) was not accepted: {control.describe()}; "
            "a refusal of everything proves nothing (is the gate's token valid and the ws_url right?)",
            observed,
            expected,
            evidence,
        )
    unanswered = [a for a in must_refuse if a.status is None]
    if unanswered:
        return Finding("error", f"{subject}: no HTTP answer to {_labels(unanswered)}", observed, expected, evidence)
    unusual = [a for a in must_refuse if a.status not in refusals]
    note = f"; note: refused with an unusual status: {_labels(unusual)}" if unusual else ""
    refused = ", ".join(f"{a.label} ({a.status})" for a in must_refuse)
    return Finding("passed", f"{subject}: refused {refused}; accepted {control.label}{note}", observed, expected, evidence)


def judge_auth(anonymous: Handshake, invalid: Handshake, valid: Handshake) -> Finding:
    """security.websocket.auth: no credentials and an invalid token refused (401/403), the valid token accepted."""
    return _judge_refusals((anonymous, invalid), valid, refusals=AUTH_REFUSALS, subject="WebSocket auth")


def judge_origin(foreign: Sequence[Handshake], control: Handshake) -> Finding:
    """security.websocket.origin: every foreign Origin refused (403) although the token is valid; no Origin accepted."""
    return _judge_refusals(foreign, control, refusals=ORIGIN_REFUSALS, subject="WebSocket Origin")


def judge_plaintext(attempt: Handshake | None, *, ws_url: str) -> Finding:
    """security.websocket.tls: plaintext ws:// never upgrades.

    ``attempt`` is the ws:// handshake sent without credentials, or None when the target's own
    ws_url is ws:// (then every client's traffic, token included, is plaintext). A 401 fails too:
    the WebSocket endpoint itself answers over plaintext and asks for the credentials a client
    would then send in clear (the probe never sends them there). Redirects, other refusals, a
    closed port or a dropped connection pass; a timeout cannot be judged.
    """
    expected = "no 101 (and no 401 challenge) on ws://: refused, redirected, or nothing listening"
    if attempt is None:
        return Finding("failed", f"the target's ws_url is plaintext: {ws_url}", "ws_url uses ws://", "a wss:// ws_url", {"ws_url": ws_url})
    evidence = {"attempt": attempt.evidence()}
    observed = attempt.describe()
    if attempt.accepted:
        return Finding("failed", f"ws:// upgrade accepted (101) at {attempt.url}", observed, expected, evidence)
    if attempt.status == 401:
        return Finding(
            "failed",
            f"the WebSocket endpoint answers over plaintext at {attempt.url} and asks for credentials (401): "
            "a client would send its token in clear",
            observed,
            expected,
            evidence,
        )
    if attempt.status is not None:
        kind = "redirected" if 300 <= attempt.status < 400 else "refused"
        where = f" to {attempt.headers['location']}" if "location" in attempt.headers else ""
        return Finding("passed", f"ws:// upgrade {kind} with {attempt.status}{where}", observed, expected, evidence)
    if attempt.timed_out:
        return Finding("error", f"no answer from {attempt.url} within the timeout: {attempt.problem}", observed, expected, evidence)
    if attempt.connection_refused:
        return Finding("passed", f"nothing listens for plaintext at {attempt.url} (connection refused)", observed, expected, evidence)
    return Finding("passed", f"ws:// upgrade not completed: {attempt.problem}", observed, expected, evidence)


def judge_message_size(observation: MessageSizeObservation, *, limit: int) -> Finding:
    """security.websocket.message_size: a text message of ``limit + 1`` bytes is answered by a 1009 close."""
    expected = f"close 1009 after a {limit + 1}-byte message"
    evidence = observation.evidence()
    handshake = observation.handshake
    if not handshake.accepted:
        return Finding(
            "error",
            f"cannot send a message: the upgrade with the valid token was not accepted: {handshake.describe()}",
            handshake.describe(),
            expected,
            evidence,
        )
    code = observation.server_close_code
    if code == 1009:
        return Finding(
            "passed", f"a {observation.sent_bytes}-byte message closed the connection with 1009", "close 1009", expected, evidence
        )
    if code is not None:
        reason = f" ({observation.server_close_reason})" if observation.server_close_reason else ""
        return Finding(
            "failed",
            f"a {observation.sent_bytes}-byte message closed the connection with {code}{reason}, not 1009",
            f"close {code}",
            expected,
            evidence,
        )
    if observation.closed_without_frame:
        return Finding(
            "failed",
            f"the connection dropped after a {observation.sent_bytes}-byte message without a close frame (1006), not 1009",
            "closed without a close frame (1006)",
            expected,
            evidence,
        )
    if observation.probe_close_code is not None:
        return Finding(
            "error",
            f"the probe closed the connection itself ({observation.probe_close_code}): a server frame exceeded the probe's size cap",
            f"probe closed {observation.probe_close_code}",
            expected,
            evidence,
        )
    return Finding(
        "failed",
        f"the connection stayed open {observation.waited_ms / 1000:.1f} s after a {observation.sent_bytes}-byte message "
        f"({observation.frames_received} frames received): messages over {limit} bytes are accepted",
        "still open",
        expected,
        evidence,
    )


def judge_connection_limit(observation: ConnectionLimitObservation) -> Finding:
    """security.websocket.connection_limit: ``cap`` connections of one user accepted, the next one refused."""
    cap = observation.cap
    expected = f"{cap} connections accepted, connection {cap + 1} refused ({'/'.join(map(str, CAP_REFUSALS))}) or closed at once"
    evidence = observation.evidence()
    attempts = observation.attempts
    if not attempts:
        return Finding("error", "no connection was attempted", "nothing", expected, evidence)
    last = attempts[-1]
    number = len(attempts)
    if number <= cap:  # stopped early: connection `number` was refused although within the cap
        observed = f"connection {number} of {cap}: {last.describe()}"
        if last.status is None:
            return Finding("error", f"connection {number} got no answer: {last.problem}", observed, expected, evidence)
        if last.status == 401 or last.status not in CAP_REFUSALS:
            return Finding(
                "error",
                f"cannot judge: connection {number} (within the cap of {cap}) was refused with {last.status}",
                observed,
                expected,
                evidence,
            )
        return Finding(
            "warned",
            f"connection {number} was refused ({last.status}) although the target names a cap of {cap}: the cap is lower than named, "
            "or other connections of this user are open",
            observed,
            expected,
            evidence,
        )
    observed = f"{observation.opened} accepted; connection {number}: {last.describe()}"
    if last.accepted:
        if observation.extra_close_code is not None:
            return Finding(
                "passed",
                f"connection {number} was accepted and closed at once ({observation.extra_close_code}): at most {cap} stay open",
                observed + f", closed {observation.extra_close_code}",
                expected,
                evidence,
            )
        return Finding(
            "failed", f"all {number} connections of one user were accepted; the cap of {cap} is not enforced", observed, expected, evidence
        )
    if last.status is None:
        return Finding("error", f"connection {number} got no answer: {last.problem}", observed, expected, evidence)
    if last.status in CAP_REFUSALS:
        return Finding(
            "passed", f"{cap} connections accepted, connection {number} refused with {last.status}", observed, expected, evidence
        )
    return Finding(
        "error",
        f"cannot judge: connection {number} was refused with {last.status}, which is not a connection cap",
        observed,
        expected,
        evidence,
    )


# --------------------------------------------------------------------------- pure helpers


def endpoint(target: Target) -> str | None:
    """The target's ws_url with ``websocket.query`` appended (a conversation the token may join), or None."""
    if target.ws_url is None:
        return None
    query = (target.websocket.query or "").lstrip("?&")
    if not query:
        return target.ws_url
    return target.ws_url + ("&" if "?" in target.ws_url else "?") + query


def plaintext_url(ws_endpoint: str, http_url: str | None) -> str:
    """``ws_endpoint`` over ws://, at the host and port of the plain-HTTP endpoint (default: the same host, port 80)."""
    parts = urlsplit(ws_endpoint)
    plain = urlsplit(http_url) if http_url is not None else None
    host = (plain.hostname if plain is not None else None) or parts.hostname or ""
    port = (plain.port if plain is not None else None) or 80
    netloc = f"[{host}]" if ":" in host else host
    return urlunsplit(("ws", f"{netloc}:{port}", parts.path or "/", parts.query, ""))


invalid_token = tampered_jwt  # the name the WebSocket checks use


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` cut to the evidence size, with every secret (and each JWT part of one) replaced."""
    for secret in secrets:
        for piece in (secret, *(part for part in secret.split(".") if len(part) >= 8)):
            text = text.replace(piece, REDACTED)
    return text[:EVIDENCE_TEXT_CHARS]


# --------------------------------------------------------------------------- I/O


@dataclass(frozen=True)
class WsSettings:
    """How to reach the target: timeouts, trust for wss://, the largest frame accepted, the token."""

    timeout_s: float
    ssl: ssl.SSLContext
    max_frame_bytes: int
    token: str | None = field(default=None, repr=False)

    @property
    def secrets(self) -> tuple[str, ...]:
        return () if self.token is None else (self.token, invalid_token(self.token))


def settings_for(target: LoadedTarget, policy: Gates) -> WsSettings:
    probe = policy.probe
    return WsSettings(
        timeout_s=probe.timeout_s, ssl=ssl_context(target.ca_bundle), max_frame_bytes=probe.max_body_bytes, token=target.token()
    )


class _NoRedirects(connect):
    """``connect`` that reports a 3xx instead of following it (the answer is judged; credentials stay put)."""

    def process_redirect(self, exc: Exception) -> Exception | str:
        return exc


def _headers(raw: Any, secrets: Sequence[str]) -> dict[str, str]:
    return {name: scrub(str(raw[name]), secrets) for name in EVIDENCE_HEADERS if name in raw}


async def _open(
    url: str, settings: WsSettings, *, label: str, headers: Mapping[str, str] | None = None, origin: str | None = None
) -> tuple[Handshake, ClientConnection | None]:
    """One opening handshake; the connection when it was accepted (the caller closes it)."""
    started = time.perf_counter()

    def seen(**fields: Any) -> Handshake:
        return Handshake(label=label, url=url, latency_ms=(time.perf_counter() - started) * 1000, **fields)

    try:
        connection = await _NoRedirects(
            url,
            ssl=settings.ssl if url.startswith("wss:") else None,
            origin=Origin(origin) if origin is not None else None,
            additional_headers=dict(headers) if headers else None,
            compression=None,  # sizes are judged on the wire as sent; no permessage-deflate
            proxy=None,  # never through an environment proxy: the probe talks to the target itself
            user_agent_header=USER_AGENT,
            open_timeout=settings.timeout_s,
            close_timeout=settings.timeout_s,
            ping_interval=None,
            max_size=settings.max_frame_bytes,
            max_queue=4,
        )
    except InvalidStatus as exc:
        response = exc.response
        body = response.body.decode("utf-8", errors="replace") if response.body else ""
        return seen(
            status=response.status_code, headers=_headers(response.headers, settings.secrets), body_excerpt=scrub(body, settings.secrets)
        ), None
    except TimeoutError as exc:
        return seen(problem=str(exc) or "timed out", timed_out=True), None
    except ConnectionRefusedError as exc:
        return seen(problem=f"connection refused ({exc.strerror or exc})", connection_refused=True), None
    except ssl.SSLError as exc:
        return seen(problem=f"TLS failure: {exc}"), None
    except OSError as exc:
        return seen(problem=f"network error: {exc}"), None
    except (InvalidHandshake, InvalidURI) as exc:
        cause = f" ({exc.__cause__})" if exc.__cause__ is not None else ""
        return seen(problem=f"{type(exc).__name__}: {exc}{cause}"), None
    answer = connection.response
    status = answer.status_code if answer is not None else 101
    return seen(status=status, headers=_headers(answer.headers, settings.secrets) if answer is not None else {}), connection


async def _close_all(connections: Iterable[ClientConnection]) -> None:
    """Close every connection (close handshakes in parallel, each bounded by close_timeout), then drop what is left."""
    connections = list(connections)
    await asyncio.gather(*(connection.close() for connection in connections), return_exceptions=True)
    for connection in connections:
        if not connection.transport.is_closing():
            connection.transport.abort()


async def _attempt(url: str, settings: WsSettings, **kwargs: Any) -> Handshake:
    handshake, connection = await _open(url, settings, **kwargs)
    if connection is not None:
        await _close_all([connection])
    return handshake


def _run(probe: Callable[[], Awaitable[T]], *, budget_s: float, url: str) -> T:
    """Run one probe on a fresh event loop under one total deadline; ProbeTimeout past it."""

    async def bounded() -> T:
        return await asyncio.wait_for(probe(), timeout=budget_s)

    # Not asyncio.run(): it joins the default executor on the way out, so a getaddrinfo() stuck in a
    # slow resolver would hold the probe long past its deadline (as in probes.http.get).
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(bounded())
    except TimeoutError:
        raise ProbeTimeout(f"the probe did not finish within {budget_s:g} s", url=url) from None
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


def _budget(settings: WsSettings) -> float:
    return BUDGET_FACTOR * settings.timeout_s


def _concluded(
    probe: Callable[[], Awaitable[T]], judge: Callable[[T], Finding], settings: WsSettings, url: str, *, extra_s: float = 0.0
) -> Finding:
    try:
        observation = _run(probe, budget_s=_budget(settings) + extra_s, url=url)
    except ProbeError as exc:
        return Finding("error", str(exc), type(exc).__name__, evidence={"url": url})
    return judge(observation)


def _need_token(settings: WsSettings) -> str:
    if settings.token is None:
        raise ValueError("this probe needs the target's bearer token")  # the check skips before calling it
    return settings.token


def check_auth(url: str, settings: WsSettings) -> Finding:
    """Probe and judge security.websocket.auth at ``url``."""
    token = _need_token(settings)

    async def probe() -> tuple[Handshake, Handshake, Handshake]:
        anonymous = await _attempt(url, settings, label="no credentials")
        invalid = await _attempt(url, settings, label="invalid token (signature replaced)", headers=bearer(invalid_token(token)))
        valid = await _attempt(url, settings, label="valid token", headers=bearer(token))
        return anonymous, invalid, valid

    return _concluded(probe, lambda seen: judge_auth(*seen), settings, url)


def foreign_origins(url: str) -> tuple[str, ...]:
    """An unrelated site, and one whose name begins with the target's own host (it catches prefix matching)."""
    host = urlsplit(url).hostname or "localhost"
    return FOREIGN_ORIGIN, f"https://{host}.evil.example.test"


def check_origin(url: str, settings: WsSettings) -> Finding:
    """Probe and judge security.websocket.origin at ``url``."""
    token = _need_token(settings)

    async def probe() -> tuple[list[Handshake], Handshake]:
        foreign = [
            await _attempt(url, settings, label=f"valid token, Origin {origin}", headers=bearer(token), origin=origin)
            for origin in foreign_origins(url)
        ]
        control = await _attempt(url, settings, label="valid token, no Origin", headers=bearer(token))
        return foreign, control

    return _concluded(probe, lambda seen: judge_origin(*seen), settings, url)


def check_plaintext(url: str, http_url: str | None, settings: WsSettings) -> Finding:
    """Probe and judge security.websocket.tls: the ws:// twin of ``url``, without credentials."""
    if url.startswith("ws:"):
        return judge_plaintext(None, ws_url=url)
    plain = plaintext_url(url, http_url)

    async def probe() -> Handshake:
        return await _attempt(plain, settings, label="no credentials (plaintext)")

    return _concluded(probe, lambda seen: judge_plaintext(seen, ws_url=url), settings, plain)


def check_message_size(url: str, limit: int, settings: WsSettings) -> Finding:
    """Probe and judge security.websocket.message_size: send ``limit + 1`` bytes on an accepted connection."""
    token = _need_token(settings)
    if limit + 1 > MAX_PROBE_MESSAGE_BYTES:
        return Finding(
            "error",
            f"the target's limit of {limit} bytes is above what the probe sends ({MAX_PROBE_MESSAGE_BYTES} bytes)",
            f"limit {limit}",
            f"a limit below {MAX_PROBE_MESSAGE_BYTES} bytes",
            {"url": url},
        )

    async def probe() -> MessageSizeObservation:
        handshake, connection = await _open(url, settings, label="valid token", headers=bearer(token))
        if connection is None:
            return MessageSizeObservation(handshake=handshake)
        try:
            return await _oversized(connection, handshake, limit + 1, settings.timeout_s)
        finally:
            await _close_all([connection])

    return _concluded(probe, lambda seen: judge_message_size(seen, limit=limit), settings, url)


async def _oversized(connection: ClientConnection, handshake: Handshake, size: int, timeout_s: float) -> MessageSizeObservation:
    """Send one text message of ``size`` ASCII bytes; wait for the server's close (briefly, once it answers otherwise)."""
    started = time.perf_counter()
    deadline = started + timeout_s
    frames = 0

    def ended(exc: ConnectionClosed | None) -> MessageSizeObservation:
        waited_ms = (time.perf_counter() - started) * 1000
        if exc is None:
            return MessageSizeObservation(handshake, sent_bytes=size, frames_received=frames, waited_ms=waited_ms)
        # When the probe closed first (a server frame over its max_size), the server's close frame
        # is only the echo of the probe's own code: it must not pass for the server's verdict.
        probe_first = exc.sent is not None and (exc.rcvd is None or exc.rcvd_then_sent is False)
        received = None if probe_first else exc.rcvd
        return MessageSizeObservation(
            handshake,
            sent_bytes=size,
            server_close_code=received.code if received is not None else None,
            server_close_reason=received.reason[:EVIDENCE_TEXT_CHARS] if received is not None else "",
            closed_without_frame=exc.rcvd is None and exc.sent is None,
            probe_close_code=exc.sent.code if probe_first and exc.sent is not None else None,
            frames_received=frames,
            waited_ms=waited_ms,
        )

    try:
        await connection.send("x" * size)
        while (left := deadline - time.perf_counter()) > 0:
            try:
                await asyncio.wait_for(connection.recv(), timeout=left)
            except TimeoutError:
                break
            frames += 1
            # The server answered the message instead of closing: a close may still follow, but not
            # after long; waiting out the whole timeout would only slow the failing case.
            deadline = min(deadline, time.perf_counter() + CLOSE_GRACE_S)
    except ConnectionClosed as exc:
        return ended(exc)
    return ended(None)


def check_connection_limit(url: str, cap: int, settings: WsSettings) -> Finding:
    """Probe and judge security.websocket.connection_limit: open up to ``cap + 1`` connections of one user."""
    token = _need_token(settings)

    async def probe() -> ConnectionLimitObservation:
        opened: list[ClientConnection] = []
        attempts: list[Handshake] = []
        retries = 0
        try:
            while len(attempts) <= cap:  # at most cap + 1 connections, plus CAP_RETRIES repeats
                handshake, connection = await _open(
                    url, settings, label=f"valid token, connection {len(attempts) + 1}", headers=bearer(token)
                )
                within = len(attempts) < cap
                if within and handshake.status in CAP_REFUSALS and retries < CAP_RETRIES:
                    retries += 1
                    await asyncio.sleep(CLOSE_GRACE_S / 5)
                    continue
                attempts.append(handshake)
                if connection is None:
                    break
                opened.append(connection)
            extra_close = None
            if len(attempts) == cap + 1 and attempts[-1].accepted:
                extra_close = await _closed_within(opened[-1], min(CLOSE_GRACE_S, settings.timeout_s))
            return ConnectionLimitObservation(cap=cap, attempts=tuple(attempts), extra_close_code=extra_close, retries=retries)
        finally:
            await _close_all(opened)

    return _concluded(probe, judge_connection_limit, settings, url, extra_s=(cap + 1 + CAP_RETRIES) * PER_CONNECTION_S)


async def _closed_within(connection: ClientConnection, seconds: float) -> int | None:
    """The server's close code if it closes ``connection`` within ``seconds`` (1006 without a close frame), else None."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                await connection.recv()
    except TimeoutError:
        return None
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd is not None else 1006
