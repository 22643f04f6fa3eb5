"""Headers family: Strict-Transport-Security, browser security headers, and login cookies.

Checks ``security.hsts``, ``security.headers`` and ``security.cookies`` judge *header fields*
of a few HTTPS exchanges. Fields are kept as they arrived, in order, repeated names and all
(:class:`Answer`), because judgements depend on repetition: of several Strict-Transport-Security
fields only the first counts (RFC 6797 §8.1), and every Set-Cookie field is a cookie of its own.
A dict view, as httpx's
``headers.items()``, joins repeats with ", ", which an ``Expires=Wed, 21 Oct ...`` date makes
impossible to split again.

:func:`exchange` is the only I/O (the auth family reuses it); everything else is pure.

Decisions worth knowing when reading a finding:
- HSTS counts on HTTPS answers only; on a plain-http answer browsers ignore it (RFC 6797 §8.1),
  so it is noted there and never judged.
- A repeated field is judged by its *first* occurrence, the one browsers act on (HSTS: RFC 6797
  §8.1; X-Content-Type-Options: Fetch "determine nosniff" reads the first value). Identical
  repeats are what a proxy's ``add_header ... always`` in front of an app that sets the same
  header produces, and are harmless: noted, never failed. Repeats that *differ* mean two layers
  disagree about the policy and are reported (HSTS: warned; the security headers: a problem).
- A version banner is a ``Server``/``X-Powered-By`` value with a version number in it
  (``nginx/1.22.1``, ``PHP 8.2``, ``Apache/2``); a bare product name (``nginx``, ``uvicorn``,
  ``cloudflare``) tells an attacker little and is accepted. ``X-AspNet-Version`` and
  ``X-AspNetMvc-Version`` carry nothing but a version and are flagged whenever present.
- Referrer-Policy ``unsafe-url`` and ``no-referrer-when-downgrade`` are flagged: both send the
  full URL (path and query, which may carry ids) to every HTTPS origin. The effective policy is
  the last token the browser knows (W3C Referrer Policy §8.1).
- CORS is flagged for ``Access-Control-Allow-Origin: *`` with credentials (the combination the
  issue names, refused by browsers but a sign of a careless config) and, more dangerous, for a
  foreign Origin (or ``null``) reflected with credentials: any site could then read the API
  with the user's cookies.
- A cookie that a login answer *deletes* (``Max-Age`` <= 0) is not judged: it carries nothing.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from releasegate.probes.credentials import FOREIGN_ORIGIN
from releasegate.probes.http import HttpSettings, probe_error
from releasegate.results import Finding

# Sent as the Origin of the API request of security.headers: a foreign site that must not get
# credentialed CORS access. .test is reserved (RFC 6761), so it can never be a real site.
BODY_CAP_BYTES = 4096  # these checks judge headers; a little body is kept for a failure's evidence
MAX_EVIDENCE_FIELDS = 60
MAX_EVIDENCE_VALUE = 300
CREDENTIAL_FIELDS = frozenset({"authorization", "proxy-authorization", "cookie"})

Method = Literal["GET", "POST"]


# --------------------------------------------------------------------------- exchanges (I/O)


@dataclass(frozen=True)
class Request:
    """One request of a probe. ``json`` is sent as the body and never recorded (it may hold a password)."""

    method: Method
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Any = None


@dataclass(frozen=True)
class Answer:
    """One answer: status and every header field as received (names lower-cased, repeats kept)."""

    url: str
    method: str
    status: int
    fields: tuple[tuple[str, str], ...]
    body: bytes = b""

    def all(self, name: str) -> list[str]:
        """Every value of the field ``name`` (case-insensitive), in order."""
        wanted = name.lower()
        return [value for key, value in self.fields if key == wanted]

    def first(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    @property
    def path(self) -> str:
        parts = urlsplit(self.url)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def evidence(self) -> dict[str, Any]:
        """Bounded and credential-free: Set-Cookie shows the cookie's name and attributes, never its value."""
        shown: list[list[str]] = []
        for name, value in self.fields[:MAX_EVIDENCE_FIELDS]:
            if name in CREDENTIAL_FIELDS:
                value = "[redacted]"
            elif name == "set-cookie":
                value = _cookie_without_value(value)
            shown.append([name, value[:MAX_EVIDENCE_VALUE]])
        return {"url": self.url, "method": self.method, "status": self.status, "headers": shown}


