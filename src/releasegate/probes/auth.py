"""Auth family: protected endpoints refuse bad credentials; tokens are short-lived and expire.

``security.auth.required`` sends, to every protected path, one request without credentials, one
with a garbage bearer token and one with a *tampered* copy of the gate's own JWT (claims intact,
signature replaced, :func:`credentials.tampered_jwt`); to the first path also an ``alg: none``
copy (same claims, no signature). All must get 401 (RFC 6750 §3.1), the bad tokens with
``error="invalid_token"``. The garbage token is refused by any JWT parser, so only the tampered
and unsigned copies show that signatures are verified: an API that takes them would take any
claims anybody writes. One request with the gate's own token shows that the endpoint is not
simply refusing everyone: without it "always 401" and "auth works" look the same.

``security.auth.token_lifetime`` reads a JWT *without verifying it* (the gate has no key, and
needs none to read ``iat``/``exp``) and judges ``exp - iat`` against the policy. The token is a
fresh one from the target's login when ``auth.login`` is configured (what users get *now*; a
configured token may predate the release under test), otherwise the configured token. Then it
presents an expired token:
- ``auth.expired_token_env``: a really expired token (its claims are checked first: not
  expired, or no ``exp`` -> error). It must get 401 ``invalid_token``. Should it be accepted,
  one request without any token tells a missing expiry check from no authentication at all (the
  latter is security.auth.required's failure, so here it only warns).
- otherwise a copy of the judged token with ``exp`` in the past and the original signature. Any
  server that checks signatures refuses it whatever it does with ``exp``, so this proves nothing
  about expiry: the check warns "expiry not proven" instead of passing, and a copy *accepted*
  is the signature failure of security.auth.required, not a second failure here.

Lifetime decisions: no ``exp`` fails (never expires); ``exp - iat`` <= 0, ``iat`` more than a
minute ahead of the gate's clock, or a timestamp in milliseconds fails as malformed claims
(the expiry arithmetic of any verifier is then meaningless); no ``iat`` on a token fresh from
login is judged on ``exp - now`` (the same thing, minus a round trip), on a configured token of
unknown age it warns: the lifetime cannot be known.

Refusal choices:
- 403 where 401 is due: the request is refused, but RFC 6750 §3.1 reserves 403 for
  insufficient scope, and clients cannot tell "log in again" from "forbidden": warned.
- 401 without a ``WWW-Authenticate`` challenge (RFC 9110 §15.5.2 requires one), or without
  ``error="invalid_token"`` for a bad token: warned.
- 2xx or 3xx without valid credentials: failed. 404/405/429/5xx: could not judge (error).

Tokens, forged or not, and passwords never reach the evidence: only statuses, challenges, claim
names and times, and words such as "tampered copy of the gate's token".
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from releasegate.probes.headers import Answer
from releasegate.results import Finding

EXCERPT_CHARS = 200
# A seconds timestamp reaches 1e11 in the year 5138; a milliseconds one passed it in 1973.
MILLISECONDS_FROM = 100_000_000_000
# iat this far ahead of the gate's clock is a wrong clock or wrong claims, not network delay.
MAX_FUTURE_IAT_S = 60
TokenSource = Literal["target", "forged"]
LifetimeSource = Literal["login", "target"]
Kind = Literal["missing", "invalid", "tampered", "unsigned", "expired"]
Level = Literal["ok", "warn", "fail", "error"]
_RANK: dict[Level, int] = {"ok": 0, "warn": 1, "error": 2, "fail": 3}  # a proven failure outranks "could not judge"
_OUTCOME: dict[Level, Literal["passed", "warned", "failed", "error"]] = {
    "ok": "passed",
    "warn": "warned",
    "fail": "failed",
    "error": "error",
}
_INVALID_TOKEN = re.compile(r'\berror\s*=\s*"?invalid_token"?', re.IGNORECASE)
_WHAT: dict[Kind, str] = {
    "missing": "without a token",
    "invalid": "with an invalid token",
    "tampered": "with a tampered copy of the gate's token",
    "unsigned": "with an alg none copy of the gate's token",
    "expired": "with an expired token",
}
# Why accepting each kind is a failure, said once in the summary.
_ACCEPTED: dict[Kind, str] = {
    "missing": "not refused",
    "invalid": "not refused",
    "tampered": "accepted: signatures are not verified",
    "unsigned": 'accepted: unsigned (alg "none") tokens are trusted',
    "expired": "not refused",
}
_LABEL: dict[Kind, str] = {
    "missing": "no token",
    "invalid": "invalid token",
    "tampered": "tampered token",
    "unsigned": "alg none token",
    "expired": "expired token",
}
EXPIRY_NOT_PROVEN = "expiry not proven: set auth.expired_token_env to a really expired token"


# --------------------------------------------------------------------------- security.auth.required


@dataclass(frozen=True)
class Verdict:
    level: Level
    text: str


def refusal(answer: Answer, kind: Kind) -> Verdict:
    """How well one answer to a request with missing, invalid, tampered, unsigned or expired credentials refuses it."""
    status = answer.status
    challenges = answer.all("www-authenticate")
    what = _WHAT[kind]
    if 200 <= status < 400:
        return Verdict("fail", f"{answer.path} {what}: HTTP {status}, {_ACCEPTED[kind]}")
    if status == 401:
        if not challenges:
            return Verdict("warn", f"{answer.path} {what}: 401 without a WWW-Authenticate challenge")
        if kind != "missing" and not any(_INVALID_TOKEN.search(c) for c in challenges):
            return Verdict("warn", f'{answer.path} {what}: 401 without error="invalid_token" in WWW-Authenticate')
        return Verdict("ok", f"{answer.path} {what}: 401")
    if status == 403:
        return Verdict("warn", f"{answer.path} {what}: 403 where RFC 6750 asks for 401 (refused all the same)")
    return Verdict("error", f"{answer.path} {what}: HTTP {status}, neither accepted nor refused as unauthenticated: cannot judge")


def acceptance(answer: Answer) -> Verdict:
    """The gate's valid token must get past authentication (anything but 401/403/429/5xx)."""
    status = answer.status
    if status == 401:
        return Verdict("error", f"the gate's token is not accepted on {answer.path} (401): cannot tell working auth from refusing everyone")
    if status == 403:
        return Verdict("error", f"the gate's token is refused on {answer.path} (403): use a token allowed to read it")
    if status == 429 or status >= 500:
        return Verdict("error", f"{answer.path} with the gate's token: HTTP {status}, cannot judge")
    return Verdict("ok", f"{answer.path} with the gate's token: HTTP {status}")


