"""An async client for the API a deployment serves: the HTTP half of the post-deploy business
and SLO checks (scenarios, consistency, golden prompts, active SLO probes).

Like :func:`releasegate.probes.http.fetch`, every exchange runs under one deadline and reads at
most ``max_body_bytes``. Unlike it, requests carry a method, a body and the token of a chosen
identity, and one client keeps its connections open across requests (an SLO probe measures the
service, not a TLS handshake per request).

429 is the service protecting itself from the gate's own traffic, not a verdict on the release:
a throttled request is retried after ``Retry-After`` (bounded in count and wait), and the number
of such waits is part of the answer, so a check can say so in its evidence.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from releasegate._exceptions import ProbeError, ProbeTimeout
from releasegate.probes.http import EVIDENCE_BODY_CHARS, SENSITIVE_HEADERS, HttpSettings, _cause, _read_bounded
from releasegate.probes.ratelimit_headers import parse_retry_after

Sleep = Callable[[float], Awaitable[None]]
_NO_BODY = object()


@dataclass(frozen=True)
class ApiAnswer:
    """One answered request. ``latency_ms`` is the last attempt's, send to last body byte."""

    method: str
    url: str
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    truncated: bool
    latency_ms: float
    throttled: int = 0  # 429 answers waited out before this one
    request_body: str | None = field(default=None, repr=False)

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not (or was cut at the size cap)."""
        if self.truncated:
            raise ValueError(f"the body was cut at {len(self.body)} bytes")
        return jsonlib.loads(self.body)

    def evidence(self) -> dict[str, Any]:
        """Bounded and credential-free: what a report may show of this exchange."""
        excerpt = self.body[:EVIDENCE_BODY_CHARS].decode("utf-8", errors="replace")
        record: dict[str, Any] = {
            "request": f"{self.method} {self.url}",
            "status": self.status,
            "latency_ms": round(self.latency_ms, 1),
            "headers": {k: ("[redacted]" if k in SENSITIVE_HEADERS else v) for k, v in self.headers.items()},
            "body_excerpt": excerpt,
            "body_truncated": self.truncated or len(self.body) > EVIDENCE_BODY_CHARS,
        }
        if self.request_body is not None:
            record["request_body_excerpt"] = self.request_body[:EVIDENCE_BODY_CHARS]
        if self.throttled:
            record["throttled"] = self.throttled
        return record


class ApiClient:
    """``async with ApiClient(base_url, settings) as api: answer = await api.request("GET", "/x", token=t)``."""

    def __init__(
        self,
        base_url: str,
        settings: HttpSettings,
        *,
        max_throttle_retries: int = 3,
        max_throttle_wait_s: float = 5.0,
        sleep: Sleep = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.settings = settings
        self.max_throttle_retries = max_throttle_retries
        self.max_throttle_wait_s = max_throttle_wait_s
        self._sleep = sleep
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> ApiClient:
        self._client = httpx.AsyncClient(
            verify=self.settings.verify,
            timeout=httpx.Timeout(self.settings.timeout_s),
            follow_redirects=False,
            trust_env=False,
            transport=self._transport,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def url(self, path_or_url: str) -> str:
        """An absolute URL: as given, or ``path`` relative to base_url."""
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return self.base_url + ("" if path_or_url.startswith("/") else "/") + path_or_url

    async def request(
        self,
        method: str,
        path_or_url: str,
        *,
        token: str | None,
        json: Any = _NO_BODY,
        content: str | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> ApiAnswer:
        """Send one request (re-sent after a 429, within bounds); ProbeError when nothing was answered."""
        url = self.url(path_or_url)
        sent_headers = {"Accept-Encoding": "identity", **(headers or {})}
        if token:
            sent_headers["Authorization"] = f"Bearer {token}"
        body: bytes | None
        if json is not _NO_BODY:
            body = jsonlib.dumps(json).encode()
            sent_headers.setdefault("Content-Type", "application/json")
        else:
            body = content.encode() if isinstance(content, str) else content
        throttled = 0
        while True:
            answer = await self._once(method.upper(), url, sent_headers, body, timeout_s or self.settings.timeout_s)
            if answer.status != 429 or throttled >= self.max_throttle_retries:
                break
            wait = parse_retry_after(answer.headers.get("retry-after", ""), datetime.now(UTC))
            if wait is None or wait > self.max_throttle_wait_s:
                break  # no usable Retry-After, or longer than the gate will wait: the 429 stands
            throttled += 1
            await self._sleep(max(wait, 0.05))
        shown_body = None if body is None else body[:EVIDENCE_BODY_CHARS].decode("utf-8", errors="replace")
        return ApiAnswer(
            method=answer.method,
            url=answer.url,
            status=answer.status,
            headers=answer.headers,
            body=answer.body,
            truncated=answer.truncated,
            latency_ms=answer.latency_ms,
            throttled=throttled,
            request_body=shown_body,
        )

    async def _once(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None, timeout_s: float) -> ApiAnswer:
        if self._client is None:
            raise RuntimeError("use ApiClient in `async with`")
        client = self._client

        async def exchange() -> ApiAnswer:
            started = time.perf_counter()
            async with client.stream(method, url, headers=headers, content=body) as response:
                data, truncated = await _read_bounded(response, self.settings.max_body_bytes)
                latency_ms = (time.perf_counter() - started) * 1000
                return ApiAnswer(
                    method=method,
                    url=url,
                    status=response.status_code,
                    headers={k.lower(): v for k, v in response.headers.items()},
                    body=data,
                    truncated=truncated,
                    latency_ms=latency_ms,
                )

        try:
            return await asyncio.wait_for(exchange(), timeout=timeout_s)
        except (TimeoutError, httpx.TimeoutException):
            raise ProbeTimeout(f"{method} answered not within {timeout_s:g} s", url=url) from None
        except httpx.ConnectError as exc:
            raise ProbeError(f"cannot connect: {_cause(exc)}", url=url) from None
        except httpx.RemoteProtocolError as exc:
            raise ProbeError(f"malformed or aborted HTTP answer: {_cause(exc)}", url=url) from None
        except httpx.HTTPError as exc:
            raise ProbeError(f"HTTP exchange failed: {_cause(exc)}", url=url) from None
        except (OSError, ssl.SSLError) as exc:
            raise ProbeError(f"network error: {exc}", url=url) from None