def exchange(requests: Sequence[Request], settings: HttpSettings, *, transport: httpx.AsyncBaseTransport | None = None) -> list[Answer]:
    """Send ``requests`` in order over one client, each within ``settings.timeout_s``; ProbeError if any could not be measured.

    ``settings.headers`` (the gate's bearer token) is *not* added: every request says which
    credentials it carries, so a request meant to go without a token cannot pick one up.
    Cookies are not kept between requests either: a session cookie from a log-in must not make a
    later "no credentials" request look authenticated.
    """
    # A fresh loop, closed without joining the default executor (see http.get for why).
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(_exchange_all(requests, settings, transport))
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


async def _exchange_all(requests: Sequence[Request], settings: HttpSettings, transport: httpx.AsyncBaseTransport | None) -> list[Answer]:
    timeout = httpx.Timeout(settings.timeout_s)
    async with httpx.AsyncClient(
        verify=settings.verify, timeout=timeout, follow_redirects=False, trust_env=False, transport=transport
    ) as client:
        answers = []
        for request in requests:
            client.cookies.clear()
            answers.append(await _one(client, request, settings.timeout_s))
        return answers


async def _one(client: httpx.AsyncClient, request: Request, timeout_s: float) -> Answer:
    # httpx's timeouts apply per network operation; a server dripping bytes needs the outer deadline.
    try:
        return await asyncio.wait_for(_send(client, request), timeout=timeout_s)
    except (TimeoutError, httpx.HTTPError, OSError, ssl.SSLError) as exc:
        # probes.http's words for every failure (a DNS failure named as such), led by the method.
        error = probe_error(exc, request.url, timeout=f"no complete answer within {timeout_s:g} s")
        raise type(error)(f"{request.method}: {error}", url=request.url) from None


async def _send(client: httpx.AsyncClient, request: Request) -> Answer:
    headers = {"Accept-Encoding": "identity", **request.headers}
    async with client.stream(request.method, request.url, headers=headers, json=request.json) as response:
        body = b""
        async for chunk in response.aiter_raw():
            body += chunk
            if len(body) >= BODY_CAP_BYTES:
                break
        return Answer(
            url=request.url,
            method=request.method,
            status=response.status_code,
            fields=tuple((name.lower(), value) for name, value in response.headers.multi_items()),
            body=body[:BODY_CAP_BYTES],
        )


def join(base_url: str, path: str) -> str:
    """base_url (no trailing slash) + a target path, whether or not the path starts with '/'."""
    return base_url.rstrip("/") + ("" if path.startswith("/") else "/") + path


# --------------------------------------------------------------------------- HSTS


@dataclass(frozen=True)
class Hsts:
    max_age: int
    include_subdomains: bool
    preload: bool


def parse_hsts(value: str) -> Hsts:
    """One Strict-Transport-Security field value per RFC 6797 §6.1; ValueError says what is malformed.

    Directive names are case-insensitive, values may be quoted (``max-age="31536000"``), unknown
    directives are ignored, a repeated directive or a missing/non-numeric max-age makes the whole
    field invalid (§6.1 rules 2 and 4: browsers then ignore it).
    """
    directives: dict[str, str | None] = {}
    for raw in _split_unquoted(value, ";"):
        text = raw.strip()
        if not text:
            continue
        name, sep, rest = text.partition("=")
        name = name.strip().lower()
        if not name or not _TOKEN.fullmatch(name):
            raise ValueError(f"malformed directive {text[:60]!r}")
        if name in directives:
            raise ValueError(f"directive {name!r} appears twice (browsers ignore the whole header)")
        directives[name] = _unquote(rest.strip()) if sep else None
    if "max-age" not in directives:
        raise ValueError("no max-age directive")
    max_age = directives["max-age"]
    if max_age is None or not max_age.isascii() or not max_age.isdigit():
        raise ValueError(f"max-age {max_age!r} is not a number of seconds")
    return Hsts(max_age=int(max_age), include_subdomains="includesubdomains" in directives, preload="preload" in directives)


