"""One bounded HTTP GET: the adapter every HTTP-based check family builds on.

httpx's timeouts apply per network operation, so a server that drips one byte a second never
trips them; the whole exchange therefore runs under one ``asyncio`` deadline as well. Bodies are
read up to a cap, so a hostile Content-Length or an endless body cannot exhaust memory.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from releasegate._exceptions import ProbeError, ProbeTimeout
from releasegate.config import RetryPolicy
from releasegate.probes.retry import until_passed
from releasegate.results import Finding

# Headers whose values are credentials: never kept in evidence.
SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"})
EVIDENCE_BODY_CHARS = 2048


@dataclass(frozen=True)
class HttpSettings:
    timeout_s: float
    max_body_bytes: int
    verify: ssl.SSLContext | bool = True
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HttpObservation:
    """What one request saw. ``body`` holds at most ``max_body_bytes`` bytes."""

    url: str
    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes
    truncated: bool
    latency_ms: float

    def __post_init__(self) -> None:
        # Header names are case-insensitive; lower-case them once so lookups and redaction cannot miss.
        object.__setattr__(self, "headers", {k.lower(): v for k, v in self.headers.items()})

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def evidence(self) -> dict[str, Any]:
        """Bounded, credential-free, JSON-serialisable record of the exchange."""
        excerpt = self.body[:EVIDENCE_BODY_CHARS].decode("utf-8", errors="replace")
        return {
            "url": self.url,
            "status": self.status,
            "latency_ms": round(self.latency_ms, 1),
            "headers": {k: ("[redacted]" if k in SENSITIVE_HEADERS else v) for k, v in self.headers.items()},
            "body_excerpt": excerpt,
            "body_truncated": self.truncated or len(self.body) > EVIDENCE_BODY_CHARS,
        }


def ssl_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """The system trust store plus the target's private CA, if any."""
    context = ssl.create_default_context()
    if ca_bundle is not None:
        try:
            context.load_verify_locations(cafile=str(ca_bundle))
        except (OSError, ssl.SSLError) as exc:
            raise ProbeError(f"cannot load CA bundle {ca_bundle}: {exc}") from None
    return context


def get(url: str, settings: HttpSettings) -> HttpObservation:
    """GET ``url`` within ``settings.timeout_s`` in total; raise ProbeError when nothing could be measured."""
    # Not asyncio.run(): on the way out it joins the default executor, so a getaddrinfo() stuck in a
    # slow resolver would hold the probe long past its timeout. close() leaves that thread to finish alone.
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(fetch(url, settings))
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


async def fetch(url: str, settings: HttpSettings) -> HttpObservation:
    try:
        return await asyncio.wait_for(_fetch(url, settings), timeout=settings.timeout_s)
    except (TimeoutError, httpx.HTTPError, OSError, ssl.SSLError) as exc:
        raise probe_error(exc, url, timeout=f"no complete answer within {settings.timeout_s:g} s") from None


def probe_error(exc: BaseException, url: str, *, timeout: str) -> ProbeError:
    """What an HTTP exchange that failed with ``exc`` could not measure, in words (``timeout``: the
    message for running out of time). For ``except (TimeoutError, httpx.HTTPError, OSError, ssl.SSLError)``."""
    if isinstance(exc, (TimeoutError, httpx.TimeoutException)):
        return ProbeTimeout(timeout, url=url)
    if isinstance(resolution := _innermost(exc), socket.gaierror):
        # "[Errno -2] Name or service not known" names neither the host nor DNS: say both, so the
        # cause reads as a typo or a missing record, not as a service that is down.
        host = urlsplit(url).hostname or url
        return ProbeError(f"cannot resolve host name {host} (DNS): {resolution.strerror or resolution}", url=url)
    if isinstance(exc, httpx.ConnectError):
        return ProbeError(f"cannot connect: {_cause(exc)}", url=url)
    if isinstance(exc, httpx.RemoteProtocolError):
        return ProbeError(f"malformed or aborted HTTP answer: {_cause(exc)}", url=url)
    if isinstance(exc, httpx.HTTPError):
        return ProbeError(f"HTTP exchange failed: {_cause(exc)}", url=url)
    return ProbeError(f"network error: {exc}", url=url)


