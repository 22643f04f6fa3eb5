"""WebSocket family: the opening handshake and the limits behind it, probed the way a client meets them.

    security.websocket.auth              no credentials, an invalid token (header, and as the browser sends it: subprotocol
                                         "bearer, <token>") -> refused before 101; the valid token -> 101 (both ways)
    security.websocket.origin            valid token + a foreign Origin (or ``Origin: null``) -> refused; no Origin -> 101
    security.websocket.tls               the same path over plaintext ws:// never gets 101 (nor a 401 challenge)
    security.websocket.message_size      a text message of limit + 1 bytes -> the server closes with 1009
    security.websocket.connection_limit  the (cap + 1)-th connection of one user is refused (or closed with 1008/1013),
                                         and the first cap connections are all still open afterwards

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
import contextlib
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.typing import Origin, Subprotocol

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
# Close codes that say "limit" when a server enforces the cap by accepting and closing the extra
# connection: policy violation, try again later (RFC 6455 §7.4.1), and the application range 4000-4999
# (noted). 1000/1001 are what an idle or shutting-down server sends: never proof of a cap.
CAP_CLOSE_CODES = (1008, 1013)
APPLICATION_CLOSE_CODES = range(4000, 5000)
NORMAL_CLOSE_CODES = (1000, 1001)
# After the server answered the oversized message instead of closing, a close may still follow:
# this long (the close decides the message-size check, so an answer only shortens the wait).
CLOSE_GRACE_S = 0.5
# Each check's probe as a whole may take this many probe timeouts (several handshakes, a close)...
BUDGET_FACTOR = 3
# ... and the connection-limit probe this much more per connection it may open (up to 201, one by one).
PER_CONNECTION_S = 0.25
# A "limit + 1" message above this is not sent: the probe must stay bounded whatever the target claims.
MAX_PROBE_MESSAGE_BYTES = 16 * 1024 * 1024
# Early refusals within the cap are retried after these pauses (1.5 s in all): a connection this family
# closed a moment ago may still count on the server until its handler has finished, longer under load.
CAP_RETRY_DELAYS_S = (0.1, 0.2, 0.4, 0.8)
CAP_RETRIES = len(CAP_RETRY_DELAYS_S)
EVIDENCE_HEADERS = ("www-authenticate", "location", "retry-after", "content-type", "sec-websocket-protocol", "sec-websocket-extensions")
EVIDENCE_TEXT_CHARS = 200
REDACTED = "[redacted]"
BEARER_SUBPROTOCOL = "bearer"
# What a browser sends from a sandboxed iframe, a data: or file: URL, or after a cross-origin redirect.
NULL_ORIGIN = "null"


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


HeldState = Literal["open", "closed", "silent"]


@dataclass(frozen=True)
class Held:
    """One of the first ``cap`` connections, checked after the extra one's outcome: pong, close, or nothing."""

    number: int
    state: HeldState
    close_code: int | None = None  # "closed": the server's code (1006: no close frame)

    def describe(self) -> str:
        if self.state == "closed":
            return f"connection {self.number}: closed {self.close_code}"
        return f"connection {self.number}: {'no pong' if self.state == 'silent' else 'open'}"


@dataclass(frozen=True)
class ConnectionLimitObservation:
    """Connections of one user opened in order until one was refused or ``cap + 1`` were accepted.

    ``extra_close_code``: the server closed the accepted (cap + 1)-th connection within the probe
    timeout (enforcement by accept-then-close), with that code (1006: no close frame).
    ``held``: after the extra connection's outcome, whether each of the first ``cap`` is still open
    (a ping answered); empty when the probe stopped before connection ``cap + 1``.
    """

    cap: int
    attempts: tuple[Handshake, ...]
    extra_close_code: int | None = None
    retries: int = 0
    held: tuple[Held, ...] = ()

    @property
    def opened(self) -> int:
        return sum(1 for attempt in self.attempts if attempt.accepted)

    def evidence(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "cap": self.cap,
            "statuses": [attempt.status for attempt in self.attempts],
            "retries": self.retries,
            "extra_close_code": self.extra_close_code,
            "held_open": sum(1 for h in self.held if h.state == "open"),
            "held_lost": [h.describe() for h in self.held if h.state != "open"][:10],
        }
        if self.attempts:
            record["last"] = self.attempts[-1].evidence()
        return record


