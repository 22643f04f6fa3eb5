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
        ("tampered", 401, INVALID, "ok"),
        ("tampered", 401, CHALLENGE, "warn"),
        ("tampered", 200, None, "fail"),
        ("unsigned", 200, None, "fail"),
        ("unsigned", 403, None, "warn"),
        ("expired", 204, None, "fail"),
    ],
)
def test_refusal_levels(kind: auth.Kind, status: int, challenge: str | None, level: str) -> None:
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


def test_without_a_jwt_to_copy_signature_verification_is_said_to_be_untested() -> None:
    note = "no JWT to copy (no token, or an opaque one): signature verification was not tested"
    finding = auth.judge_required([reply(401, challenge=CHALLENGE)], [reply(401, challenge=INVALID)], reply(200), note=note)
    assert finding.outcome == "passed"
    assert finding.summary == "1 protected paths refuse missing, invalid tokens with 401"
    assert finding.evidence["note"] == note


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
    ("claims", "fresh", "level", "words"),
    [
        ({"iat": NOW, "exp": NOW + 900}, False, "ok", "lives 900 s"),
        ({"iat": NOW, "exp": NOW + 3600}, True, "ok", "lives 3600 s"),
        ({"iat": NOW, "exp": NOW + 3601}, True, "fail", "lives 3601 s (exp - iat), over 3600 s"),
        ({"iat": NOW, "exp": None}, True, "fail", "never expires"),
        ({"iat": NOW, "exp": "soon"}, False, "fail", "never expires"),
        # no iat: a token fresh from login is judged on what is left of it, a configured one cannot be
        ({"iat": None, "exp": NOW + 600}, True, "ok", "no iat claim; the token fresh from login expires in 600 s"),
        ({"iat": None, "exp": NOW + 86400}, True, "fail", "no iat, but the token fresh from login is valid for 86400 s, over 3600 s"),
        ({"iat": None, "exp": NOW - 5}, True, "fail", "malformed claims: the token fresh from login expired 5 s ago"),
        ({"iat": None, "exp": NOW + 600}, False, "warn", "no iat: lifetime unknown"),
        ({"iat": None, "exp": NOW + 86400}, False, "warn", "no iat: lifetime unknown"),
        # impossible claims
        ({"iat": NOW, "exp": NOW}, True, "fail", "malformed claims: exp - iat is 0 s"),
        ({"iat": NOW, "exp": NOW - 900}, False, "fail", "malformed claims: exp - iat is -900 s"),
        ({"iat": NOW + 61, "exp": NOW + 900}, True, "fail", "malformed claims: iat is 61 s in the future"),
        ({"iat": NOW + 60, "exp": NOW + 900}, True, "ok", "lives 840 s"),  # a minute of clock skew is allowed
        ({"iat": NOW * 1000, "exp": NOW * 1000 + 900_000}, True, "fail", "malformed claims: iat and exp look like milliseconds"),
        ({"iat": NOW, "exp": NOW * 1000}, False, "fail", "malformed claims: exp look"),
    ],
)
def test_lifetime(claims: dict[str, object], fresh: bool, level: str, words: str) -> None:
    present = {k: v for k, v in claims.items() if v is not None}
    decoded = auth.Jwt(header={"alg": "HS256"}, claims={"sub": "a", **present}, segments=("h", "p", "s"))
    verdict = auth.judge_lifetime(decoded, max_lifetime_s=3600, now=NOW, fresh=fresh)
    assert verdict.level == level, verdict.text
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


def judge(
    expired: Answer | None,
    *,
    claims: dict[str, object] | None = None,
    unauthenticated: Answer | None = None,
    source: auth.TokenSource = "target",
    problem: str | None = None,
) -> Finding:
    decoded = auth.decode_jwt(token(**(claims or {})))
    assert decoded is not None
    return auth.judge_token_lifetime(
        decoded,
        expired,
        max_lifetime_s=3600,
        now=NOW + 5,
        source=source,
        lifetime_source="login",
        unauthenticated=unauthenticated,
        expired_problem=problem,
        expired_claims=auth.decode_jwt(token(iat=NOW - 7200, exp=NOW - 3600)) if source == "target" else None,
    )


