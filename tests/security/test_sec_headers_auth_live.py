"""Live proofs of the headers and auth families against the reference deployment.

Healthy, all five checks pass; under each proving fault (and short-hsts) the proven check fails
and the other four do not fail: a fault that trips a sibling check means that check is imprecise.
Under auth-bypass the expired-token half of security.auth.token_lifetime cannot be blamed on
expiry (nothing is authenticated at all), so it warns instead of failing twice.

The auth checks are also proven against verifiers the fault catalogue lacks: the service is
started directly (server.start) with ``Authenticator.verify`` replaced by one that skips the
signature or the expiry, and with an expired token minted from the service's own secret.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import jwt
import pytest

from releasegate.cli import main
from releasegate.probes.auth import EXPIRY_NOT_PROVEN
from releasegate.reference import server
from releasegate.reference.auth import ISSUER, Authenticator, Principal, TokenError
from releasegate.reference.demo import PASSWORD_ENV, TOKEN_ENV, login, running
from releasegate.reference.settings import ServiceSettings

IDS = ["security.hsts", "security.headers", "security.cookies", "security.auth.required", "security.auth.token_lifetime"]
GATES = "probe: {timeout_s: 5, retry: {timeout_s: 0}}\n"

# fault -> {check id: outcome}; checks not named must pass
PROOFS: dict[str | None, dict[str, str]] = {
    None: {},
    "no-hsts": {"security.hsts": "failed"},
    "short-hsts": {"security.hsts": "failed"},
    "no-security-headers": {"security.headers": "failed"},
    "insecure-cookie": {"security.cookies": "failed"},
    "auth-bypass": {"security.auth.required": "failed", "security.auth.token_lifetime": "warned"},
    "long-token-ttl": {"security.auth.token_lifetime": "failed"},
}


def run_gate(tmp_path: Path, target: Path, ids: list[str], hidden: list[str]) -> tuple[dict[str, Any], list[str]]:
    """`releasegate run` over ``ids``; the verdict and the report files holding any of ``hidden``.

    "eyJ" (base64url of '{"', how every JWT starts) stands for the tokens the gate gets from the
    login itself, which no environment variable names.
    """
    gates = tmp_path / "gates.yaml"
    gates.write_text(GATES, encoding="utf-8")
    reports = tmp_path / "reports"
    code = main(
        ["run", "--stage", "pre-deploy", "--target", str(target), "--gates", str(gates), "--only", *ids, "--report-dir", str(reports)]
    )
    verdict: dict[str, Any] = json.loads((reports / "verdict.json").read_text(encoding="utf-8"))
    assert verdict["exit_code"] == code
    needles = [*hidden, "eyJ"]
    leaked = [str(f) for f in reports.rglob("*") if f.is_file() and any(s in f.read_text(errors="replace") for s in needles)]
    return verdict, leaked


def gate(tmp_path: Path, faults: list[str]) -> tuple[dict[str, Any], list[str]]:
    with running(faults) as deployment:
        target = deployment.target_path.read_text(encoding="utf-8")
        # The demo names a really expired token, so token_lifetime can pass (a forged one only warns).
        assert "expired_token_env" in target
        hidden = [os.environ[TOKEN_ENV], os.environ[PASSWORD_ENV], *(v for k, v in os.environ.items() if k.startswith("RELEASEGATE_DEMO_"))]
        return run_gate(tmp_path, deployment.target_path, IDS, hidden)


@pytest.mark.parametrize("fault", list(PROOFS), ids=lambda f: f or "healthy")
def test_each_fault_fails_its_check_and_no_sibling(fault: str | None, tmp_path: Path) -> None:
    verdict, leaked = gate(tmp_path, [fault] if fault else [])
    outcomes = {c["id"]: c["outcome"] for c in verdict["checks"]}
    expected = {check_id: PROOFS[fault].get(check_id, "passed") for check_id in IDS}
    assert outcomes == expected, [(c["id"], c["summary"]) for c in verdict["checks"] if c["outcome"] != expected[c["id"]]]
    assert leaked == []
    for check in verdict["checks"]:
        assert check["observed"] is not None and check["expected"] is not None, check["id"]


# --- auth verifiers the fault catalogue lacks ---------------------------------------------------------

AUTH_IDS = ["security.auth.required", "security.auth.token_lifetime"]
Verify = Callable[[Authenticator, str], Principal]
ExpiredToken = Literal["real", "unexpired", "none"]


def without_signature(secret: str) -> Verify:
    """Reads the claims without checking the signature (and so trusts alg none too); expiry still checked."""

    def verify(self: Authenticator, token: str) -> Principal:
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError as exc:
            raise TokenError("the token is malformed") from exc
        if not isinstance(claims.get("exp"), int) or claims["exp"] <= time.time():
            raise TokenError("the token has expired")
        return Principal(str(claims.get("sub")))

    return verify


def without_expiry(secret: str) -> Verify:
    """Checks the signature with the service's secret, but never exp."""

    def verify(self: Authenticator, token: str) -> Principal:
        try:
            claims = jwt.decode(token, secret, algorithms=["HS256"], issuer=ISSUER, options={"verify_exp": False, "verify_iat": False})
        except jwt.InvalidTokenError as exc:
            raise TokenError("the token is malformed or its signature does not verify") from exc
        return Principal(str(claims["sub"]))

    return verify