def judge_hsts(answers: Sequence[Answer], *, min_max_age_s: int) -> Finding:
    """Every HTTPS answer's first HSTS field is valid with max-age >= the policy; includeSubDomains or a warning.

    Only the first field counts (RFC 6797 §8.1), so that is the one judged. Repeats identical to
    it (a proxy and the app both setting HSTS) pass with a note; a repeat that differs warns,
    naming both, because the policy then depends on which layer's field comes first.
    """
    expected = (
        f"a Strict-Transport-Security field on every HTTPS answer (the first counts; repeats identical), "
        f"max-age >= {min_max_age_s}, includeSubDomains"
    )
    observed: dict[str, Any] = {}
    failures: list[str] = []
    warnings: list[str] = []
    notes: list[str] = []
    judged = 0
    for answer in answers:
        values = answer.all("strict-transport-security")
        where = answer.path
        observed[where] = values[0] if len(values) == 1 else (values or None)
        if urlsplit(answer.url).scheme != "https":
            if values:
                notes.append(f"{where}: HSTS on a plain-http answer is ignored by browsers (RFC 6797 §8.1)")
            continue
        judged += 1
        if not values:
            failures.append(f"{where}: no Strict-Transport-Security header")
            continue
        first = values[0]
        if len(values) > 1:
            differing = [v for v in values[1:] if not _same_hsts(first, v)]
            if differing:
                warnings.append(
                    f"{where}: {len(values)} different Strict-Transport-Security fields, {first[:120]!r} and "
                    f"{differing[0][:120]!r} (browsers use only the first; two layers set HSTS and disagree)"
                )
            else:
                notes.append(f"{where}: {len(values)} identical Strict-Transport-Security fields (browsers use the first, RFC 6797 §8.1)")
        try:
            policy = parse_hsts(first)
        except ValueError as exc:
            failures.append(f"{where}: malformed Strict-Transport-Security {first[:120]!r}: {exc}")
            continue
        if policy.max_age < min_max_age_s:
            meaning = " (max-age=0 tells browsers to forget HSTS)" if policy.max_age == 0 else ""
            failures.append(f"{where}: max-age={policy.max_age} is below {min_max_age_s}{meaning}")
        if not policy.include_subdomains:
            warnings.append(f"{where}: no includeSubDomains (subdomains can still be reached over http)")
        if policy.preload and not policy.include_subdomains:
            notes.append(f"{where}: preload without includeSubDomains is not eligible for the preload lists")
    evidence = {"answers": [a.evidence() for a in answers], "notes": notes}
    if judged == 0:
        return Finding("error", "no HTTPS answer to judge HSTS on", observed, expected, evidence)
    if failures:
        return Finding("failed", "; ".join(failures + warnings), observed, expected, evidence)
    if warnings:
        return Finding("warned", "; ".join(warnings), observed, expected, evidence)
    return Finding(
        "passed", f"HSTS on {judged} HTTPS answers meets max-age >= {min_max_age_s} with includeSubDomains", observed, expected, evidence
    )


def _same_hsts(first: str, other: str) -> bool:
    """Same policy: equal text, or both valid and equal once parsed (spacing and case do not matter)."""
    if first.strip() == other.strip():
        return True
    try:
        return parse_hsts(first) == parse_hsts(other)
    except ValueError:
        return False


# --------------------------------------------------------------------------- security headers

