"""Headers family: HSTS parsing and judging, security headers, cookies, and the exchange adapter.

Judges are fed hand-built answers (header edge cases are easiest to state that way); the
adapter is tested against httpx.MockTransport and a real loopback server.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from loopback import Route, refused_port, serve
from releasegate._exceptions import ProbeError, ProbeTimeout
from releasegate.probes import credentials, headers
from releasegate.probes.headers import Answer, Request
from releasegate.probes.http import HttpSettings
from releasegate.reference.auth import Authenticator
from releasegate.reference.settings import ServiceSettings

SETTINGS = HttpSettings(timeout_s=2, max_body_bytes=64 * 1024, headers={"Authorization": "Bearer gate-token-never-sent-implicitly"})
GOOD_HSTS = "max-age=31536000; includeSubDomains"
SECURE_FIELDS = [
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
]


def answer(fields: list[tuple[str, str]], url: str = "https://app.example.test/", status: int = 200, method: str = "GET") -> Answer:
    return Answer(url=url, method=method, status=status, fields=headers.fields_of(fields))


# --- HSTS parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "max_age", "subdomains", "preload"),
    [
        ("max-age=31536000; includeSubDomains", 31536000, True, False),
        ("MAX-AGE=31536000;INCLUDESUBDOMAINS;Preload", 31536000, True, True),
        ('max-age="63072000"; includeSubDomains', 63072000, True, False),  # a quoted-string value is allowed
        ("  max-age = 600 ;", 600, False, False),  # whitespace and an empty directive
        ('max-age=600; report-uri="https://r.test/;x"', 600, False, False),  # unknown directive, ';' inside quotes
    ],
)
def test_parse_hsts_accepts_what_rfc_6797_allows(value: str, max_age: int, subdomains: bool, preload: bool) -> None:
    assert headers.parse_hsts(value) == headers.Hsts(max_age, subdomains, preload)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("includeSubDomains", "no max-age"),
        ("max-age=1e6", "not a number"),
        ("max-age=-1", "not a number"),
        ("max-age=", "not a number"),
        ("max-age", "not a number"),
        ("max-age=600; max-age=31536000", "appears twice"),
        ("max-age=600; includeSubDomains; includesubdomains", "appears twice"),
        ("max-age=31536000, max-age=0", "comma"),  # two fields folded into one by a proxy
        ('max-age="600', "unterminated"),
        ("max-age=600; in valid", "malformed directive"),
    ],
)
def test_parse_hsts_rejects_what_browsers_ignore(value: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        headers.parse_hsts(value)


# --- HSTS judge -------------------------------------------------------------------------------------


def test_hsts_on_every_https_answer_passes() -> None:
    answers = [
        answer([("Strict-Transport-Security", GOOD_HSTS)]),
        answer([("strict-transport-security", GOOD_HSTS)], url="https://a.test/api/"),
    ]
    finding = headers.judge_hsts(answers, min_max_age_s=31536000)
    assert finding.outcome == "passed", finding.summary
    assert finding.observed == {"/": GOOD_HSTS, "/api/": GOOD_HSTS}


def test_hsts_missing_on_one_answer_fails_naming_it() -> None:
    answers = [answer([("Strict-Transport-Security", GOOD_HSTS)]), answer([], url="https://a.test/api/v1/me", status=401)]
    finding = headers.judge_hsts(answers, min_max_age_s=31536000)
    assert finding.outcome == "failed"
    assert finding.summary == "/api/v1/me: no Strict-Transport-Security header"


def test_identical_hsts_fields_pass_with_a_note() -> None:
    # Given nginx's `add_header ... always` in front of an app that sets the same HSTS
    both = [("Strict-Transport-Security", GOOD_HSTS), ("strict-transport-security", "max-age=31536000;includeSubDomains")]
    finding = headers.judge_hsts([answer(both)], min_max_age_s=31536000)
    # Then the first field is judged and the repeat is only noted (RFC 6797 §8.1: browsers use the first)
    assert finding.outcome == "passed", finding.summary
    assert finding.evidence["notes"] == ["/: 2 identical Strict-Transport-Security fields (browsers use the first, RFC 6797 §8.1)"]
    assert finding.observed == {"/": [GOOD_HSTS, "max-age=31536000;includeSubDomains"]}


def test_differing_hsts_fields_warn_naming_both() -> None:
    finding = headers.judge_hsts(
        [answer([("Strict-Transport-Security", GOOD_HSTS), ("Strict-Transport-Security", "max-age=0")])], min_max_age_s=1
    )
    assert finding.outcome == "warned"
    assert finding.summary == (
        f"/: 2 different Strict-Transport-Security fields, {GOOD_HSTS!r} and 'max-age=0' "
        "(browsers use only the first; two layers set HSTS and disagree)"
    )


def test_the_first_hsts_field_is_the_one_judged() -> None:
    # Given a short first field and a good second one: browsers keep the short one
    fields = [("Strict-Transport-Security", "max-age=86400; includeSubDomains"), ("Strict-Transport-Security", GOOD_HSTS)]
    finding = headers.judge_hsts([answer(fields)], min_max_age_s=31536000)
    assert finding.outcome == "failed"
    assert finding.summary.startswith("/: max-age=86400 is below 31536000; /: 2 different Strict-Transport-Security fields")
    # and a malformed repeat of a good first field is a disagreement, not a failure
    odd = headers.judge_hsts([answer([("Strict-Transport-Security", GOOD_HSTS), ("Strict-Transport-Security", "junk")])], min_max_age_s=1)
    assert odd.outcome == "warned"


def test_malformed_hsts_fails_with_the_raw_value() -> None:
    finding = headers.judge_hsts([answer([("Strict-Transport-Security", "max-age=abc; includeSubDomains")])], min_max_age_s=1)
    assert finding.outcome == "failed"
    assert "'max-age=abc; includeSubDomains'" in finding.summary and "not a number" in finding.summary


@pytest.mark.parametrize(("value", "words"), [("max-age=86400; includeSubDomains", "max-age=86400 is below"), ("max-age=0", "forget HSTS")])
def test_short_hsts_fails(value: str, words: str) -> None:
    finding = headers.judge_hsts([answer([("Strict-Transport-Security", value)])], min_max_age_s=31536000)
    assert finding.outcome == "failed"
    assert words in finding.summary
    assert finding.expected.startswith("a Strict-Transport-Security field on every HTTPS answer (the first counts")
    assert "max-age >= 31536000" in finding.expected


def test_hsts_without_include_subdomains_warns() -> None:
    finding = headers.judge_hsts([answer([("Strict-Transport-Security", "max-age=31536000; preload")])], min_max_age_s=31536000)
    assert finding.outcome == "warned"
    assert "no includeSubDomains" in finding.summary
    assert any("preload without includeSubDomains" in note for note in finding.evidence["notes"])


def test_hsts_on_plain_http_is_only_noted() -> None:
    # Given HSTS on a plain-http answer (ignored by browsers) and none on the HTTPS one
    answers = [answer([("Strict-Transport-Security", GOOD_HSTS)], url="http://a.test/"), answer([], url="https://a.test/")]
    finding = headers.judge_hsts(answers, min_max_age_s=1)
    # Then the http answer neither saves nor fails the check
    assert finding.outcome == "failed" and finding.summary == "/: no Strict-Transport-Security header"
    assert finding.evidence["notes"] == ["/: HSTS on a plain-http answer is ignored by browsers (RFC 6797 §8.1)"]
    only_http = headers.judge_hsts(answers[:1], min_max_age_s=1)
    assert only_http.outcome == "error"


# --- security headers -------------------------------------------------------------------------------


def api_answer(fields: list[tuple[str, str]]) -> Answer:
    return answer(fields, url="https://app.example.test/api/v1/me")


def test_full_set_of_security_headers_passes() -> None:
    finding = headers.judge_security_headers(answer(SECURE_FIELDS), api_answer(SECURE_FIELDS))
    assert finding.outcome == "passed", finding.summary
    assert finding.observed["api"]["cache-control"] == "no-store"


def test_every_missing_header_is_listed_in_one_finding() -> None:
    finding = headers.judge_security_headers(answer([]), api_answer([]))
    assert finding.outcome == "failed"
    # 3 per answer (nosniff, framing, Referrer-Policy) plus Cache-Control on the API
    assert finding.summary.startswith("7 header problems: ")
    for words in ("site /: X-Content-Type-Options is not nosniff (missing)", "api /api/v1/me: no frame protection", "no Referrer-Policy"):
        assert words in finding.summary
    assert "api /api/v1/me: Cache-Control is not no-store (missing)" in finding.summary


def with_field(name: str, value: str, base: list[tuple[str, str]] = SECURE_FIELDS) -> list[tuple[str, str]]:
    return [(k, v) for k, v in base if k.lower() != name.lower()] + [(name, value)]


@pytest.mark.parametrize(
    ("name", "value", "flagged"),
    [
        ("Server", "nginx/1.22.1", True),
        ("Server", "Apache/2.4.57 (Debian)", True),
        ("Server", "gunicorn/21.2.0", True),
        ("Server", "Apache/2", True),
        ("X-Powered-By", "PHP 8.2.1", True),
        ("Server", "uvicorn", False),  # a bare product name is accepted (documented in the module)
        ("Server", "nginx", False),
        ("Server", "cloudflare", False),
        ("X-Powered-By", "Express", False),
        ("X-AspNet-Version", "4.0.30319", True),
    ],
)
def test_version_banners(name: str, value: str, flagged: bool) -> None:
    finding = headers.judge_security_headers(answer(with_field(name, value)), api_answer(SECURE_FIELDS))
    assert (finding.outcome == "failed") is flagged, finding.summary
    if flagged:
        assert name.lower() in finding.summary


@pytest.mark.parametrize(
    ("fields", "protected"),
    [
        ([("X-Frame-Options", "sameorigin")], True),
        ([("Content-Security-Policy", "frame-ancestors 'self' https://partner.test")], True),
        ([("Content-Security-Policy", "default-src 'self'"), ("Content-Security-Policy", "frame-ancestors 'none'")], True),
        ([("Content-Security-Policy", "frame-ancestors *")], False),
        ([("X-Frame-Options", "ALLOW-FROM https://a.test")], False),  # obsolete, ignored by browsers
        ([("X-Frame-Options", "DENY"), ("X-Frame-Options", "DENY")], True),  # proxy and app both add it
        ([("X-Frame-Options", "DENY"), ("X-Frame-Options", "SAMEORIGIN")], True),  # the first is judged (the disagreement is listed)
        ([("X-Frame-Options", "ALLOWALL"), ("X-Frame-Options", "DENY")], False),
        ([("Content-Security-Policy-Report-Only", "frame-ancestors 'none'")], False),
    ],
)
def test_frame_protection(fields: list[tuple[str, str]], protected: bool) -> None:
    base = [(k, v) for k, v in SECURE_FIELDS if k not in ("X-Frame-Options", "Content-Security-Policy")]
    finding = headers.judge_security_headers(answer(base + fields), api_answer(SECURE_FIELDS))
    assert ("no frame protection" not in finding.summary) is protected, finding.summary


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("strict-origin-when-cross-origin", None),
        ("unsafe-url, strict-origin-when-cross-origin", None),  # fallback list: the last known token wins
        ("no-referrer, unsafe-url", "unsafe-url sends full URLs"),
        ("No-Referrer-When-Downgrade", "no-referrer-when-downgrade sends full URLs"),
        ("sometimes", "names no policy browsers know"),
    ],
)
def test_referrer_policy(value: str, problem: str | None) -> None:
    finding = headers.judge_security_headers(answer(with_field("Referrer-Policy", value)), api_answer(SECURE_FIELDS))
    if problem is None:
        assert finding.outcome == "passed", finding.summary
    else:
        assert problem in finding.summary


def test_nosniff_is_case_insensitive_but_must_be_nosniff() -> None:
    assert (
        headers.judge_security_headers(answer(with_field("X-Content-Type-Options", "NoSniff")), api_answer(SECURE_FIELDS)).outcome
        == "passed"
    )
    finding = headers.judge_security_headers(answer(with_field("X-Content-Type-Options", "sniff-away")), api_answer(SECURE_FIELDS))
    assert "X-Content-Type-Options is not nosniff (['sniff-away'])" in finding.summary


@pytest.mark.parametrize("name", ["X-Content-Type-Options", "X-Frame-Options"])
def test_identical_repeated_security_headers_pass(name: str) -> None:
    value = dict(SECURE_FIELDS)[name]
    finding = headers.judge_security_headers(answer([*SECURE_FIELDS, (name, value.lower())]), api_answer([*SECURE_FIELDS, (name, value)]))
    assert finding.outcome == "passed", finding.summary


@pytest.mark.parametrize(
    ("name", "second", "expected"),
    [
        ("X-Content-Type-Options", "sniff", "X-Content-Type-Options repeated with different values ['nosniff', 'sniff']"),
        ("X-Frame-Options", "SAMEORIGIN", "X-Frame-Options repeated with different values ['DENY', 'SAMEORIGIN']"),
    ],
)
def test_differing_repeated_security_headers_are_one_problem_each(name: str, second: str, expected: str) -> None:
    # Given the first field right and a repeat that disagrees (two layers set the header differently)
    finding = headers.judge_security_headers(answer([*SECURE_FIELDS, (name, second)]), api_answer(SECURE_FIELDS))
    # Then the first is judged (no "missing" problem) and the disagreement is the one problem listed
    assert finding.outcome == "failed"
    assert finding.summary == f"1 header problems: site /: {expected} (the first is judged; two layers disagree)"


def test_nosniff_judges_the_first_value() -> None:
    finding = headers.judge_security_headers(
        answer([*with_field("X-Content-Type-Options", "sniff"), ("X-Content-Type-Options", "nosniff")]), api_answer(SECURE_FIELDS)
    )
    assert "X-Content-Type-Options is not nosniff (['sniff', 'nosniff'])" in finding.summary


@pytest.mark.parametrize(
    ("value", "ok"), [("No-Store", True), ("private, no-store, max-age=0", True), ("private, max-age=0", False), ("no-cache", False)]
)
def test_cache_control_is_judged_on_the_api_only(value: str, ok: bool) -> None:
    site = answer(with_field("Cache-Control", "public, max-age=600"))
    finding = headers.judge_security_headers(site, api_answer(with_field("Cache-Control", value)))
    assert (finding.outcome == "passed") is ok, finding.summary


@pytest.mark.parametrize(
    ("cors", "problem"),
    [
        ([("Access-Control-Allow-Origin", "*")], None),  # public, no credentials: fine
        ([("Access-Control-Allow-Origin", "*"), ("Access-Control-Allow-Credentials", "true")], "Access-Control-Allow-Origin: * together"),
        (
            [("Access-Control-Allow-Origin", credentials.FOREIGN_ORIGIN), ("Access-Control-Allow-Credentials", "TRUE")],
            "credentialed CORS granted",
        ),
        ([("Access-Control-Allow-Origin", "null"), ("Access-Control-Allow-Credentials", "true")], "credentialed CORS granted"),
        ([("Access-Control-Allow-Origin", "https://app.example.test"), ("Access-Control-Allow-Credentials", "true")], None),
    ],
)
def test_cors_with_credentials(cors: list[tuple[str, str]], problem: str | None) -> None:
    finding = headers.judge_security_headers(answer(SECURE_FIELDS), api_answer(SECURE_FIELDS + cors))
    if problem is None:
        assert finding.outcome == "passed", finding.summary
    else:
        assert finding.outcome == "failed" and problem in finding.summary


def test_a_non_2xx_or_unauthenticated_api_answer_is_noted() -> None:
    api = Answer("https://a.test/api/", "GET", 401, headers.fields_of(SECURE_FIELDS))
    assert "not 2xx" in headers.judge_security_headers(answer(SECURE_FIELDS), api).evidence["note"]
    assert "no token" in headers.judge_security_headers(answer(SECURE_FIELDS), api, api_authenticated=False).evidence["note"]


# --- cookies ----------------------------------------------------------------------------------------


def test_set_cookie_with_expires_commas_and_any_case() -> None:
    cookie = headers.parse_set_cookie("sid=abc, def; Expires=Wed, 21 Oct 2026 07:28:00 GMT; SECURE; httponly; samesite=lax; Path=/")
    assert cookie.name == "sid"
    assert cookie.secure and cookie.http_only and cookie.same_site == "lax"
    assert cookie.attributes["expires"] == "Wed, 21 Oct 2026 07:28:00 GMT"
    assert headers.cookie_problems(cookie) == []
    assert "abc" not in cookie.shown()


@pytest.mark.parametrize(
    ("value", "problems"),
    [
        ("a=1", ["no Secure", "no HttpOnly", "no SameSite"]),
        ("a=1; Secure; HttpOnly", ["no SameSite"]),
        ("a=1; HttpOnly; SameSite=None", ["no Secure", "SameSite=None without Secure"]),
        ("a=1; Secure; HttpOnly; SameSite=None", []),
        ("a=1; Secure; HttpOnly; SameSite=Strictest", ["is not Strict, Lax or None"]),
        ("__Host-a=1; Secure; HttpOnly; SameSite=Lax; Path=/; Domain=example.test", ["__Host- prefix"]),
        ("__Secure-a=1; HttpOnly; SameSite=Lax", ["no Secure", "__Secure- prefix"]),
    ],
)
def test_cookie_problems(value: str, problems: list[str]) -> None:
    found = headers.cookie_problems(headers.parse_set_cookie(value))
    assert len(found) == len(problems), found
    for words, line in zip(problems, found, strict=True):
        assert words in line


def login_answer(cookies: list[str], status: int = 200) -> Answer:
    fields = [("Content-Type", "application/json")] + [("Set-Cookie", c) for c in cookies]
    return answer(fields, url="https://app.example.test/api/v1/auth/login", status=status, method="POST")


def test_every_set_cookie_is_judged_separately() -> None:
    finding = headers.judge_cookies(
        login_answer(["sid=s3cret-session; Secure; HttpOnly; SameSite=Strict", "prefs=dark; Expires=Thu, 01 Jan 2030 00:00:00 GMT; Path=/"])
    )
    assert finding.outcome == "failed"
    assert finding.summary.startswith("cookie prefs: no Secure")
    assert "sid" not in finding.summary
    assert "s3cret-session" not in json.dumps([finding.observed, finding.evidence])


def test_good_login_cookie_passes_and_deleted_cookies_are_not_judged() -> None:
    finding = headers.judge_cookies(login_answer(["sid=x; Secure; HttpOnly; SameSite=Lax", "old=; Max-Age=0"]))
    assert finding.outcome == "passed", finding.summary
    assert finding.summary == "the login cookie is Secure, HttpOnly and SameSite"
    assert finding.evidence["deleted_not_judged"] == ["old"]


def test_a_login_without_cookies_has_nothing_to_judge() -> None:
    finding = headers.judge_cookies(login_answer([]))
    assert (finding.outcome, finding.observed) == ("passed", "no cookies")


@pytest.mark.parametrize("status", [401, 429, 500])
def test_a_failed_login_cannot_be_judged(status: int) -> None:
    finding = headers.judge_cookies(login_answer(["sid=x"], status=status))
    assert finding.outcome == "error"
    assert f"HTTP {status}" in finding.summary


def test_fault_insecure_cookie_drops_the_protective_attributes(tmp_path: Path) -> None:
    healthy = Authenticator(ServiceSettings(data_dir=tmp_path))
    faulty = Authenticator(ServiceSettings(data_dir=tmp_path, faults=frozenset({"insecure-cookie"})))
    good, bad = (headers.parse_set_cookie(a.session_cookie(a.issue("alice"))) for a in (healthy, faulty))
    assert good.name == bad.name == "rg_session"
    assert headers.cookie_problems(good) == []
    assert len(headers.cookie_problems(bad)) == 3
    assert bad.attributes.keys() == {"max-age", "path"}  # only the protections change


# --- the exchange adapter ---------------------------------------------------------------------------


def test_exchange_keeps_repeated_fields_and_sends_only_the_credentials_asked_for() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        fields = [("Set-Cookie", "a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT"), ("Set-Cookie", "b=2"), ("Strict-Transport-Security", "x")]
        return httpx.Response(200, headers=fields, stream=httpx.ByteStream(b"y" * 10_000))

    requests = [
        Request("POST", "https://a.test/login", json={"username": "u", "password": "p"}),
        Request("GET", "https://a.test/", headers={"Authorization": "Bearer explicit"}),
        Request("GET", "https://a.test/"),
    ]
    login, with_token, without = headers.exchange(requests, SETTINGS, transport=httpx.MockTransport(handler))
    # Then every Set-Cookie stays a field of its own, commas in Expires and all
    assert login.all("set-cookie") == ["a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT", "b=2"]
    assert len(login.body) == headers.BODY_CAP_BYTES
    # And the login body went out, while no request picked up the settings' token or the login's cookies
    assert json.loads(seen[0].content) == {"username": "u", "password": "p"}
    assert seen[1].headers["authorization"] == "Bearer explicit"
    assert "authorization" not in seen[2].headers and "cookie" not in seen[2].headers
    assert "cookie" not in seen[1].headers
    # And evidence shows cookie names and attributes, never values
    shown = json.dumps(login.evidence())
    assert "a=[value not recorded]; Expires=Wed, 21 Oct 2026 07:28:00 GMT" in shown and "b=2" not in shown and "password" not in shown


def test_exchange_against_a_loopback_server() -> None:
    hsts = {"Strict-Transport-Security": GOOD_HSTS, "X-Content-Type-Options": "nosniff"}
    with serve(
        {"/": Route(200, "home", headers=hsts), "/api/": Route(401, "no", headers={"WWW-Authenticate": 'Bearer realm="x"'})}
    ) as server:
        site, api = headers.exchange([Request("GET", server.url("/")), Request("GET", server.url("/api/"))], SETTINGS)
        sent = [h for _, h in server.requests]
    assert (site.status, site.first("strict-transport-security"), site.body) == (200, GOOD_HSTS, b"home")
    assert api.all("www-authenticate") == ['Bearer realm="x"']
    assert all("authorization" not in h for h in sent)
    # A plain-http answer is never judged for HSTS
    assert headers.judge_hsts([site], min_max_age_s=1).outcome == "error"


def test_exchange_raises_probe_errors_it_could_not_measure() -> None:
    with pytest.raises(ProbeError, match="cannot connect"):
        headers.exchange([Request("GET", f"http://127.0.0.1:{refused_port()}/")], SETTINGS)
    quick = HttpSettings(timeout_s=0.3, max_body_bytes=1024)
    with serve({"/slow": Route(200, "late", delay_s=2)}) as server, pytest.raises(ProbeTimeout, match="within 0.3 s"):
        headers.exchange([Request("GET", server.url("/slow"))], quick)


def test_exchange_names_a_host_that_does_not_resolve() -> None:
    # .invalid never resolves (RFC 6761): the error names the host and DNS, not only "cannot connect"
    with pytest.raises(ProbeError, match=r"^GET: cannot resolve host name no-such-host\.invalid \(DNS\): ") as caught:
        headers.exchange([Request("GET", "https://no-such-host.invalid/")], SETTINGS)
    assert not isinstance(caught.value, ProbeTimeout)


@pytest.mark.parametrize(
    ("base", "path", "url"), [("https://a.test", "/api/", "https://a.test/api/"), ("https://a.test/", "api", "https://a.test/api")]
)
def test_join(base: str, path: str, url: str) -> None:
    assert headers.join(base, path) == url
