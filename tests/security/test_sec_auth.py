"""Auth family: refusals, the valid-token control, JWT lifetime, the expired token.

Judges get hand-built answers; a loopback server with a real bearer check (and one without)
runs the same requests the check sends, through the same adapter.
"""

from __future__ import annotations

import json
import time
from http.server import BaseHTTPRequestHandler
from typing import Literal

import jwt
import pytest

from loopback import Handler, Route, serve
from releasegate.probes import auth, credentials, headers
from releasegate.probes.headers import Answer, Request
from releasegate.probes.http import HttpSettings
from releasegate.results import Finding

KEY = "test-signing-key-long-enough-for-hs256-32b"
NOW = 1_800_000_000
SETTINGS = HttpSettings(timeout_s=2, max_body_bytes=64 * 1024)
CHALLENGE = 'Bearer realm="api"'
INVALID = 'Bearer realm="api", error="invalid_token", error_description="bad"'


def token(**claims: object) -> str:
    return jwt.encode({"sub": "alice", "iat": NOW, "exp": NOW + 900, **claims}, KEY, algorithm="HS256")


def reply(status: int, path: str = "/api/v1/me", challenge: str | None = None, body: bytes = b"") -> Answer:
    fields = headers.fields_of([("WWW-Authenticate", challenge)] if challenge else [])
    return Answer(url=f"https://app.example.test{path}", method="GET", status=status, fields=fields, body=body)


# --- refusals and the valid-token control -----------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "challenge", "level"),
    [
        ("missing", 401, CHALLENGE, "ok"),
        ("missing", 401, None, "warn"),  # RFC 9110 §15.5.2: a 401 must carry a challenge
        ("invalid", 401, INVALID, "ok"),
        ("invalid", 401, CHALLENGE, "warn"),  # no error="invalid_token"
        ("invalid", 401, "Bearer error=invalid_token", "ok"),  # unquoted, still recognisable
        ("missing", 403, None, "warn"),  # refused, but RFC 6750 reserves 403 for insufficient scope
        ("missing", 200, None, "fail"),
        ("invalid", 302, None, "fail"),
        ("missing", 404, None, "error"),
        ("missing", 429, None, "error"),
        ("missing", 500, None, "error"),
    ],
)
def test_refusal_levels(kind: Literal["missing", "invalid"], status: int, challenge: str | None, level: str) -> None:
    assert auth.refusal(reply(status, challenge=challenge), kind).level == level


@pytest.mark.parametrize(("status", "level"), [(200, "ok"), (404, "ok"), (401, "error"), (403, "error"), (429, "error"), (503, "error")])
def test_the_valid_token_must_get_past_authentication(status: int, level: str) -> None:
    assert auth.acceptance(reply(status)).level == level


def test_working_auth_passes() -> None:
    paths = ["/api/v1/me", "/api/v1/conversations"]
    finding = auth.judge_required([reply(401, p, CHALLENGE) for p in paths], [reply(401, p, INVALID) for p in paths], reply(200))
    assert finding.outcome == "passed", finding.summary
    assert finding.observed["/api/v1/me"] == {"no token": 401, "invalid token": 401, "valid token": 200}


def test_an_open_endpoint_fails_and_shows_what_leaked() -> None:
    missing = [reply(200, body=b'{"username":"anonymous"}'), reply(401, "/api/x", CHALLENGE)]
    finding = auth.judge_required(missing, [reply(401, challenge=INVALID), reply(401, "/api/x", CHALLENGE)], reply(200))
    assert finding.outcome == "failed"
    # The failure leads, the weaker finding follows
    failure = "/api/v1/me without a token: HTTP 200, not refused"
    warning = '/api/x with an invalid token: 401 without error="invalid_token" in WWW-Authenticate'
    assert finding.summary == f"{failure}; {warning}"
    assert finding.evidence["answers"][0]["body_excerpt"] == '{"username":"anonymous"}'


def test_refusing_everyone_cannot_pass() -> None:
    finding = auth.judge_required([reply(401, challenge=CHALLENGE)], [reply(401, challenge=INVALID)], reply(401, challenge=INVALID))
    assert finding.outcome == "error"
    assert "the gate's token is not accepted" in finding.summary