# A version number in a banner: "nginx/1.22.1", "Apache/2", "PHP 8.2.1", "Kestrel v2".
_VERSION = re.compile(r"/\s*v?\d|\bv?\d+\.\d+")
_BANNER_FIELDS = ("server", "x-powered-by")
_VERSION_ONLY_FIELDS = ("x-aspnet-version", "x-aspnetmvc-version")
_REFERRER_TOKENS = frozenset(
    {
        "no-referrer",
        "no-referrer-when-downgrade",
        "same-origin",
        "origin",
        "strict-origin",
        "origin-when-cross-origin",
        "strict-origin-when-cross-origin",
        "unsafe-url",
    }
)
_LEAKY_REFERRER = frozenset({"unsafe-url", "no-referrer-when-downgrade"})
SECURITY_HEADER_REQUIREMENTS = (
    "X-Content-Type-Options: nosniff",
    "X-Frame-Options DENY/SAMEORIGIN or CSP frame-ancestors",
    "Referrer-Policy present, not unsafe-url/no-referrer-when-downgrade",
    "Cache-Control: no-store on the authenticated API answer",
    "no version in Server/X-Powered-By",
    "no credentialed CORS for a foreign Origin (wildcard or reflected)",
    "a repeated X-Content-Type-Options/X-Frame-Options field repeats the same value (the first is judged)",
)


def judge_security_headers(site: Answer, api: Answer, *, foreign_origin: str = FOREIGN_ORIGIN, api_authenticated: bool = True) -> Finding:
    """Browser security headers on the site root and on an API answer; every violation listed in one finding.

    ``api`` is an authenticated GET of a protected path sent with ``Origin: foreign_origin``;
    Cache-Control and CORS are judged on it only (they are API properties).
    """
    violations: list[str] = []
    answers = [("site", site), ("api", api)] if site.url != api.url else [("api", api)]
    for label, answer in answers:
        where = f"{label} {answer.path}"
        violations.extend(f"{where}: {problem}" for problem in _document_problems(answer))
    violations.extend(f"api {api.path}: {problem}" for problem in _api_problems(api, foreign_origin))
    observed = {label: _security_fields(answer) for label, answer in answers}
    evidence: dict[str, Any] = {"answers": [a.evidence() for _, a in answers], "foreign_origin": foreign_origin}
    if not api_authenticated:
        evidence["note"] = "no token configured: Cache-Control judged on the unauthenticated API answer"
    elif not 200 <= api.status < 300:
        evidence["note"] = f"the authenticated API answer was HTTP {api.status}, not 2xx: headers judged on it all the same"
    if violations:
        return Finding(
            "failed", f"{len(violations)} header problems: " + "; ".join(violations), observed, list(SECURITY_HEADER_REQUIREMENTS), evidence
        )
    return Finding("passed", "security headers present on the site and the API", observed, list(SECURITY_HEADER_REQUIREMENTS), evidence)


def _document_problems(answer: Answer) -> list[str]:
    problems: list[str] = []
    nosniff = _tokens(answer, "x-content-type-options")
    if not nosniff or nosniff[0] != "nosniff":
        shown = answer.all("x-content-type-options")
        problems.append("X-Content-Type-Options is not nosniff" + (f" ({shown!r})" if shown else " (missing)"))
    for name, shown_name in (("x-content-type-options", "X-Content-Type-Options"), ("x-frame-options", "X-Frame-Options")):
        disagreeing = _disagreement(answer, name)
        if disagreeing:
            problems.append(f"{shown_name} repeated with different values {disagreeing!r} (the first is judged; two layers disagree)")
    if not _frame_protected(answer):
        problems.append("no frame protection (X-Frame-Options DENY/SAMEORIGIN or CSP frame-ancestors)")
    problems.extend(_referrer_problems(answer.all("referrer-policy")))
    for name in _BANNER_FIELDS:
        for value in answer.all(name):
            if _VERSION.search(value):
                problems.append(f"{name} banner reveals a version: {value[:80]!r}")
    for name in _VERSION_ONLY_FIELDS:
        if answer.all(name):
            problems.append(f"{name} reveals the framework version")
    return problems


def _tokens(answer: Answer, name: str) -> list[str]:
    """The field's values as a browser reads them: every field, split on commas, trimmed, lower-cased (Fetch "get, decode, and split")."""
    return [token.strip().lower() for value in answer.all(name) for token in value.split(",") if token.strip()]


