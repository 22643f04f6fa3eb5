"""Transport family: the plain-HTTP endpoint must refuse connections or send clients to HTTPS.

A port-80 block that redirects ``/`` but proxies ``/api/`` is the classic half-done setup, so
:func:`probe_paths` asks the plain-HTTP port for the root *and* the API paths the target names
(protected endpoints, the rate-limited path, the upload path), at most :data:`MAX_PATHS` GETs,
each without following redirects and without any credential (a bearer token must never cross
plain HTTP, even to find out whether it would be accepted). A refused TCP connection is a good
answer (nothing listens on http); a timeout is not an answer at all, so it is told apart by
connecting once before the requests. :func:`judge` is pure: one verdict per path, the worst wins.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from releasegate._exceptions import ProbeError, ProbeTimeout
from releasegate.probes import http
from releasegate.probes.http import HttpObservation, HttpSettings
from releasegate.results import Finding

# The body only tells "content" from "no content": a few KiB are plenty.
BODY_CAP_BYTES = 4096
# The root plus five API paths: enough to find an /api/ location proxied over http, few enough to
# leave the per-IP rate-limit bucket (shared with the later rate-limit checks) nearly full.
MAX_PATHS = 6
PERMANENT = frozenset({301, 308})
TEMPORARY = frozenset({302, 303, 307})
EXPECTED = "connection refused, or 301/308 to https:// on the same host, on every probed path; never content or a 401 challenge"
Verdict = Literal["passed", "warned", "error", "failed"]
_RANK: dict[Verdict, int] = {"passed": 0, "warned": 1, "error": 2, "failed": 3}


@dataclass(frozen=True)
class Refused:
    """Nothing listens on the plain-HTTP port: the TCP connection was refused."""

    url: str
    detail: str


@dataclass(frozen=True)
class Unmeasured:
    """One path's GET that got no usable answer (timeout, reset, malformed): the port was open."""

    url: str
    reason: str


PlainHttpAnswer = HttpObservation | Refused
PathAnswer = HttpObservation | Unmeasured


def default_http_url(base_url: str) -> str:
    """base_url with http:// and no explicit port (port 80), path kept."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    return urlunsplit(("http", netloc, parts.path, "", ""))


def plan(http_url: str, paths: Sequence[str]) -> tuple[list[str], list[str]]:
    """The URLs to probe (http_url itself, then each path under it, deduplicated, at most MAX_PATHS) and the paths left out."""
    root = http_url if urlsplit(http_url).path else http_url.rstrip("/") + "/"
    urls = [root]
    left_out: list[str] = []
    for path in dict.fromkeys(paths):
        url = http_url.rstrip("/") + ("" if path.startswith("/") else "/") + path
        if url in urls:
            continue
        if len(urls) < MAX_PATHS:
            urls.append(url)
        else:
            left_out.append(path)
    return urls, left_out


def _connect(url: str, timeout_s: float) -> Refused | None:
    """Refused when nothing listens, None when the port accepts; ProbeError/ProbeTimeout when neither is known."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ProbeError("not a plain http:// URL", url=url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout_s):
            return None
    except ConnectionRefusedError as exc:
        return Refused(url=url, detail=str(exc) or "connection refused")
    except TimeoutError:
        raise ProbeTimeout(f"no TCP answer within {timeout_s:g} s (neither refused nor accepted)", url=url) from None
    except OSError as exc:
        raise ProbeError(f"cannot connect: {exc}", url=url) from None


def _settings(timeout_s: float) -> HttpSettings:
    return HttpSettings(timeout_s=timeout_s, max_body_bytes=BODY_CAP_BYTES, verify=True, headers={})


def probe(url: str, timeout_s: float) -> PlainHttpAnswer:
    """One credential-free GET of ``url`` (no redirects followed); ProbeError when nothing could be measured."""
    refused = _connect(url, timeout_s)
    if refused is not None:
        return refused
    target = url if urlsplit(url).path else url + "/"
    return http.get(target, _settings(timeout_s))


def probe_paths(urls: Sequence[str], timeout_s: float) -> Refused | list[PathAnswer]:
    """One credential-free GET per URL (same host and port, see :func:`plan`), in order, each within ``timeout_s``.

    The port is tried once first: refused means refused for every path. A path whose GET fails
    is :class:`Unmeasured`, so the paths that did answer are still judged; ProbeError only when
    the port itself could not be reached (timeout, unreachable).
    """
    if not urls:
        raise ProbeError("no URL to probe")
    refused = _connect(urls[0], timeout_s)
    if refused is not None:
        return refused
    answers: list[PathAnswer] = []
    for url in urls:
        try:
            answers.append(http.get(url, _settings(timeout_s)))
        except ProbeError as exc:
            answers.append(Unmeasured(url=url, reason=str(exc)))
    return answers