def judge_required(
    missing: Sequence[Answer],
    invalid: Sequence[Answer],
    valid: Answer | None,
    *,
    tampered: Sequence[Answer] = (),
    unsigned: Answer | None = None,
    note: str | None = None,
) -> Finding:
    """Every protected path refuses missing, invalid and forged tokens with 401; the valid token gets through.

    ``tampered``/``unsigned`` are empty when the gate has no JWT to copy; ``note`` then says why,
    and the finding cannot speak for signature verification.
    """
    expected: dict[str, Any] = {
        "without a token": 401,
        "with an invalid token": '401, WWW-Authenticate error="invalid_token"',
        "with a tampered token (signature replaced)": '401, WWW-Authenticate error="invalid_token"',
        "with an alg none token": '401, WWW-Authenticate error="invalid_token"',
        "with the gate's token": "accepted",
    }
    sent: list[tuple[Answer, Kind]] = [
        *((a, "missing") for a in missing),
        *((a, "invalid") for a in invalid),
        *((a, "tampered") for a in tampered),
    ]
    if unsigned is not None:
        sent.append((unsigned, "unsigned"))
    verdicts = [refusal(answer, kind) for answer, kind in sent]
    if valid is not None:
        verdicts.append(acceptance(valid))
    observed: dict[str, Any] = {}
    for answer, kind in sent:
        observed.setdefault(answer.path, {})[_LABEL[kind]] = answer.status
    if valid is not None:
        observed.setdefault(valid.path, {})["valid token"] = valid.status
    records = [_auth_evidence(answer, _LABEL[kind]) for answer, kind in sent]
    if valid is not None:
        records.append(_auth_evidence(valid, "valid token"))
    evidence: dict[str, Any] = {
        "answers": records,
        "tokens_sent": {
            "invalid token": "a fixed non-JWT string (releasegate.probes.credentials.GARBAGE_TOKEN)",
            "tampered token": "tampered copy of the gate's token: header and claims kept, signature replaced",
            "alg none token": 'the gate\'s token\'s claims under the header {"alg": "none"}, with an empty signature',
        },
    }
    notes = [note] if note else []
    if valid is None:
        notes.append("no auth.token_env: the valid token was not tried, so a path refusing everyone would pass")
    if notes:
        evidence["note"] = "; ".join(notes)
    forged = " and forged" if tampered else ""
    return _conclude(
        verdicts, observed, expected, evidence, passed=f"{len(missing)} protected paths refuse missing, invalid{forged} tokens with 401"
    )