def _disagreement(answer: Answer, name: str) -> list[str]:
    """The distinct values of a repeated field when they differ (as received, bounded); [] when they agree."""
    distinct = list(dict.fromkeys(_tokens(answer, name)))
    if len(distinct) < 2:
        return []
    return [value[:60] for value in answer.all(name)][:4]


def _frame_protected(answer: Answer) -> bool:
    # The first value is judged; identical repeats (proxy and app both adding it) change nothing.
    xfo = _tokens(answer, "x-frame-options")
    if xfo and xfo[0] in ("deny", "sameorigin"):
        return True
    # Several CSP fields are all enforced (CSP3 §3.1); any one with frame-ancestors restricts framing.
    for value in answer.all("content-security-policy"):
        for policy in value.split(","):
            for directive in policy.split(";"):
                name, _, sources = directive.strip().partition(" ")
                if name.lower() == "frame-ancestors" and "*" not in sources.split():
                    return True
    return False


def _referrer_problems(values: list[str]) -> list[str]:
    if not values:
        return ["no Referrer-Policy"]
    tokens = [t.strip().lower() for value in values for t in value.split(",")]
    known = [t for t in tokens if t in _REFERRER_TOKENS]
    if not known:
        return [f"Referrer-Policy {', '.join(values)[:80]!r} names no policy browsers know"]
    if known[-1] in _LEAKY_REFERRER:
        return [f"Referrer-Policy {known[-1]} sends full URLs to other sites"]
    return []


def _api_problems(api: Answer, foreign_origin: str) -> list[str]:
    problems: list[str] = []
    directives = {d.strip().split("=")[0].strip().lower() for value in api.all("cache-control") for d in value.split(",")}
    if "no-store" not in directives:
        shown = ", ".join(api.all("cache-control")) or "missing"
        problems.append(f"Cache-Control is not no-store ({shown[:80]})")
    allow_origin = [v.strip() for v in api.all("access-control-allow-origin")]
    credentials = any(v.strip().lower() == "true" for v in api.all("access-control-allow-credentials"))
    if credentials and "*" in allow_origin:
        problems.append("Access-Control-Allow-Origin: * together with Access-Control-Allow-Credentials: true")
    reflected = [o for o in allow_origin if o.lower() in (foreign_origin.lower(), "null")]
    if credentials and reflected:
        problems.append(f"credentialed CORS granted to a foreign Origin (Access-Control-Allow-Origin: {reflected[0]})")
    return problems


def _security_fields(answer: Answer) -> dict[str, Any]:
    names = (
        "x-content-type-options",
        "x-frame-options",
        "content-security-policy",
        "referrer-policy",
        "cache-control",
        "server",
        "x-powered-by",
        "access-control-allow-origin",
        "access-control-allow-credentials",
    )
    return {name: ", ".join(v[:MAX_EVIDENCE_VALUE] for v in answer.all(name)) or None for name in names}


# --------------------------------------------------------------------------- cookies


@dataclass(frozen=True)
class Cookie:
    """A Set-Cookie field, parsed as a browser would (RFC 6265 §5.2); the value is dropped on purpose."""

    name: str
    # Attributes as written, in order: (name, value), value "" for a flag.
    written: tuple[tuple[str, str], ...] = ()

    @property
    def attributes(self) -> dict[str, str]:
        """Lower-cased attribute name -> value; the last occurrence wins (§5.3)."""
        return {key.lower(): value for key, value in self.written}

    @property
    def secure(self) -> bool:
        return "secure" in self.attributes

    @property
    def http_only(self) -> bool:
        return "httponly" in self.attributes

    @property
    def same_site(self) -> str | None:
        return self.attributes.get("samesite")

    @property
    def deleted(self) -> bool:
        max_age = self.attributes.get("max-age", "").strip()
        return bool(re.fullmatch(r"-?\d+", max_age)) and int(max_age) <= 0

    def shown(self) -> str:
        """``name; Attr=value; Flag`` as written, without the value."""
        return "; ".join([self.name or "<nameless>", *(f"{k}={v}" if v else k for k, v in self.written)])