def judge(answer: PlainHttpAnswer | Sequence[PathAnswer], *, https_url: str, left_out: Sequence[str] = ()) -> Finding:
    """Refused, or every probed path permanently redirected to https on the same host: passed.

    Per path: content (2xx) over http fails, and so does a 401 carrying a WWW-Authenticate
    challenge (the API itself answers over http and asks clients to send credentials there); a
    redirect that stays on http or goes to another host fails; a temporary redirect warns
    (clients do not cache it, so every visit starts on plain http again); another status (an
    error page) warns, because it neither serves the API nor sends clients to HTTPS; a path that
    could not be measured is an error. The worst path decides: failed > error > warned > passed.
    """
    if isinstance(answer, Refused):
        evidence: dict[str, Any] = {"url": answer.url}
        if left_out:
            evidence["not_probed"] = list(left_out)
        return Finding("passed", "plain HTTP refused (nothing listens)", "connection refused", EXPECTED, evidence)
    answers: list[PathAnswer] = [answer] if isinstance(answer, HttpObservation) else list(answer)
    if not answers:
        return Finding("error", "no plain-HTTP path was probed", None, EXPECTED, {})
    verdicts = [(_path(a.url), *_verdict(a, https_url)) for a in answers]
    observed = {_path(a.url): _observed(a) for a in answers}
    evidence = {"paths": {_path(a.url): _evidence(a) for a in answers}}
    if left_out:
        evidence["not_probed"] = list(left_out)
    worst: Verdict = max((outcome for _, outcome, _ in verdicts), key=lambda o: _RANK[o])
    if len(verdicts) == 1:
        return Finding(worst, verdicts[0][2], observed, EXPECTED, evidence)
    if worst == "passed":
        statuses = sorted({str(seen["status"]) for seen in observed.values() if isinstance(seen, dict)})
        summary = f"all {len(verdicts)} probed paths redirect permanently to https (HTTP {'/'.join(statuses)}): " + ", ".join(
            path for path, _, _ in verdicts
        )
        return Finding("passed", summary, observed, EXPECTED, evidence)
    # Name the paths at the worst level first, then the lesser problems, so the summary leads with the cause.
    ordered = sorted((v for v in verdicts if v[1] != "passed"), key=lambda v: -_RANK[v[1]])
    return Finding(worst, "; ".join(f"{path}: {message}" for path, _, message in ordered), observed, EXPECTED, evidence)


def _path(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _observed(answer: PathAnswer) -> dict[str, Any] | str:
    if isinstance(answer, Unmeasured):
        return f"not measured: {answer.reason[:200]}"
    location = answer.headers.get("location")
    return {"status": answer.status, **({"location": location[:300]} if location else {})}


def _evidence(answer: PathAnswer) -> dict[str, Any]:
    if isinstance(answer, Unmeasured):
        return {"url": answer.url, "error": answer.reason[:300]}
    evidence = answer.evidence()
    evidence.pop("body_excerpt", None)  # whatever the API says over http is not needed, only its size
    evidence["body_bytes"] = len(answer.body)
    evidence["headers"] = {k: v[:300] for k, v in list(evidence["headers"].items())[:40]}
    return evidence


def _verdict(answer: PathAnswer, https_url: str) -> tuple[Verdict, str]:
    if isinstance(answer, Unmeasured):
        return "error", f"not measured ({answer.reason[:200]})"
    status = answer.status
    if 200 <= status < 300:
        what = f"{len(answer.body)}{'+' if answer.truncated else ''} bytes of {answer.content_type or 'content'}"
        return "failed", f"API content over http: HTTP {status} with {what}"
    if status == 401 and answer.headers.get("www-authenticate"):
        scheme = answer.headers["www-authenticate"].strip().split(" ")[0][:40]
        # A challenge invites the client to retry with its token, which would then cross the wire in clear.
        return "failed", f"the API asks for credentials over plain http: HTTP 401 with WWW-Authenticate: {scheme}"
    if status in PERMANENT or status in TEMPORARY:
        return _redirect_verdict(answer, https_url)
    if status == 426:
        return "passed", "plain HTTP refused with 426 Upgrade Required"
    return "warned", f"answered HTTP {status} {answer.reason} over http: no redirect to https"


def _redirect_verdict(answer: HttpObservation, https_url: str) -> tuple[Verdict, str]:
    status = answer.status
    location = answer.headers.get("location")
    if not location:
        return "failed", f"HTTP {status} without a Location header"
    target = urlsplit(location)
    source = urlsplit(answer.url)
    if target.scheme.lower() != "https":
        where = "a relative location (stays on http)" if not target.scheme else f"{target.scheme}://"
        return "failed", f"HTTP {status} redirects to {where}, not https"
    if (target.hostname or "").lower() != (source.hostname or "").lower():
        return "failed", f"HTTP {status} redirects to another host ({target.hostname})"
    service = urlsplit(https_url)
    if (target.port or 443) != (service.port or 443):
        return "warned", f"HTTP {status} to https on port {target.port or 443}, but the service is on {service.port or 443}"
    if status not in PERMANENT:
        return "warned", (
            f"HTTP {status} to https is a temporary redirect: clients do not cache it, so every visit starts on plain http "
            "again (use 301 or 308)"
        )
    return "passed", f"HTTP {status} to {location[:300]}"
