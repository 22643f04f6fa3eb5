"""Auth family: protected endpoints refuse bad credentials; tokens are short-lived and expire.

``security.auth.required`` sends, to every protected path, one request without credentials and
one with a garbage bearer token; both must get 401 (RFC 6750 §3.1), the invalid one with
``error="invalid_token"``. One request with the gate's own token shows that the endpoint is not
simply refusing everyone: without it "always 401" and "auth works" look the same.

``security.auth.token_lifetime`` reads the gate's token as a JWT *without verifying it* (the
gate has no key, and needs none to read ``iat``/``exp``), judges ``exp - iat`` against the
policy, then presents an expired token: the target's ``expired_token_env`` if it names one,
otherwise a copy of the valid token with ``exp`` in the past and the original signature. A
correct server refuses the copy either way (its signature no longer matches, or it expired);
the evidence says which token was used. Should the server accept the expired token, one
request without any token tells a missing expiry check from no authentication at all (the
latter is security.auth.required's failure, so here it only warns).

Outcome choices:
- 403 where 401 is due: the request is refused, but RFC 6750 §3.1 reserves 403 for
  insufficient scope, and clients cannot tell "log in again" from "forbidden": warned.
- 401 without a ``WWW-Authenticate`` challenge (RFC 9110 §15.5.2 requires one), or without
  ``error="invalid_token"`` for a bad token: warned.
- 2xx or 3xx without valid credentials: failed. 404/405/429/5xx: could not judge (error).

Tokens, forged or not, never reach the evidence: only statuses, challenges and claim names and times.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from releasegate.probes.credentials import GARBAGE_TOKEN
from releasegate.probes.headers import Answer
from releasegate.results import Finding

# Sent as the invalid bearer token: not a JWT, not anybody's secret, recognisable in server logs.
EXCERPT_CHARS = 200
TokenSource = Literal["target", "forged"]
Level = Literal["ok", "warn", "fail", "error"]
_RANK: dict[Level, int] = {"ok": 0, "warn": 1, "error": 2, "fail": 3}  # a proven failure outranks "could not judge"
_OUTCOME: dict[Level, Literal["passed", "warned", "failed", "error"]] = {
    "ok": "passed",
    "warn": "warned",
    "fail": "failed",
    "error": "error",
}
_INVALID_TOKEN = re.compile(r'\berror\s*=\s*"?invalid_token"?', re.IGNORECASE)


# --------------------------------------------------------------------------- security.auth.required


@dataclass(frozen=True)
class Verdict:
    level: Level
    text: str


def refusal(answer: Answer, kind: Literal["missing", "invalid", "expired"]) -> Verdict:
    """How well one answer to a request with missing, invalid or expired credentials refuses it."""
    status = answer.status
    challenges = answer.all("www-authenticate")
    what = {"missing": "without a token", "invalid": "with an invalid token", "expired": "with an expired token"}[kind]
    if 200 <= status < 400:
        return Verdict("fail", f"{answer.path} {what}: HTTP {status}, not refused")
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


def judge_required(missing: Sequence[Answer], invalid: Sequence[Answer], valid: Answer | None) -> Finding:
    """Every protected path refuses missing and invalid tokens with 401; the valid token gets through."""
    expected = {
        "without a token": 401,
        "with an invalid token": '401, WWW-Authenticate error="invalid_token"',
        "with the gate's token": "accepted",
    }
    verdicts = [refusal(a, "missing") for a in missing] + [refusal(a, "invalid") for a in invalid]
    if valid is not None:
        verdicts.append(acceptance(valid))
    observed: dict[str, Any] = {}
    for answer, kind in [*((a, "no token") for a in missing), *((a, "invalid token") for a in invalid)]:
        observed.setdefault(answer.path, {})[kind] = answer.status
    if valid is not None:
        observed.setdefault(valid.path, {})["valid token"] = valid.status
    evidence: dict[str, Any] = {
        "answers": [_auth_evidence(a, label) for a, label in _labelled(missing, invalid, valid)],
        "invalid_token_sent": GARBAGE_TOKEN,
    }
    if valid is None:
        evidence["note"] = "no auth.token_env: the valid token was not tried, so a path refusing everyone would pass"
    return _conclude(
        verdicts, observed, expected, evidence, passed=f"{len(missing)} protected paths refuse missing and invalid tokens with 401"
    )


# --------------------------------------------------------------------------- security.auth.token_lifetime


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


def forge_expired(token: Jwt, *, now: float, lifetime_s: int = 3600) -> str:
    """The same token with ``exp`` an hour in the past (and ``iat`` before it), keeping the original signature."""
    claims = dict(token.claims)
    claims["exp"] = int(now) - 3600
    claims["iat"] = claims["exp"] - lifetime_s
    claims.pop("nbf", None)
    payload = _b64url_encode(json.dumps(claims, separators=(",", ":")).encode())
    return f"{token.segments[0]}.{payload}.{token.segments[2]}"


def judge_lifetime(token: Jwt, *, max_lifetime_s: int, now: float) -> Verdict:
    """``exp - iat`` of a freshly issued token at most the policy; no ``exp`` means it never expires."""
    exp, iat = _number(token.claims.get("exp")), _number(token.claims.get("iat"))
    if exp is None:
        return Verdict("fail", "the token has no exp claim: it never expires")
    if iat is None:
        # Without iat the lifetime is unknown; what is left of it is a lower bound.
        left = exp - now
        if left > max_lifetime_s:
            return Verdict("fail", f"no iat, but the token is still valid for {left:.0f} s, over {max_lifetime_s} s")
        return Verdict("ok", f"no iat claim; the token expires in {left:.0f} s (<= {max_lifetime_s} s)")
    lifetime = exp - iat
    if lifetime > max_lifetime_s:
        return Verdict("fail", f"the token lives {lifetime:.0f} s (exp - iat), over {max_lifetime_s} s")
    return Verdict("ok", f"the token lives {lifetime:.0f} s (exp - iat)")


def expired_token_problem(token: str, *, now: float) -> str | None:
    """Why the target's ``expired_token_env`` token cannot serve as an expired token, or None."""
    decoded = decode_jwt(token)
    if decoded is None:
        return None  # opaque: trusted to be expired, as the target says
    exp = _number(decoded.claims.get("exp"))
    if exp is None:
        return "the token in auth.expired_token_env has no exp claim: it is not an expired token"
    if exp > now:
        return f"the token in auth.expired_token_env has not expired yet (exp is {exp - now:.0f} s ahead)"
    return None