def test_short_token_and_refused_real_expired_token_pass() -> None:
    finding = judge(reply(401, challenge=INVALID))
    assert finding.outcome == "passed", finding.summary
    assert finding.observed == {"exp - iat": 900, "expired token": 401, "expired token source": "target"}
    assert finding.evidence["expired_token"] == "the target's auth.expired_token_env"
    assert finding.evidence["expired_token_exp"] == NOW - 3600
    assert finding.evidence["token_judged"] == "fresh from the target's auth.login"
    assert finding.evidence["claims"] == ["exp", "iat", "sub"]


def test_a_refused_forged_token_proves_no_expiry_check_so_it_warns() -> None:
    # Given no auth.expired_token_env: the forged copy is refused, but a signature check alone refuses it
    finding = judge(reply(401, challenge=INVALID), source="forged")
    assert finding.outcome == "warned"
    assert finding.summary == "expiry not proven: set auth.expired_token_env to a really expired token"
    assert "tampered copy of the judged token" in finding.evidence["expired_token"]
    # And a long lifetime still fails: failed wins over the warning
    long_lived = judge(reply(401, challenge=INVALID), claims={"exp": NOW + 86400}, source="forged")
    assert long_lived.outcome == "failed"
    assert long_lived.summary.startswith("the token lives 86400 s (exp - iat), over 3600 s; expiry not proven")


def test_an_accepted_forged_token_is_the_signature_failure_not_this_checks() -> None:
    finding = judge(reply(200), source="forged")
    assert finding.outcome == "warned"
    assert "signatures are not verified (security.auth.required's failure)" in finding.summary
    assert "expiry not proven" in finding.summary


def test_long_lived_token_fails() -> None:
    finding = judge(reply(401, challenge=INVALID), claims={"exp": NOW + 30 * 86400})
    assert finding.outcome == "failed"
    assert finding.summary == "the token lives 2592000 s (exp - iat), over 3600 s"


def test_accepted_expired_token_fails_when_auth_works_otherwise() -> None:
    finding = judge(reply(200), unauthenticated=reply(401, challenge=CHALLENGE))
    assert finding.outcome == "failed"
    assert finding.summary == "/api/v1/me with an expired token: HTTP 200, not refused: expiry is not enforced"


def test_accepted_expired_token_only_warns_when_nothing_is_authenticated() -> None:
    # Given an endpoint that answers without any token (security.auth.required's failure)
    finding = judge(reply(200), unauthenticated=reply(200))
    assert finding.outcome == "warned"
    assert "see security.auth.required" in finding.summary
    # But a long lifetime on top is still this check's own failure
    assert judge(reply(200), claims={"exp": NOW + 86400}, unauthenticated=reply(200)).outcome == "failed"


def test_expired_token_without_invalid_token_code_warns() -> None:
    assert judge(reply(401, challenge=CHALLENGE)).outcome == "warned"


def test_an_unusable_expired_token_is_an_error_unless_the_lifetime_already_fails() -> None:
    problem = "the token in auth.expired_token_env has not expired yet (exp is 60 s ahead)"
    finding = judge(None, problem=problem)
    assert (finding.outcome, finding.summary) == ("error", problem)
    assert finding.observed["expired token"] is None and finding.evidence["answers"] == []
    assert judge(None, claims={"exp": NOW + 86400}, problem=problem).outcome == "failed"


# --- through the adapter, against loopback servers --------------------------------------------------

Verifier = Literal["strict", "no-signature", "header-alg", "no-expiry"]