# --------------------------------------------------------------------------- judges (pure)


def _labels(attempts: Iterable[Handshake]) -> str:
    return "; ".join(f"{a.label}: {a.status if a.status is not None else a.problem}" for a in attempts)


def _judge_refusals(
    must_refuse: Sequence[Handshake],
    control: Handshake,
    *,
    refusals: tuple[int, ...],
    subject: str,
    shown: Sequence[Handshake] = (),
    expected_shown: str = "",
    note: str = "",
) -> Finding:
    """Every attempt in ``must_refuse`` refused before 101, and the ``control`` accepted.

    ``shown``: further attempts kept in observed/evidence that decide nothing here (their
    ``expected_shown`` says why); ``note`` ends a passing summary.
    """
    everything = (*must_refuse, control, *shown)
    observed = {a.label: a.describe() for a in everything}
    expected = {a.label: "refused: " + " or ".join(map(str, refusals)) for a in must_refuse} | {control.label: "101 (accepted)"}
    expected |= {a.label: expected_shown for a in shown}
    evidence = {"attempts": [a.evidence() for a in everything]}
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
    note = (f"; note: refused with an unusual status: {_labels(unusual)}" if unusual else "") + note
    refused = ", ".join(f"{a.label} ({a.status})" for a in must_refuse)
    return Finding("passed", f"{subject}: refused {refused}; accepted {control.label}{note}", observed, expected, evidence)


def judge_auth(anonymous: Handshake, invalid: Handshake, valid: Handshake, browser: tuple[Handshake, Handshake] | None = None) -> Finding:
    """security.websocket.auth: no credentials and an invalid token refused (401/403), the valid token accepted.

    ``browser``: the same invalid and valid tokens sent the way a browser must send them, as the
    subprotocol list ``bearer, <token>``. The invalid one must be refused too, its refusal counting
    only when the valid one is accepted that way: a target without subprotocol auth refuses both,
    and then that half is skipped with a note (an accepted invalid token fails whatever the control).
    """
    if browser is None:
        return _judge_refusals((anonymous, invalid), valid, refusals=AUTH_REFUSALS, subject="WebSocket auth")
    tampered, token = browser
    if token.accepted or tampered.accepted:
        return _judge_refusals(
            (anonymous, invalid, tampered),
            valid,
            refusals=AUTH_REFUSALS,
            subject="WebSocket auth",
            shown=(token,),
            expected_shown="101 (accepted), or subprotocol auth unsupported (that half skipped)",
            note="" if token.accepted else f"; {token.label} was not accepted either ({token.describe()})",
        )
    return _judge_refusals(
        (anonymous, invalid),
        valid,
        refusals=AUTH_REFUSALS,
        subject="WebSocket auth",
        shown=(tampered, token),
        expected_shown="not judged: the valid token via subprotocol was refused (no subprotocol auth)",
        note=f"; subprotocol auth not judged: {token.label} was {token.describe()}, the target seems not to support it",
    )


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


def _cap_close(code: int) -> bool:
    return code in CAP_CLOSE_CODES or code in APPLICATION_CLOSE_CODES