# --------------------------------------------------------------------------- JWT reading and forging


@dataclass(frozen=True)
class Jwt:
    """A JWS compact token, read without verification."""

    header: dict[str, Any]
    claims: dict[str, Any]
    segments: tuple[str, str, str]


def decode_jwt(token: str) -> Jwt | None:
    """The header and claims of a JWS compact token; None for anything else (opaque, JWE, garbage)."""
    segments = token.strip().split(".")
    if len(segments) != 3:
        return None
    try:
        header, claims = (json.loads(_b64url_decode(part)) for part in segments[:2])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return None
    return Jwt(header=header, claims=claims, segments=(segments[0], segments[1], segments[2]))


def unsigned_copy(token: Jwt) -> str:
    """The same claims under ``{"alg": "none"}`` and an empty signature (RFC 7519 §6.1's unsecured JWT).

    A library that takes the algorithm from the token's header instead of from the server's
    configuration accepts it: the classic JWT bypass, and one a replaced signature does not show.
    """
    header = _b64url_encode(json.dumps({"alg": "none", "typ": "JWT"}, separators=(",", ":")).encode())
    return f"{header}.{token.segments[1]}."


def forge_expired(token: Jwt, *, now: float, lifetime_s: int = 3600) -> str:
    """The same token with ``exp`` an hour in the past (and ``iat`` before it), keeping the original signature."""
    claims = dict(token.claims)
    claims["exp"] = int(now) - 3600
    claims["iat"] = claims["exp"] - lifetime_s
    claims.pop("nbf", None)
    payload = _b64url_encode(json.dumps(claims, separators=(",", ":")).encode())
    return f"{token.segments[0]}.{payload}.{token.segments[2]}"


def access_token(answer: Answer) -> str | None:
    """The ``access_token`` of a 2xx login answer (OAuth 2.0 token response shape, RFC 6749 §5.1), or None."""
    if not 200 <= answer.status < 300:
        return None
    try:
        document = json.loads(answer.body)
    except (ValueError, UnicodeDecodeError):
        return None
    token = document.get("access_token") if isinstance(document, dict) else None
    return token if isinstance(token, str) and token else None


# --------------------------------------------------------------------------- security.auth.token_lifetime