def parse_set_cookie(value: str) -> Cookie:
    """Name and attributes of one Set-Cookie field value (commas, e.g. in Expires, are not separators)."""
    pair, *attributes = value.split(";")
    name = pair.partition("=")[0].strip() if "=" in pair else ""
    written: list[tuple[str, str]] = []
    for attribute in attributes:
        key, _, attribute_value = attribute.partition("=")
        if key.strip():
            written.append((key.strip(), attribute_value.strip()))
    return Cookie(name=name, written=tuple(written))


def cookie_problems(cookie: Cookie) -> list[str]:
    """What a browser would let an attacker do with this cookie, one line per missing protection."""
    problems: list[str] = []
    if not cookie.secure:
        problems.append("no Secure (sent over plain http)")
    if not cookie.http_only:
        problems.append("no HttpOnly (readable from script)")
    same_site = cookie.same_site
    if same_site is None:
        problems.append("no SameSite (browsers differ on the default)")
    elif same_site.lower() not in ("strict", "lax", "none"):
        problems.append(f"SameSite={same_site[:20]!r} is not Strict, Lax or None")
    elif same_site.lower() == "none" and not cookie.secure:
        problems.append("SameSite=None without Secure (browsers reject it)")
    if cookie.name.startswith("__Host-") and (not cookie.secure or cookie.attributes.get("path") != "/" or "domain" in cookie.attributes):
        problems.append("__Host- prefix without Secure, Path=/ and no Domain (browsers reject it)")
    elif cookie.name.startswith("__Secure-") and not cookie.secure:
        problems.append("__Secure- prefix without Secure (browsers reject it)")
    return problems


def judge_cookies(login: Answer) -> Finding:
    """Every cookie the login answer sets has Secure, HttpOnly and a valid SameSite."""
    expected = "every Set-Cookie of the login: Secure; HttpOnly; SameSite=Strict|Lax (None only with Secure)"
    evidence: dict[str, Any] = {"login": login.evidence()}
    if not 200 <= login.status < 300:
        return Finding(
            "error",
            f"the login answered HTTP {login.status}, not 2xx: no session to judge (credentials or rate limit?)",
            f"HTTP {login.status}",
            expected,
            evidence,
        )
    cookies = [parse_set_cookie(value) for value in login.all("set-cookie")]
    if not cookies:
        return Finding("passed", "the login sets no cookie: nothing insecure to judge", "no cookies", expected, evidence)
    judged = [c for c in cookies if not c.deleted]
    if len(judged) < len(cookies):
        evidence["deleted_not_judged"] = [c.name for c in cookies if c.deleted]
    problems = [f"cookie {cookie.name or '<nameless>'}: {', '.join(found)}" for cookie in judged if (found := cookie_problems(cookie))]
    observed = [c.shown() for c in cookies]
    if problems:
        return Finding("failed", "; ".join(problems), observed, expected, evidence)
    if not judged:
        return Finding("passed", "the login only deletes cookies: nothing insecure to judge", observed, expected, evidence)
    counted = "the login cookie is" if len(judged) == 1 else f"all {len(judged)} login cookies are"
    return Finding("passed", f"{counted} Secure, HttpOnly and SameSite", observed, expected, evidence)


# --------------------------------------------------------------------------- helpers

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")


def _split_unquoted(value: str, separator: str) -> list[str]:
    """Split on ``separator`` outside quoted-strings; a comma outside quotes is an error (folded fields)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif not quoted and char == ",":
            raise ValueError("a comma outside quotes: several header fields folded into one")
        elif not quoted and char == separator:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    if quoted:
        raise ValueError("an unterminated quoted string")
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _cookie_without_value(value: str) -> str:
    cookie = parse_set_cookie(value)
    attributes = "".join(f"; {k}={v}" if v else f"; {k}" for k, v in cookie.written)
    return f"{cookie.name}=[value not recorded]{attributes}"


def fields_of(pairs: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """Header pairs as an :class:`Answer` keeps them (for tests and callers building answers by hand)."""
    return tuple((name.lower(), value) for name, value in pairs)