def bearer_api(verifier: Verifier = "strict") -> Handler:
    """A protected endpoint with a bearer check: strict (HS256 signature and expiry) or one classic flaw."""

    def handle(request: BaseHTTPRequestHandler) -> Route:
        header = request.headers.get("Authorization")
        if not header:
            return Route(401, {"detail": "no token"}, headers={"WWW-Authenticate": CHALLENGE})
        value = header.removeprefix("Bearer ")
        # iat is the tests' fixed NOW, maybe ahead of the real clock: only signature and expiry count here.
        options: dict[str, bool] = {"verify_iat": False}
        try:
            if verifier == "no-signature" or (verifier == "header-alg" and jwt.get_unverified_header(value).get("alg") == "none"):
                options["verify_signature"] = False
            if verifier == "no-expiry":
                options["verify_exp"] = False
            jwt.decode(value, KEY, algorithms=["HS256"], options=options)  # type: ignore[arg-type]
        except jwt.InvalidTokenError:
            return Route(401, {"detail": "bad token"}, headers={"WWW-Authenticate": INVALID})
        return Route(200, {"username": "alice"})

    return handle


def run_required(server_url: str, paths: list[str], valid: str) -> Finding:
    """The requests of security.auth.required, in its order, through the same adapter."""
    urls = [server_url + p for p in paths]
    decoded = auth.decode_jwt(valid)
    assert decoded is not None
    requests = (
        [Request("GET", u) for u in urls]
        + [Request("GET", u, headers=credentials.bearer(credentials.GARBAGE_TOKEN)) for u in urls]
        + [Request("GET", u, headers=credentials.bearer(credentials.tampered_jwt(valid))) for u in urls]
        + [Request("GET", urls[0], headers=credentials.bearer(auth.unsigned_copy(decoded)))]
        + [Request("GET", urls[0], headers=credentials.bearer(valid))]
    )
    answers = headers.exchange(requests, SETTINGS)
    n = len(urls)
    return auth.judge_required(answers[:n], answers[n : 2 * n], answers[-1], tampered=answers[2 * n : 3 * n], unsigned=answers[3 * n])


def run_lifetime(server_url: str, valid: str, expired_token: str | None) -> Finding:
    """security.auth.token_lifetime's requests: the given expired token, else a forged one."""
    decoded = auth.decode_jwt(valid)
    assert decoded is not None
    now = time.time()
    sent = expired_token or auth.forge_expired(decoded, now=now)
    url = server_url + "/api/v1/me"
    (expired,) = headers.exchange([Request("GET", url, headers=credentials.bearer(sent))], SETTINGS)
    unauthenticated = None
    if expired_token and expired.status == 200:
        (unauthenticated,) = headers.exchange([Request("GET", url)], SETTINGS)
    return auth.judge_token_lifetime(
        decoded,
        expired,
        max_lifetime_s=3600,
        now=now,
        source="target" if expired_token else "forged",
        unauthenticated=unauthenticated,
        expired_claims=auth.decode_jwt(expired_token) if expired_token else None,
    )


def fresh_tokens() -> tuple[str, str]:
    """A valid token issued now (900 s) and a really expired one with the same key."""
    now = int(time.time())
    valid = jwt.encode({"sub": "alice", "iat": now, "exp": now + 900, "jti": "v"}, KEY, algorithm="HS256")
    return valid, jwt.encode({"sub": "alice", "iat": now - 7200, "exp": now - 3600, "jti": "x"}, KEY, algorithm="HS256")


def test_a_real_bearer_check_passes_both_auth_checks() -> None:
    valid, expired = fresh_tokens()
    handler = bearer_api()
    with serve({"/api/v1/me": handler, "/api/v1/conversations": handler}) as server:
        required = run_required(server.base_url, ["/api/v1/me", "/api/v1/conversations"], valid)
        lifetime = run_lifetime(server.base_url, valid, expired)
        forged_only = run_lifetime(server.base_url, valid, None)
        sent = [h.get("authorization", "") for _, h in server.requests]
    assert required.outcome == "passed", required.summary
    assert required.observed["/api/v1/me"] == {
        "no token": 401,
        "invalid token": 401,
        "tampered token": 401,
        "alg none token": 401,
        "valid token": 200,
    }
    assert lifetime.outcome == "passed", lifetime.summary
    # Without a really expired token the same server cannot be proven to check expiry
    assert (forged_only.outcome, forged_only.summary) == ("warned", auth.EXPIRY_NOT_PROVEN)
    # Tokens went out on the wire, but none reached the findings
    findings = [required, lifetime, forged_only]
    evidence = json.dumps([[f.observed, f.evidence, f.summary] for f in findings])
    secret_parts = {part for value in sent if value.startswith("Bearer ey") for part in value.removeprefix("Bearer ").split(".") if part}
    assert secret_parts and not any(part in evidence for part in secret_parts)
    assert "eyJ" not in evidence


