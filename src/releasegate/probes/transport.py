"""Transport family: the plain-HTTP endpoint must refuse connections or send clients to HTTPS.

:func:`probe` makes one GET to the plain-HTTP URL without following redirects and without any
credential (a bearer token must never cross plain HTTP, even to find out whether it would be
accepted). A refused TCP connection is a good answer (nothing listens on http); a timeout is
not an answer at all, so it is told apart by connecting once before the request.
:func:`judge` is pure.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from releasegate._exceptions import ProbeError, ProbeTimeout
from releasegate.probes import http
from releasegate.probes.http import HttpObservation, HttpSettings
from releasegate.results import Finding

# The body only tells "content" from "no content": a few KiB are plenty.
BODY_CAP_BYTES = 4096
PERMANENT = frozenset({301, 308})
TEMPORARY = frozenset({302, 303, 307})


@dataclass(frozen=True)
class Refused:
    """Nothing listens on the plain-HTTP port: the TCP connection was refused."""

    url: str
    detail: str


PlainHttpAnswer = HttpObservation | Refused


def default_http_url(base_url: str) -> str:
    """base_url with http:// and no explicit port (port 80), path kept."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    return urlunsplit(("http", netloc, parts.path, "", ""))


def probe(url: str, timeout_s: float) -> PlainHttpAnswer:
    """One credential-free GET of ``url`` (no redirects followed); ProbeError when nothing could be measured."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ProbeError("not a plain http:// URL", url=url)
    port = parts.port or 80
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout_s):
            pass
    except ConnectionRefusedError as exc:
        return Refused(url=url, detail=str(exc) or "connection refused")
    except TimeoutError:
        raise ProbeTimeout(f"no TCP answer within {timeout_s:g} s (neither refused nor accepted)", url=url) from None
    except OSError as exc:
        raise ProbeError(f"cannot connect: {exc}", url=url) from None
    target = url if parts.path else url + "/"
    return http.get(target, HttpSettings(timeout_s=timeout_s, max_body_bytes=BODY_CAP_BYTES, verify=True, headers={}))


def judge(answer: PlainHttpAnswer, *, https_url: str) -> Finding:
    """Refused, or a permanent redirect to https on the same host: passed.

    A temporary redirect warns (browsers and caches do not remember it); content served over
    http, a redirect that stays on http or goes to another host fails; another status (an
    error page) warns, because it neither serves the API nor sends clients to HTTPS.
    """
    expected = "connection refused, or 301/308 to https:// on the same host"
    if isinstance(answer, Refused):
        return Finding("passed", "plain HTTP refused (nothing listens)", "connection refused", expected, {"url": answer.url})
    evidence: dict[str, Any] = answer.evidence()
    evidence.pop("body_excerpt", None)  # whatever the API says over http is not needed, only its size
    evidence["body_bytes"] = len(answer.body)
    status = answer.status
    location = answer.headers.get("location")
    observed: dict[str, Any] = {"status": status, **({"location": location} if location else {})}
    if 200 <= status < 300:
        what = f"{len(answer.body)}{'+' if answer.truncated else ''} bytes of {answer.content_type or 'content'}"
        return Finding("failed", f"API content over http: HTTP {status} with {what}", observed, expected, evidence)
    if status in PERMANENT or status in TEMPORARY:
        return _judge_redirect(answer, location, https_url, observed, expected, evidence)
    if status == 426:
        return Finding("passed", "plain HTTP refused with 426 Upgrade Required", observed, expected, evidence)
    return Finding(
        "warned",
        f"answered HTTP {status} {answer.reason} over http: no redirect to https",
        observed,
        expected,
        evidence,
    )


def _judge_redirect(
    answer: HttpObservation, location: str | None, https_url: str, observed: dict[str, Any], expected: str, evidence: dict[str, Any]
) -> Finding:
    status = answer.status
    if not location:
        return Finding("failed", f"HTTP {status} without a Location header", observed, expected, evidence)
    target = urlsplit(location)
    source = urlsplit(answer.url)
    if target.scheme.lower() != "https":
        where = "a relative location (stays on http)" if not target.scheme else f"{target.scheme}://"
        return Finding("failed", f"HTTP {status} redirects to {where}, not https", observed, expected, evidence)
    if (target.hostname or "").lower() != (source.hostname or "").lower():
        return Finding("failed", f"HTTP {status} redirects to another host ({target.hostname})", observed, expected, evidence)
    service = urlsplit(https_url)
    if (target.port or 443) != (service.port or 443):
        return Finding(
            "warned",
            f"HTTP {status} to https on port {target.port or 443}, but the service is on {service.port or 443}",
            observed,
            expected,
            evidence,
        )
    if status not in PERMANENT:
        return Finding("warned", f"HTTP {status} to https is not permanent (use 301 or 308)", observed, expected, evidence)
    return Finding("passed", f"HTTP {status} to {location}", observed, expected, evidence)