def auth_gate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, verify: Callable[[str], Verify] | None, expired: ExpiredToken
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The reference service, maybe with its verifier replaced; the auth checks' results by id."""
    settings = ServiceSettings(data_dir=tmp_path / "service")
    (username, password) = settings.users[0]
    with server.start(settings) as service:
        token = login(service.base_url, service.ca_path, username, password)
        now = int(time.time())
        exp = {"real": now - 3600, "unexpired": now + 600, "none": 0}[expired]
        claims = {"iss": ISSUER, "sub": username, "iat": exp - 900, "exp": exp, "jti": secrets.token_hex(8)}
        expired_token = jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
        envs = {"AUTH_LIVE_TOKEN": token, "AUTH_LIVE_USER": username, "AUTH_LIVE_PASSWORD": password, "AUTH_LIVE_EXPIRED": expired_token}
        for name, value in envs.items():
            monkeypatch.setenv(name, value)
        expired_line = "  expired_token_env: AUTH_LIVE_EXPIRED\n" if expired != "none" else ""
        target = tmp_path / "target.yaml"
        target.write_text(
            f"name: auth-live\nbase_url: {service.base_url}\ntls: {{ca_bundle: {service.ca_path}}}\n"
            f"auth:\n  token_env: AUTH_LIVE_TOKEN\n{expired_line}"
            "  login: {path: /api/v1/auth/login, username_env: AUTH_LIVE_USER, password_env: AUTH_LIVE_PASSWORD}\n"
            "  protected: [/api/v1/me, /api/v1/conversations]\n",
            encoding="utf-8",
        )
        if verify is not None:
            # The service runs in a thread of this process: the class attribute is what it calls.
            monkeypatch.setattr(Authenticator, "verify", verify(settings.jwt_secret))
        verdict, leaked = run_gate(tmp_path, target, AUTH_IDS, [token, password, expired_token])
    return {c["id"]: c for c in verdict["checks"]}, leaked


@pytest.mark.parametrize(
    ("verify", "expired", "outcomes", "summary"),
    [
        (None, "real", {"security.auth.required": "passed", "security.auth.token_lifetime": "passed"}, "the expired token gets 401"),
        # No really expired token: the refused forgery proves only that signatures are checked
        (None, "none", {"security.auth.required": "passed", "security.auth.token_lifetime": "warned"}, EXPIRY_NOT_PROVEN),
        # A token that has not expired cannot prove anything about expiry
        (None, "unexpired", {"security.auth.required": "passed", "security.auth.token_lifetime": "error"}, "has not expired yet"),
        (
            without_signature,
            "real",
            {"security.auth.required": "failed", "security.auth.token_lifetime": "passed"},
            "with a tampered copy of the gate's token: HTTP 200, accepted: signatures are not verified",
        ),
        (
            without_expiry,
            "real",
            {"security.auth.required": "passed", "security.auth.token_lifetime": "failed"},
            "/api/v1/me with an expired token: HTTP 200, not refused: expiry is not enforced",
        ),
        # The same hole, hidden without a really expired token: a warning, never a pass
        (without_expiry, "none", {"security.auth.required": "passed", "security.auth.token_lifetime": "warned"}, EXPIRY_NOT_PROVEN),
    ],
    ids=["healthy", "healthy-no-expired-token", "unexpired-token", "no-signature-check", "no-expiry-check", "no-expiry-check-hidden"],
)
def test_auth_checks_against_flawed_verifiers(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    verify: Callable[[str], Verify] | None,
    expired: ExpiredToken,
    outcomes: dict[str, str],
    summary: str,
) -> None:
    checks, leaked = auth_gate(tmp_path, monkeypatch, verify=verify, expired=expired)
    assert {i: c["outcome"] for i, c in checks.items()} == outcomes, [(i, c["summary"]) for i, c in checks.items()]
    assert any(summary in c["summary"] for c in checks.values()), [c["summary"] for c in checks.values()]
    assert leaked == []