def test_without_a_token_the_refusals_are_judged_and_the_gap_noted() -> None:
    finding = auth.judge_required([reply(401, challenge=CHALLENGE)], [reply(401, challenge=INVALID)], None)
    assert finding.outcome == "passed"
    assert "valid token was not tried" in finding.evidence["note"]


def test_403_warns() -> None:
    finding = auth.judge_required([reply(403)], [reply(401, challenge=INVALID)], reply(200))
    assert finding.outcome == "warned"
    assert "403 where RFC 6750 asks for 401" in finding.summary


# --- JWT reading and forging ------------------------------------------------------------------------


def test_decode_jwt_reads_without_a_key() -> None:
    decoded = auth.decode_jwt(token(jti="abc"))
    assert decoded is not None
    assert decoded.header == {"alg": "HS256", "typ": "JWT"}
    assert decoded.claims == {"sub": "alice", "iat": NOW, "exp": NOW + 900, "jti": "abc"}


@pytest.mark.parametrize("value", ["opaque-token-123456", "a.b.c", "x.e30.y.z.w", "W10.W10.sig", "e30.bm90IGpzb24.sig", ""])
def test_anything_but_a_jws_is_opaque(value: str) -> None:
    assert auth.decode_jwt(value) is None


def test_forged_expired_token_keeps_header_and_signature_and_never_verifies() -> None:
    original = token(jti="abc", nbf=NOW)
    decoded = auth.decode_jwt(original)
    assert decoded is not None
    forged = auth.forge_expired(decoded, now=NOW + 10)
    head, _, signature = forged.split(".")
    assert (head, signature) == (original.split(".")[0], original.split(".")[2])
    claims = jwt.decode(forged, options={"verify_signature": False})
    assert claims["exp"] == NOW + 10 - 3600 and claims["iat"] < claims["exp"] and "nbf" not in claims
    assert claims["jti"] == "abc" and claims["sub"] == "alice"
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(forged, KEY, algorithms=["HS256"], options={"verify_exp": False})


@pytest.mark.parametrize(
    ("claims", "level", "words"),
    [
        ({"iat": NOW, "exp": NOW + 900}, "ok", "lives 900 s"),
        ({"iat": NOW, "exp": NOW + 3600}, "ok", "lives 3600 s"),
        ({"iat": NOW, "exp": NOW + 3601}, "fail", "lives 3601 s (exp - iat), over 3600 s"),
        ({"iat": NOW, "exp": None}, "fail", "never expires"),
        ({"iat": None, "exp": NOW + 600}, "ok", "no iat claim"),
        ({"iat": None, "exp": NOW + 86400}, "fail", "no iat, but the token is still valid for 86400 s"),
        ({"iat": NOW, "exp": "soon"}, "fail", "never expires"),
    ],
)
def test_lifetime(claims: dict[str, object], level: str, words: str) -> None:
    present = {k: v for k, v in claims.items() if v is not None}
    decoded = auth.Jwt(header={"alg": "HS256"}, claims={"sub": "a", **present}, segments=("h", "p", "s"))
    verdict = auth.judge_lifetime(decoded, max_lifetime_s=3600, now=NOW)
    assert verdict.level == level
    assert words in verdict.text


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (token(exp=NOW - 60), None),
        ("opaque-expired-token", None),
        (token(exp=NOW + 60), "has not expired yet"),
        (jwt.encode({"sub": "a"}, KEY, algorithm="HS256"), "no exp claim"),
    ],
)
def test_expired_token_from_the_target_must_be_expired(value: str, problem: str | None) -> None:
    found = auth.expired_token_problem(value, now=NOW)
    assert (found is None) if problem is None else (found is not None and problem in found)


# --- token lifetime judge ---------------------------------------------------------------------------


def judge(expired: Answer, *, claims: dict[str, object] | None = None, unauthenticated: Answer | None = None) -> Finding:
    decoded = auth.decode_jwt(token(**(claims or {})))
    assert decoded is not None
    return auth.judge_token_lifetime(decoded, expired, max_lifetime_s=3600, now=NOW + 5, source="forged", unauthenticated=unauthenticated)


def test_short_token_and_refused_expiry_pass() -> None:
    finding = judge(reply(401, challenge=INVALID))
    assert finding.outcome == "passed", finding.summary
    assert finding.observed == {"exp - iat": 900, "expired token": 401, "expired token source": "forged"}
    assert "original signature" in finding.evidence["expired_token"]
    assert finding.evidence["claims"] == ["exp", "iat", "sub"]


