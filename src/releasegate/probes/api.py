"""An async client for the API a deployment serves: the HTTP half of the post-deploy business
and SLO checks (scenarios, consistency, golden prompts, active SLO probes).

Like :func:`releasegate.probes.http.fetch`, every exchange runs under one deadline and reads at
most ``max_body_bytes``. Unlike it, requests carry a method, a body and the token of a chosen
identity, and one client keeps its connections open across requests (an SLO probe measures the
service, not a TLS handshake per request).

429 is the service protecting itself from the gate's own traffic, not a verdict on the release:
a throttled request is retried after ``Retry-After`` (bounded in count and wait), and the number
of such waits is part of the answer, so a check can say so in its evidence.

Where a token may go is decided here too, once for every caller (:func:`token_allowed`): never
in clear text beyond loopback, and only to the target's own origins unless the caller chose to.
Body excerpts in evidence mask JSON values at credential-like keys
(:func:`mask_secrets_in_json_text`): a login answer's token or a login request's password.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from releasegate.config import LOOPBACK_HOSTS
from releasegate.probes.http import EVIDENCE_BODY_CHARS, SENSITIVE_HEADERS, HttpSettings, _read_bounded, probe_error
from releasegate.probes.ratelimit_headers import parse_retry_after

Sleep = Callable[[float], Awaitable[None]]
_NO_BODY = object()

# A name (JSON key, header, saved variable) whose value is a credential.
SECRET_NAME = re.compile(r"token|secret|password|passwd|api_?key|session|cookie", re.IGNORECASE)
MASK = "[redacted]"
# Tokens of a JSON text for mask_secrets_in_json_text: a string (possibly cut at the end of an
# excerpt), what separates a key from its value, a bare scalar. Possessive: linear on any input.
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*+\\?(?:"|\Z)')
_KEY_END = re.compile(r"\s*+:\s*+")
_JSON_SCALAR = re.compile(r'[^\s,:{}\[\]"]++')


def is_secret_name(name: str) -> bool:
    """Whether a key, header or variable named ``name`` holds a credential (token, password, session, ...)."""
    return SECRET_NAME.search(name) is not None


def mask_secrets_in_json_text(text: str) -> str:
    """``text`` (JSON, or an excerpt of it) with every value at a credential-like key replaced by
    ``"[redacted]"``. Only scalar values are masked; a nested object keeps its own keys checked.

    One pass over the strings of the text, so it is linear whatever the text holds.
    """
    pieces: list[str] = []
    copied = position = 0
    while (string := _JSON_STRING.search(text, position)) is not None:
        position = string.end()
        separator = _KEY_END.match(text, position)
        if separator is None or not is_secret_name(string.group()):
            continue
        value = _JSON_STRING.match(text, separator.end()) or _JSON_SCALAR.match(text, separator.end())
        if value is not None:
            pieces += [text[copied : value.start()], f'"{MASK}"']
            copied = position = value.end()
    pieces.append(text[copied:])
    return "".join(pieces)


def token_allowed(url: str, base_url: str, ws_url: str | None, *, explicit: bool) -> str | None:
    """None when a bearer token may be sent to ``url``; else why not, as a step's reason.

    Never over http:// or ws:// beyond loopback (it would cross the network in clear); to an
    origin other than the target's base_url or ws_url only when ``explicit`` (the scenario or
    target named the identity on purpose for that URL).
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme in ("http", "ws") and host not in LOOPBACK_HOSTS:
        return f"would send the token in clear to {host} ({parts.scheme}://); use https:// or wss://"
    if explicit or _origin(url) in {_origin(own) for own in (base_url, ws_url) if own}:
        return None
    return (
        f"would send the token to {host}, which is neither the target's base_url nor its ws_url; "
        "write `as:` to send it there on purpose, or `as: anonymous`"
    )


def _origin(url: str) -> tuple[str, str, int]:
    # ws:// shares the origin of http://: one server answers both.
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or (443 if scheme == "https" else 80)


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
        """The body as JSON; ValueError when it is not (or was cut at the size cap, or is nested too deeply)."""
        if self.truncated:
            raise ValueError(f"the body was cut at {len(self.body)} bytes")
        try:
            return jsonlib.loads(self.body)
        except RecursionError:
            # A hostile or broken service can nest [[[[...]]]] past the interpreter's limit.
            raise ValueError("the JSON is nested too deeply to read") from None

    def evidence(self) -> dict[str, Any]:
        """Bounded and credential-free: what a report may show of this exchange."""
        excerpt = mask_secrets_in_json_text(self.body[:EVIDENCE_BODY_CHARS].decode("utf-8", errors="replace"))
        record: dict[str, Any] = {
            "request": f"{self.method} {self.url}",
            "status": self.status,
            "latency_ms": round(self.latency_ms, 1),
            "headers": {k: (MASK if k in SENSITIVE_HEADERS or is_secret_name(k) else v) for k, v in self.headers.items()},
            "body_excerpt": excerpt,
            "body_truncated": self.truncated or len(self.body) > EVIDENCE_BODY_CHARS,
        }
        if self.request_body is not None:
            record["request_body_excerpt"] = mask_secrets_in_json_text(self.request_body[:EVIDENCE_BODY_CHARS])
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
        except (TimeoutError, httpx.HTTPError, OSError, ssl.SSLError) as exc:
            raise probe_error(exc, url, timeout=f"{method} answered not within {timeout_s:g} s") from None