def client_tls(verify: ssl.SSLContext | bool) -> ssl.SSLContext:
    """An SSL context for a raw client connection from HttpSettings.verify (False: no verification)."""
    if isinstance(verify, ssl.SSLContext):
        return verify
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def _fetch(url: str, settings: HttpSettings) -> HttpObservation:
    timeout = httpx.Timeout(settings.timeout_s)
    async with httpx.AsyncClient(verify=settings.verify, timeout=timeout, follow_redirects=False, trust_env=False) as client:
        started = time.perf_counter()
        headers = dict(settings.headers)
        if not any(name.lower() == "accept-encoding" for name in headers):
            # httpx decompresses before the cap applies: a compressed answer could inflate ~1000x past it.
            headers["Accept-Encoding"] = "identity"
        async with client.stream("GET", url, headers=headers) as response:
            body, truncated = await _read_bounded(response, settings.max_body_bytes)
            latency_ms = (time.perf_counter() - started) * 1000
            return HttpObservation(
                url=url,
                status=response.status_code,
                reason=response.reason_phrase,
                headers={k.lower(): v for k, v in response.headers.items()},
                body=body,
                truncated=truncated,
                latency_ms=latency_ms,
            )


async def _read_bounded(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` decoded bytes, and whether there was more.

    Raw bytes are read and decompressed here with an output bound, because httpx's own
    decoding inflates a whole chunk before any cap applies (a gzip bomb grows ~1000x).
    """
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        # wbits 47 (32 + 15) accepts gzip and zlib headers; raw deflate is rare enough to ignore.
        decoder = zlib.decompressobj(47)
    elif encoding in ("identity", ""):
        decoder = None
    else:
        raise ProbeError(f"unsupported Content-Encoding {encoding!r} (asked for identity)", url=str(response.url))
    chunks: list[bytes] = []
    size = 0
    async for raw in response.aiter_raw():
        try:
            chunk = decoder.decompress(raw, limit - size + 1) if decoder is not None else raw
        except zlib.error as exc:
            raise ProbeError(f"corrupt {encoding} body: {exc}", url=str(response.url)) from None
        room = limit - size
        if len(chunk) > room or (decoder is not None and decoder.unconsumed_tail):
            chunks.append(chunk[:room])
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), False


def _innermost(exc: BaseException) -> BaseException:
    """The exception at the bottom of ``exc``'s cause/context chain (httpx wraps ssl and socket errors)."""
    inner: BaseException = exc
    seen = {id(exc)}  # an explicitly set __cause__ can close a cycle
    while (nxt := inner.__cause__ or inner.__context__) is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        inner = nxt
    return inner


def _cause(exc: BaseException) -> str:
    """The innermost readable reason (httpx wraps ssl and socket errors)."""
    inner = _innermost(exc)
    text = str(inner) or type(inner).__name__
    return text if inner is exc else f"{text} ({type(inner).__name__})"


def judged_get(
    url: str,
    settings: HttpSettings,
    judge: Callable[[HttpObservation], Finding],
    *,
    retry: RetryPolicy | None = None,
) -> Finding:
    """GET ``url`` and judge the answer, retrying within ``retry``'s window until it passes.

    An exchange that could not be measured becomes an ``error`` finding, never a pass.
    """

    def attempt() -> Finding:
        try:
            observation = get(url, settings)
        except ProbeError as exc:
            return Finding("error", str(exc), observed=type(exc).__name__, evidence={"url": url})
        return judge(observation)

    return attempt() if retry is None else until_passed(attempt, retry)