def judge_lifetime(token: Jwt, *, max_lifetime_s: int, now: float, fresh: bool) -> Verdict:
    """``exp - iat`` at most the policy; no ``exp`` means it never expires; impossible claims are malformed.

    ``fresh``: the token was issued by the login a moment ago, so without ``iat`` what is left
    of it (``exp - now``) is its lifetime; a configured token may be any age, so it is not.
    """
    exp, iat = _number(token.claims.get("exp")), _number(token.claims.get("iat"))
    if exp is None:
        return Verdict("fail", "the token has no exp claim: it never expires")
    in_ms = [name for name, value in (("iat", iat), ("exp", exp)) if value is not None and value >= MILLISECONDS_FROM]
    if in_ms:
        return Verdict("fail", f"malformed claims: {' and '.join(in_ms)} look like milliseconds, not seconds (RFC 7519 NumericDate)")
    if iat is None:
        if not fresh:
            return Verdict(
                "warn", "no iat: lifetime unknown (the configured token may be of any age; configure auth.login to judge a fresh one)"
            )
        left = exp - now
        if left <= 0:
            return Verdict("fail", f"malformed claims: the token fresh from login expired {-left:.0f} s ago")
        if left > max_lifetime_s:
            return Verdict("fail", f"no iat, but the token fresh from login is valid for {left:.0f} s, over {max_lifetime_s} s")
        return Verdict("ok", f"no iat claim; the token fresh from login expires in {left:.0f} s (<= {max_lifetime_s} s)")
    if iat > now + MAX_FUTURE_IAT_S:
        return Verdict("fail", f"malformed claims: iat is {iat - now:.0f} s in the future")
    lifetime = exp - iat
    if lifetime <= 0:
        return Verdict("fail", f"malformed claims: exp - iat is {lifetime:.0f} s (exp not after iat)")
    if lifetime > max_lifetime_s:
        return Verdict("fail", f"the token lives {lifetime:.0f} s (exp - iat), over {max_lifetime_s} s")
    return Verdict("ok", f"the token lives {lifetime:.0f} s (exp - iat)")


def expired_token_problem(token: str, *, now: float) -> str | None:
    """Why the target's ``expired_token_env`` token cannot serve as an expired token, or None."""
    decoded = decode_jwt(token)
    if decoded is None:
        return None  # opaque: trusted to be expired, as the target says (the evidence says so)
    exp = _number(decoded.claims.get("exp"))
    if exp is None:
        return "the token in auth.expired_token_env has no exp claim: it is not an expired token"
    if exp > now:
        return f"the token in auth.expired_token_env has not expired yet (exp is {exp - now:.0f} s ahead)"
    return None


def judge_expiry(
    expired: Answer | None, *, source: TokenSource, unauthenticated: Answer | None = None, problem: str | None = None
) -> Verdict:
    """The expired token refused with 401 invalid_token; only a really expired token can prove it.

    ``problem``: the target's expired token is not expired (nothing was sent): could not judge.
    ``unauthenticated``: the same path asked without any token, sent only when the expired
    token was accepted; accepted too means no authentication at all, security.auth.required's
    failure, which here is a warning, not a second failure.
    """
    if problem is not None or expired is None:
        return Verdict("error", problem or "no expired token was sent: cannot judge expiry")
    verdict = refusal(expired, "expired")
    if source == "forged":
        if verdict.level == "fail":
            return Verdict(
                "warn",
                f"{expired.path} accepts a tampered, expired copy of the gate's token (HTTP {expired.status}): signatures are not "
                f"verified (security.auth.required's failure), so expiry cannot be judged; {EXPIRY_NOT_PROVEN}",
            )
        if verdict.level == "error":
            return verdict
        # Refused, but for its signature as much as for its expiry.
        return Verdict("warn", EXPIRY_NOT_PROVEN)
    if verdict.level == "fail" and unauthenticated is not None and 200 <= unauthenticated.status < 400:
        return Verdict(
            "warn",
            f"{expired.path} accepts the expired token, but also a request without any token (HTTP {unauthenticated.status}): "
            "no authentication at all, see security.auth.required",
        )
    if verdict.level == "fail":
        return Verdict("fail", f"{verdict.text}: expiry is not enforced")
    return verdict