def judge_token_lifetime(
    token: Jwt,
    expired: Answer,
    *,
    max_lifetime_s: int,
    now: float,
    source: TokenSource,
    unauthenticated: Answer | None = None,
) -> Finding:
    """Lifetime within policy, and the expired token refused with 401 invalid_token.

    ``unauthenticated`` is the same path asked without any token, sent only when the expired
    token was accepted: if that is accepted too, the endpoint has no authentication at all,
    which security.auth.required fails on; here it is a warning, not a second failure.
    """
    expected = {"exp - iat": f"<= {max_lifetime_s} s", "expired token": '401 with WWW-Authenticate error="invalid_token"'}
    lifetime = judge_lifetime(token, max_lifetime_s=max_lifetime_s, now=now)
    expiry = refusal(expired, "expired")
    if expiry.level == "fail" and unauthenticated is not None and 200 <= unauthenticated.status < 400:
        expiry = Verdict(
            "warn",
            f"{expired.path} accepts the expired token, but also a request without any token (HTTP {unauthenticated.status}): "
            "no authentication at all, see security.auth.required",
        )
    exp, iat = _number(token.claims.get("exp")), _number(token.claims.get("iat"))
    observed = {
        "exp - iat": None if exp is None or iat is None else exp - iat,
        "expired token": expired.status,
        "expired token source": source,
    }
    how = (
        "the target's auth.expired_token_env"
        if source == "target"
        else "the valid token with exp set in the past and its original signature (refused for the signature or the expiry)"
    )
    evidence: dict[str, Any] = {
        "jwt_header": {k: v for k, v in token.header.items() if k in ("alg", "typ", "kid")},
        "claims": sorted(token.claims),
        "iat": iat,
        "exp": exp,
        "checked_at": int(now),
        "expired_token": how,
        "answers": [_auth_evidence(expired, "expired token")],
    }
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


def _labelled(missing: Sequence[Answer], invalid: Sequence[Answer], valid: Answer | None) -> list[tuple[Answer, str]]:
    pairs = [(a, "no token") for a in missing] + [(a, "invalid token") for a in invalid]
    return pairs + ([(valid, "valid token")] if valid is not None else [])


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
