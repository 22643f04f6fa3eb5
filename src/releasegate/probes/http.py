"""One bounded HTTP GET: the adapter every HTTP-based check family builds on.

httpx's timeouts apply per network operation, so a server that drips one byte a second never
trips them; the whole exchange therefore runs under one ``asyncio`` deadline as well. Bodies are
read up to a cap, so a hostile Content-Length or an endless body cannot exhaust memory.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from releasegate._exceptions import ProbeError, ProbeTimeout

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
    return asyncio.run(fetch(url, settings))


async def fetch(url: str, settings: HttpSettings) -> HttpObservation:
    try:
        return await asyncio.wait_for(_fetch(url, settings), timeout=settings.timeout_s)
    except (TimeoutError, httpx.TimeoutException):
        raise ProbeTimeout(f"no complete answer within {settings.timeout_s:g} s", url=url) from None
    except httpx.ConnectError as exc:
        raise ProbeError(f"cannot connect: {_cause(exc)}", url=url) from None
    except httpx.RemoteProtocolError as exc:
        raise ProbeError(f"malformed or aborted HTTP answer: {_cause(exc)}", url=url) from None
    except httpx.HTTPError as exc:
        raise ProbeError(f"HTTP exchange failed: {_cause(exc)}", url=url) from None
    except (OSError, ssl.SSLError) as exc:
        raise ProbeError(f"network error: {exc}", url=url) from None


async def _fetch(url: str, settings: HttpSettings) -> HttpObservation:
    timeout = httpx.Timeout(settings.timeout_s)
    async with httpx.AsyncClient(verify=settings.verify, timeout=timeout, follow_redirects=False, trust_env=False) as client:
        started = time.perf_counter()
        async with client.stream("GET", url, headers=dict(settings.headers)) as response:
            chunks: list[bytes] = []
            size = 0
            truncated = False
            async for chunk in response.aiter_bytes():
                room = settings.max_body_bytes - size
                if len(chunk) > room:
                    chunks.append(chunk[:room])
                    truncated = True
                    break
                chunks.append(chunk)
                size += len(chunk)
            latency_ms = (time.perf_counter() - started) * 1000
            return HttpObservation(
                url=url,
                status=response.status_code,
                reason=response.reason_phrase,
                headers={k.lower(): v for k, v in response.headers.items()},
                body=b"".join(chunks),
                truncated=truncated,
                latency_ms=latency_ms,
            )


def _cause(exc: BaseException) -> str:
    """The innermost readable reason (httpx wraps ssl and socket errors)."""
    inner: BaseException = exc
    while inner.__cause__ is not None or inner.__context__ is not None:
        inner = inner.__cause__ or inner.__context__  # type: ignore[assignment]
    text = str(inner) or type(inner).__name__
    return text if inner is exc else f"{text} ({type(inner).__name__})"
