"""The one list of check ids.

A check id is an API: dashboards, waivers and gates.yaml overrides refer to it, so an id is
never renamed silently. Within a stage, checks run in the order listed here. Each entry names
the stage it runs in, its family (one probe module per family), its default severity, and the
fault of the reference deployment that proves it (the check must pass on the healthy
deployment and fail on that fault).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from releasegate.results import Severity, Stage


@dataclass(frozen=True)
class CheckSpec:
    id: str
    stage: Stage
    family: str
    severity: Severity
    description: str
    # The reference-deployment fault that breaks this check; None means "not proven yet".
    fault: str | None


CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec(
        id="security.transport.https",
        stage="pre-deploy",
        family="transport",
        severity="blocking",
        description="The plain-HTTP endpoint refuses or redirects (301/308, same host) to HTTPS; no API content over http.",
        fault="http-no-redirect",
    ),
    CheckSpec(
        id="security.tls.protocols",
        stage="pre-deploy",
        family="tls",
        severity="blocking",
        description="SSLv2/3, TLS 1.0 and 1.1 refused, TLS 1.2 offered; TLS 1.3 missing is a warning.",
        fault="tls-legacy",
    ),
    CheckSpec(
        id="security.tls.ciphers",
        stage="pre-deploy",
        family="tls",
        severity="blocking",
        description="Accepted suites, curves and DH sizes match Mozilla intermediate (or a custom profile); no known TLS weakness.",
        fault="tls-weak-ciphers",
    ),
    CheckSpec(
        id="security.tls.certificate",
        stage="pre-deploy",
        family="tls",
        severity="blocking",
        description="Chain valid against the system store plus tls.ca_bundle, hostname matches, not expired, enough days left.",
        fault="cert-expired",
    ),
    CheckSpec(
        id="security.hsts",
        stage="pre-deploy",
        family="headers",
        severity="blocking",
        description="Strict-Transport-Security on HTTPS answers with max-age at least the policy; no includeSubDomains warns.",
        fault="no-hsts",
    ),
    CheckSpec(
        id="security.headers",
        stage="pre-deploy",
        family="headers",
        severity="warning",
        description="nosniff, frame protection, Referrer-Policy, no-store on the API, no version banner, "
        "no wildcard CORS with credentials.",
        fault="no-security-headers",
    ),
    CheckSpec(
        id="security.cookies",
        stage="pre-deploy",
        family="headers",
        severity="blocking",
        description="Every Set-Cookie of the login flow is Secure, HttpOnly and SameSite.",
        fault="insecure-cookie",
    ),
    CheckSpec(
        id="security.auth.required",
        stage="pre-deploy",
        family="auth",
        severity="blocking",
        description="Protected endpoints refuse missing, invalid and forged (re-signed, alg none) tokens with 401.",
        fault="auth-bypass",
    ),
    CheckSpec(
        id="security.auth.token_lifetime",
        stage="pre-deploy",
        family="auth",
        severity="blocking",
        description="A fresh token lives at most the policy's lifetime; an expired token gets 401 invalid_token.",
        fault="long-token-ttl",
    ),
    CheckSpec(
        id="security.websocket.auth",
        stage="pre-deploy",
        family="websocket",
        severity="blocking",
        description="The WebSocket upgrade is refused without credentials and with an invalid token, accepted with the valid one.",
        fault="ws-no-auth",
    ),
    CheckSpec(
        id="security.websocket.origin",
        stage="pre-deploy",
        family="websocket",
        severity="blocking",
        description="The WebSocket upgrade is refused from a foreign Origin.",
        fault="ws-any-origin",
    ),
    CheckSpec(
        id="security.websocket.tls",
        stage="pre-deploy",
        family="websocket",
        severity="blocking",
        description="A plaintext ws:// upgrade never gets 101.",
        fault="ws-plaintext",
    ),
    CheckSpec(
        id="security.websocket.message_size",
        stage="pre-deploy",
        family="websocket",
        severity="blocking",
        description="A message one byte over the limit closes the connection with 1009.",
        fault="ws-no-size-limit",
    ),
    CheckSpec(
        id="security.websocket.connection_limit",
        stage="pre-deploy",
        family="websocket",
        severity="warning",
        description="The per-user WebSocket connection cap is enforced.",
        fault="ws-no-connection-limit",
    ),
    CheckSpec(
        id="security.request_size",
        stage="pre-deploy",
        family="limits",
        severity="blocking",
        description="A body of max+1 bytes (streamed) gets 413; an oversized header gets 431.",
        fault="no-body-limit",
    ),
    CheckSpec(
        id="security.rate_limit.ip",
        stage="pre-deploy",
        family="rate_limit",
        severity="blocking",
        description="A bounded burst from one client address gets 429 with Retry-After and RateLimit headers.",
        fault="no-rate-limit",
    ),
    CheckSpec(
        id="security.rate_limit.user",
        stage="pre-deploy",
        family="rate_limit",
        severity="blocking",
        description="A per-user limit holds: one identity gets 429 while a second identity from the same address still answers.",
        fault="no-user-rate-limit",
    ),
    CheckSpec(
        id="security.rate_limit.endpoint",
        stage="pre-deploy",
        family="rate_limit",
        severity="blocking",
        description="A per-endpoint limit holds: a burst on one endpoint gets 429 while another endpoint still answers.",
        fault="no-endpoint-rate-limit",
    ),
    CheckSpec(
        id="health.liveness",
        stage="post-deploy",
        family="health",
        severity="blocking",
        description="The liveness endpoint answers 2xx and its body, if any, does not say fail.",
        fault="liveness-fail",
    ),
    CheckSpec(
        id="health.readiness",
        stage="post-deploy",
        family="health",
        severity="blocking",
        description="The readiness endpoint answers 2xx (after the convergence window) and does not say fail.",
        fault="db-down",
    ),
    CheckSpec(
        id="health.deep",
        stage="post-deploy",
        family="health",
        severity="blocking",
        description="The deep health document (health+json, Spring actuator) has no failed component; a warn component is a warning.",
        fault="db-down",
    ),
    CheckSpec(
        id="health.release_id",
        stage="post-deploy",
        family="health",
        severity="blocking",
        description="The deployed version or releaseId equals the expected release.",
        fault="wrong-release",
    ),
)

_BY_ID: dict[str, CheckSpec] = {spec.id: spec for spec in CHECKS}
assert len(_BY_ID) == len(CHECKS), "duplicate check id in the registry"


def get(check_id: str) -> CheckSpec:
    """The spec of a registered id; KeyError for anything else."""
    return _BY_ID[check_id]


def is_registered(check_id: str) -> bool:
    return check_id in _BY_ID


def matches(pattern: str, check_id: str) -> bool:
    """Whether an id pattern from gates.yaml or ``--only`` selects ``check_id``.

    A pattern is an exact id, a dotted prefix (``security`` selects ``security.tls.protocols``
    but ``health.live`` does not select ``health.liveness``) or a glob (``security.tls.*``).
    """
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatchcase(check_id, pattern)
    return check_id == pattern or check_id.startswith(pattern.rstrip(".") + ".")


def select(pattern: str) -> list[CheckSpec]:
    """Every registered check a pattern selects (empty when it selects nothing)."""
    return [spec for spec in CHECKS if matches(pattern, spec.id)]


def ids() -> list[str]:
    return [spec.id for spec in CHECKS]