def test_long_lived_token_fails() -> None:
    finding = judge(reply(401, challenge=INVALID), claims={"exp": NOW + 30 * 86400})
    assert finding.outcome == "failed"
    assert finding.summary == "the token lives 2592000 s (exp - iat), over 3600 s"


def test_accepted_expired_token_fails_when_auth_works_otherwise() -> None:
    finding = judge(reply(200), unauthenticated=reply(401, challenge=CHALLENGE))
    assert finding.outcome == "failed"
    assert "with an expired token: HTTP 200, not refused" in finding.summary


def test_accepted_expired_token_only_warns_when_nothing_is_authenticated() -> None:
    # Given an endpoint that answers without any token (security.auth.required's failure)
    finding = judge(reply(200), unauthenticated=reply(200))
    assert finding.outcome == "warned"
    assert "see security.auth.required" in finding.summary
    # But a long lifetime on top is still this check's own failure
    assert judge(reply(200), claims={"exp": NOW + 86400}, unauthenticated=reply(200)).outcome == "failed"


def test_expired_token_without_invalid_token_code_warns() -> None:
    assert judge(reply(401, challenge=CHALLENGE)).outcome == "warned"


# --- through the adapter, against loopback servers --------------------------------------------------


def bearer_api(valid: str) -> Handler:
    """A protected endpoint with a real bearer check: HS256 signature and expiry."""

    def handle(request: BaseHTTPRequestHandler) -> Route:
        header = request.headers.get("Authorization")
        if not header:
            return Route(401, {"detail": "no token"}, headers={"WWW-Authenticate": CHALLENGE})
        try:
            # iat is the tests' fixed NOW, maybe ahead of the real clock: only signature and expiry count here.
            jwt.decode(header.removeprefix("Bearer "), KEY, algorithms=["HS256"], options={"verify_iat": False})
        except jwt.InvalidTokenError:
            return Route(401, {"detail": "bad token"}, headers={"WWW-Authenticate": INVALID})
        return Route(200, {"username": "alice"})

    return handle


def run_required(server_url: str, paths: list[str], valid: str) -> Finding:
    urls = [server_url + p for p in paths]
    requests = [Request("GET", u) for u in urls] + [Request("GET", u, headers=credentials.bearer(credentials.GARBAGE_TOKEN)) for u in urls]
    answers = headers.exchange([*requests, Request("GET", urls[0], headers=credentials.bearer(valid))], SETTINGS)
    return auth.judge_required(answers[: len(urls)], answers[len(urls) : 2 * len(urls)], answers[-1])


def test_a_real_bearer_check_passes_both_auth_checks() -> None:
    valid = jwt.encode({"sub": "alice", "iat": NOW, "exp": 2**40}, KEY, algorithm="HS256")
    handler = bearer_api(valid)
    with serve({"/api/v1/me": handler, "/api/v1/conversations": handler}) as server:
        required = run_required(server.base_url, ["/api/v1/me", "/api/v1/conversations"], valid)
        decoded = auth.decode_jwt(valid)
        assert decoded is not None
        (expired,) = headers.exchange(
            [Request("GET", server.url("/api/v1/me"), headers=credentials.bearer(auth.forge_expired(decoded, now=time.time())))], SETTINGS
        )
        sent = [h.get("authorization", "") for _, h in server.requests]
    assert required.outcome == "passed", required.summary
    lifetime = auth.judge_token_lifetime(decoded, expired, max_lifetime_s=2**41, now=NOW, source="forged")
    assert lifetime.outcome == "passed", lifetime.summary
    # Tokens went out on the wire, but none reached the findings
    evidence = json.dumps([required.observed, required.evidence, lifetime.observed, lifetime.evidence, required.summary, lifetime.summary])
    secret_parts = {part for value in sent if value.startswith("Bearer ey") for part in value.removeprefix("Bearer ").split(".")}
    assert secret_parts and not any(part in evidence for part in secret_parts)


def test_an_endpoint_without_auth_fails() -> None:
    with serve({"/api/v1/me": Route(200, {"username": "anonymous"})}) as server:
        finding = run_required(server.base_url, ["/api/v1/me"], token())
    assert finding.outcome == "failed"
    assert finding.summary.count("not refused") == 2