def judge_token_lifetime(
    token: Jwt,
    expired: Answer | None,
    *,
    max_lifetime_s: int,
    now: float,
    source: TokenSource,
    lifetime_source: LifetimeSource = "target",
    unauthenticated: Answer | None = None,
    expired_problem: str | None = None,
    expired_claims: Jwt | None = None,
) -> Finding:
    """Lifetime within policy, and a really expired token refused with 401 invalid_token; the worst verdict decides."""
    expected = {
        "exp - iat": f"<= {max_lifetime_s} s",
        "expired token": '401 with WWW-Authenticate error="invalid_token" (a really expired token: auth.expired_token_env)',
    }
    lifetime = judge_lifetime(token, max_lifetime_s=max_lifetime_s, now=now, fresh=lifetime_source == "login")
    expiry = judge_expiry(expired, source=source, unauthenticated=unauthenticated, problem=expired_problem)
    exp, iat = _number(token.claims.get("exp")), _number(token.claims.get("iat"))
    observed = {
        "exp - iat": None if exp is None or iat is None else exp - iat,
        "expired token": None if expired is None else expired.status,
        "expired token source": source,
    }
    how = (
        "the target's auth.expired_token_env"
        if source == "target"
        else "tampered copy of the judged token with exp set in the past and its original signature "
        "(refused for the signature or the expiry: proves no expiry check)"
    )
    evidence: dict[str, Any] = {
        "token_judged": "fresh from the target's auth.login" if lifetime_source == "login" else "the target's auth.token_env",
        "jwt_header": {k: v for k, v in token.header.items() if k in ("alg", "typ", "kid")},
        "claims": sorted(token.claims),
        "iat": iat,
        "exp": exp,
        "checked_at": int(now),
        "expired_token": how,
        "answers": [] if expired is None else [_auth_evidence(expired, "expired token")],
    }
    if source == "target":
        given_exp = None if expired_claims is None else _number(expired_claims.claims.get("exp"))
        evidence["expired_token_exp"] = given_exp if expired_claims is not None else "opaque token: trusted to be expired"
    if unauthenticated is not None:
        evidence["answers"].append(_auth_evidence(unauthenticated, "no token"))
    return _conclude([lifetime, expiry], observed, expected, evidence, passed=f"{lifetime.text}; the expired token gets 401 invalid_token")


# --------------------------------------------------------------------------- helpers


def _conclude(verdicts: Sequence[Verdict], observed: Any, expected: Any, evidence: dict[str, Any], *, passed: str) -> Finding:
    """One finding from many verdicts: the worst level decides, and every non-ok verdict is listed."""
    worst: Level = max((v.level for v in verdicts), key=_RANK.__getitem__, default="ok")
    shown = [v.text for v in verdicts if v.level != "ok"]
    evidence["verdicts"] = [{"level": v.level, "text": v.text} for v in verdicts]
    outcome = _OUTCOME[worst]
    if worst == "fail":
        # Lead with the failures; the rest follows for context.
        shown = [v.text for v in verdicts if v.level == "fail"] + [v.text for v in verdicts if v.level not in ("ok", "fail")]
    return Finding(outcome, passed if worst == "ok" else "; ".join(shown), observed, expected, evidence)


def _auth_evidence(answer: Answer, label: str) -> dict[str, Any]:
    """Status and challenge; a body excerpt only when the request got through (what leaked)."""
    record: dict[str, Any] = {
        "request": label,
        "url": answer.url,
        "status": answer.status,
        "www_authenticate": [c[:300] for c in answer.all("www-authenticate")],
    }
    if 200 <= answer.status < 300 and label != "valid token":
        record["body_excerpt"] = answer.body[:EXCERPT_CHARS].decode("utf-8", errors="replace")
    return record


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value  # an int stays an int, so evidence shows 900, not 900.0


def _b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