def judge_connection_limit(observation: ConnectionLimitObservation) -> Finding:
    """security.websocket.connection_limit: ``cap`` connections of one user accepted and kept, the next one refused.

    Refused means an HTTP refusal (403/429/503) or an accept closed by the server with 1008/1013
    (or an application code). Either counts only if the first ``cap`` connections are all still
    open afterwards: a server that closes connections on its own (idle timeout, or evicting the
    oldest) makes any outcome of connection ``cap + 1`` say nothing about a per-user cap.
    """
    cap = observation.cap
    expected = (
        f"{cap} connections accepted and still open; connection {cap + 1} refused ({'/'.join(map(str, CAP_REFUSALS))}) "
        f"or closed by the server with {'/'.join(map(str, CAP_CLOSE_CODES))}"
    )
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
    code = observation.extra_close_code
    observed = f"{observation.opened} accepted; connection {number}: {last.describe()}" + (f", closed {code}" if code is not None else "")
    if len(observation.held) != cap:
        return Finding(
            "error", f"cannot judge: the first {cap} connections were not checked after connection {number}", observed, expected, evidence
        )
    lost = [h for h in observation.held if h.state != "open"]
    if lost:
        return Finding(
            "error",
            f"cannot judge: {len(lost)} of the first {cap} connections did not stay open after connection {number} "
            f"({'; '.join(h.describe() for h in lost[:5])}): the server ends connections on its own (an idle timeout, or "
            f"evicting the oldest), so connection {number}'s outcome ({last.describe()}) does not show a per-user cap",
            observed + f"; {len(lost)} of the first {cap} lost",
            expected,
            evidence,
        )
    if last.accepted:
        if code is None:
            return Finding(
                "failed",
                f"all {number} connections of one user were accepted and stayed open; the cap of {cap} is not enforced",
                observed,
                expected,
                evidence,
            )
        if code in NORMAL_CLOSE_CODES:
            return Finding(
                "failed",
                f"connection {number} was accepted, then closed with {code} (a normal close, not a limit: refuse the upgrade "
                f"with 429 or close with 1008/1013); the cap of {cap} is not shown to be enforced",
                observed,
                expected,
                evidence,
            )
        if not _cap_close(code):
            return Finding(
                "error",
                f"cannot judge: connection {number} was accepted, then closed with {code}, which does not say 'too many connections'",
                observed,
                expected,
                evidence,
            )
        note = f" (application close code {code}, read as the cap)" if code in APPLICATION_CLOSE_CODES else ""
        return Finding(
            "passed",
            f"connection {number} was accepted and closed by the server with {code} while the first {cap} stayed open{note}",
            observed,
            expected,
            evidence,
        )
    if last.status is None:
        return Finding("error", f"connection {number} got no answer: {last.problem}", observed, expected, evidence)
    if last.status in CAP_REFUSALS:
        return Finding(
            "passed",
            f"{cap} connections accepted and still open, connection {number} refused with {last.status}",
            observed,
            expected,
            evidence,
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


class FailFastConnection(ClientConnection):
    """A client connection that drops TCP the moment it has failed the WebSocket connection.

    On a frame over ``max_size`` (or any protocol error) websockets sends its close frame (1009,
    1002, ...) and then, as RFC 6455 lets a client, waits for the server to close TCP, reading and
    discarding whatever still arrives until ``close_timeout``. Against a server streaming a 100 MB
    frame that means reading it all on a fast link, and on a slow one sitting on a dead connection
    for close_timeout with its reader still waiting: a probe that only reads would take the silence
    for "no close" (the message-size check) or "every event lost" (sync). Having failed it, the probe
    has nothing more to read: abort at once, so the reader sees the close it sent.
    """

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        sent, received = self.protocol.close_sent, self.protocol.close_rcvd
        # Our own close() sends 1000 and waits for the server's answer as usual; any other code we
        # sent first is websockets failing the connection.
        if sent is not None and received is None and sent.code not in NORMAL_CLOSE_CODES:
            self.transport.abort()


class _NoRedirects(connect):
    """``connect`` that reports a 3xx instead of following it (the answer is judged; credentials stay put)."""

    def process_redirect(self, exc: Exception) -> Exception | str:
        return exc


def _headers(raw: Any, secrets: Sequence[str]) -> dict[str, str]:
    return {name: scrub(str(raw[name]), secrets) for name in EVIDENCE_HEADERS if name in raw}


async def _open(
    url: str,
    settings: WsSettings,
    *,
    label: str,
    headers: Mapping[str, str] | None = None,
    origin: str | None = None,
    subprotocols: Sequence[str] | None = None,
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
            subprotocols=[Subprotocol(p) for p in subprotocols] if subprotocols else None,
            compression=None,  # sizes are judged on the wire as sent; no permessage-deflate
            proxy=None,  # never through an environment proxy: the probe talks to the target itself
            user_agent_header=USER_AGENT,
            open_timeout=settings.timeout_s,
            close_timeout=settings.timeout_s,
            ping_interval=None,
            max_size=settings.max_frame_bytes,
            max_queue=4,
            create_connection=FailFastConnection,
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

    async def probe() -> tuple[Handshake, Handshake, Handshake, tuple[Handshake, Handshake]]:
        anonymous = await _attempt(url, settings, label="no credentials")
        invalid = await _attempt(url, settings, label="invalid token (signature replaced)", headers=bearer(invalid_token(token)))
        valid = await _attempt(url, settings, label="valid token", headers=bearer(token))
        # Browsers cannot set Authorization on a WebSocket: the token travels as a subprotocol instead.
        tampered = await _attempt(
            url, settings, label="invalid token via subprotocol (bearer, <token>)", subprotocols=browser_subprotocols(invalid_token(token))
        )
        accepted = await _attempt(url, settings, label="valid token via subprotocol", subprotocols=browser_subprotocols(token))
        return anonymous, invalid, valid, (tampered, accepted)

    return _concluded(probe, lambda seen: judge_auth(*seen), settings, url)


def browser_subprotocols(token: str) -> tuple[str, str]:
    """``Sec-WebSocket-Protocol: bearer, <token>``: how a browser client hands its token to the upgrade."""
    return (BEARER_SUBPROTOCOL, token)


def foreign_origins(url: str) -> tuple[str, ...]:
    """An unrelated site, one whose name begins with the target's own host (it catches prefix matching), and ``null``.

    ``null`` is the opaque origin (sandboxed iframes, data: and file: pages): an allow-list that
    lets it through, or that parses it leniently, lets any such page in.
    """
    host = urlsplit(url).hostname or "localhost"
    return FOREIGN_ORIGIN, f"https://{host}.evil.example.test", NULL_ORIGIN


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
    """Probe and judge security.websocket.connection_limit: open up to ``cap + 1`` connections of one user.

    Every wait is for an event (an answer, a close frame, a pong) bounded by the probe timeout,
    never a short fixed window: a server slowed by load must not look like one without a cap.
    """
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
                    await asyncio.sleep(CAP_RETRY_DELAYS_S[retries])
                    retries += 1
                    continue
                attempts.append(handshake)
                if connection is None:
                    break
                opened.append(connection)
            if len(attempts) <= cap:
                return ConnectionLimitObservation(cap=cap, attempts=tuple(attempts), retries=retries)
            extra_close = None
            if attempts[-1].accepted:
                # A server enforcing the cap by accept-then-close sends its close frame at once; one
                # without a cap sends nothing, and only that case waits the whole timeout.
                extra_close = await _closed_within(opened[-1], settings.timeout_s)
            # Only now, after the extra connection's outcome: are the first `cap` all still open?
            held = await asyncio.gather(*(_held(i, c, settings.timeout_s) for i, c in enumerate(opened[:cap], 1)))
            return ConnectionLimitObservation(
                cap=cap, attempts=tuple(attempts), extra_close_code=extra_close, retries=retries, held=tuple(held)
            )
        finally:
            await _close_all(opened)

    extra_s = (cap + 1) * PER_CONNECTION_S + sum(CAP_RETRY_DELAYS_S) + 2 * settings.timeout_s  # the close wait, the pings
    return _concluded(probe, judge_connection_limit, settings, url, extra_s=extra_s)


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


async def _held(number: int, connection: ClientConnection, timeout_s: float) -> Held:
    """Whether ``connection`` is still open: a ping answered within ``timeout_s`` (frames meanwhile are read and dropped)."""

    async def drain() -> None:
        # The pong is only read if the frames ahead of it are: with a full queue the client stops reading.
        with contextlib.suppress(ConnectionClosed):
            async for _ in connection:
                pass

    reader = asyncio.create_task(drain())
    try:
        async with asyncio.timeout(timeout_s):
            pong = await connection.ping()
            await pong
        return Held(number, "open")
    except TimeoutError:
        return Held(number, "silent")
    except ConnectionClosed as exc:
        return Held(number, "closed", exc.rcvd.code if exc.rcvd is not None else 1006)
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