def test_an_endpoint_without_auth_fails() -> None:
    with serve({"/api/v1/me": Route(200, {"username": "anonymous"})}) as server:
        finding = run_required(server.base_url, ["/api/v1/me"], token())
    assert finding.outcome == "failed"
    assert finding.summary.count("not refused") == 2


def test_an_api_that_does_not_verify_signatures_fails_auth_required() -> None:
    valid, _ = fresh_tokens()
    with serve({"/api/v1/me": bearer_api("no-signature")}) as server:
        finding = run_required(server.base_url, ["/api/v1/me"], valid)
    assert finding.outcome == "failed"
    # The garbage token is still refused (it is no JWT): only the forged copies show the hole
    assert finding.observed["/api/v1/me"] == {
        "no token": 401,
        "invalid token": 401,
        "tampered token": 200,
        "alg none token": 200,
        "valid token": 200,
    }
    assert finding.summary.startswith(
        "/api/v1/me with a tampered copy of the gate's token: HTTP 200, accepted: signatures are not verified"
    )


def test_an_api_that_takes_the_algorithm_from_the_token_fails_auth_required() -> None:
    valid, _ = fresh_tokens()
    with serve({"/api/v1/me": bearer_api("header-alg")}) as server:
        finding = run_required(server.base_url, ["/api/v1/me"], valid)
    assert finding.outcome == "failed"
    assert (
        finding.summary
        == '/api/v1/me with an alg none copy of the gate\'s token: HTTP 200, accepted: unsigned (alg "none") tokens are trusted'
    )


def test_an_api_that_ignores_exp_fails_token_lifetime_with_a_real_expired_token() -> None:
    valid, expired = fresh_tokens()
    with serve({"/api/v1/me": bearer_api("no-expiry")}) as server:
        proven = run_lifetime(server.base_url, valid, expired)
        forged_only = run_lifetime(server.base_url, valid, None)
    assert proven.outcome == "failed"
    assert proven.summary == "/api/v1/me with an expired token: HTTP 200, not refused: expiry is not enforced"
    # The forged copy is refused for its signature: the hole stays hidden, hence the warning, never a pass
    assert forged_only.outcome == "warned"


# --- forged copies and the login answer -------------------------------------------------------------


def test_unsigned_copy_keeps_the_claims_under_alg_none() -> None:
    original = token(jti="abc")
    decoded = auth.decode_jwt(original)
    assert decoded is not None
    unsigned = auth.unsigned_copy(decoded)
    head, payload, signature = unsigned.split(".")
    assert (payload, signature) == (original.split(".")[1], "")
    assert jwt.get_unverified_header(unsigned) == {"alg": "none", "typ": "JWT"}
    assert jwt.decode(unsigned, options={"verify_signature": False}) == decoded.claims
    with pytest.raises(jwt.InvalidTokenError):
        jwt.decode(unsigned, KEY, algorithms=["HS256"])


@pytest.mark.parametrize(
    ("status", "body", "found"),
    [
        (200, b'{"access_token": "abc.def.ghi", "token_type": "Bearer"}', "abc.def.ghi"),
        (201, b'{"access_token": "opaque"}', "opaque"),
        (401, b'{"access_token": "abc"}', None),
        (200, b'{"access_token": ""}', None),
        (200, b'{"token": "abc"}', None),
        (200, b"[1]", None),
        (200, b'{"access_token": "truncated', None),
    ],
)
def test_access_token_of_a_login_answer(status: int, body: bytes, found: str | None) -> None:
    assert auth.access_token(reply(status, "/api/v1/auth/login", body=body)) == found
