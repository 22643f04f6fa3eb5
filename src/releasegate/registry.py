"""The one list of check ids.

A check id is an API: dashboards, waivers and gates.yaml overrides refer to it, so an id is
never renamed silently. Within a stage, checks run in the order listed here. Each entry names
the stage it runs in, its family (one probe module per family), its default severity, and the
fault of the reference deployment that proves it (the check must pass on the healthy
deployment and fail on that fault).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from releasegate.results import Severity, Stage


@dataclass(frozen=True)
class CheckSpec:
    id: str
    stage: Stage
    family: str
    severity: Severity
    description: str
    # The reference-deployment fault that breaks this check (the fault matrix shows it), or
    # "fixture:<name>" where the reference cannot carry the fault (a host's kernel settings, a
    # Prometheus scrape job): then tests/ has test_fixture_proof_<name>, which shows the check
    # passing on a healthy fixture and failing on the broken one. None means "not proven yet".
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
        id="infra.host.nofile",
        stage="pre-deploy",
        family="hosts",
        severity="blocking",
        description="The service process's soft open-file limit is at least the policy's (default 65536), on every host.",
        fault="fixture:low-nofile",
    ),
    CheckSpec(
        id="infra.host.sysctl",
        stage="pre-deploy",
        family="hosts",
        severity="blocking",
        description="Kernel settings (somaxconn, tcp_max_syn_backlog, ip_local_port_range, ...) meet the policy's "
        "conditions, on every host.",
        fault="fixture:sysctl-below-policy",
    ),
    CheckSpec(
        id="infra.host.disk",
        stage="pre-deploy",
        family="hosts",
        severity="blocking",
        description="The data and log mounts are below the policy's usage limit, on every host.",
        fault="fixture:disk-over-limit",
    ),
    CheckSpec(
        id="infra.host.services",
        stage="pre-deploy",
        family="hosts",
        severity="blocking",
        description="The named services are running (and enabled where a service manager exists), on every host.",
        fault="fixture:service-stopped",
    ),
    CheckSpec(
        id="infra.host.ports",
        stage="pre-deploy",
        family="hosts",
        severity="blocking",
        description="Expected ports listen; database and cache ports are bound to loopback or private addresses only; "
        "nothing unexpected listens publicly.",
        fault="fixture:db-port-public",
    ),
    CheckSpec(
        id="infra.host.cert_files",
        stage="pre-deploy",
        family="hosts",
        severity="blocking",
        description="Certificate files are present and valid for at least N days; private keys are no wider than mode 0640.",
        fault="fixture:key-world-readable",
    ),
    CheckSpec(
        id="infra.host.time_sync",
        stage="pre-deploy",
        family="hosts",
        severity="warning",
        description="The host clock is synchronised (where the host can tell).",
        fault="fixture:clock-unsynced",
    ),
    CheckSpec(
        id="infra.backup.freshness",
        stage="pre-deploy",
        family="backup",
        severity="blocking",
        description="The newest backup of every source is younger than the recovery point objective.",
        fault="backup-stale",
    ),
    CheckSpec(
        id="infra.backup.integrity",
        stage="pre-deploy",
        family="backup",
        severity="blocking",
        description="The newest backup is intact: PRAGMA integrity_check (SQLite), pg_restore --list and a full read of "
        "the data (PostgreSQL custom dumps).",
        fault="backup-corrupt",
    ),
    CheckSpec(
        id="infra.backup.restore_drill",
        stage="pre-deploy",
        family="backup",
        severity="blocking",
        description="The newest backup restores into a scratch database and answers the sanity queries within the recovery time objective.",
        fault="backup-empty",
    ),
    CheckSpec(
        id="infra.monitoring.targets",
        stage="pre-deploy",
        family="monitoring",
        severity="blocking",
        description="Every expected Prometheus scrape job has targets and all are up.",
        fault="fixture:scrape-target-down",
    ),
    CheckSpec(
        id="infra.monitoring.alert_rules",
        stage="pre-deploy",
        family="monitoring",
        severity="blocking",
        description="The alerting rules named in gates.yaml are loaded in Prometheus.",
        fault="fixture:alert-rule-missing",
    ),
    CheckSpec(
        id="readiness.migrations",
        stage="pre-deploy",
        family="readiness",
        severity="blocking",
        description="The app's schema version equals the database's (and the expected one); no pending migrations.",
        fault="schema-mismatch",
    ),
    CheckSpec(
        id="readiness.client_compat",
        stage="pre-deploy",
        family="readiness",
        severity="blocking",
        description="The oldest client version still in use is inside the server's supported client range (/version).",
        fault="unsupported-client",
    ),
    CheckSpec(
        id="readiness.version",
        stage="pre-deploy",
        family="readiness",
        severity="blocking",
        description="The deployed build is the release being gated (/version releaseId or version).",
        fault="wrong-release",
    ),
    CheckSpec(
        id="readiness.rollback",
        stage="pre-deploy",
        family="readiness",
        severity="blocking",
        description="The previous release can be restored: the rollback dry run exits 0 in time and/or the previous artifact answers.",
        fault="no-previous-artifact",
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
    CheckSpec(
        id="business.scenario.conversation",
        stage="post-deploy",
        family="scenario",
        severity="blocking",
        description="Shipped scenario: start a conversation, post a message, the assistant's reply arrives over WebSocket.",
        fault="bad-model",
    ),
    CheckSpec(
        id="business.scenario.tool_run",
        stage="post-deploy",
        family="scenario",
        severity="blocking",
        description="Shipped scenario: run a tool in a conversation; its result arrives over WebSocket.",
        fault="worker-stuck",
    ),
    CheckSpec(
        id="business.scenario.collaboration",
        stage="post-deploy",
        family="scenario",
        severity="blocking",
        description="Shipped scenario: two users share a conversation; what one posts, the other receives.",
        fault="sync-drop",
    ),
    CheckSpec(
        id="business.collaboration",
        stage="post-deploy",
        family="sync",
        severity="blocking",
        description="N clients in one conversation: every message, typing, presence and edit of one reaches all others, "
        "in order, exactly once.",
        fault="sync-drop",
    ),
    CheckSpec(
        id="business.sync_latency",
        stage="post-deploy",
        family="sync",
        severity="blocking",
        description="Edit by client A -> event at client B, K open-loop round trips: p50/p95/p99/max within the policy; "
        "a lost event counts as infinitely late.",
        fault="slow-sync",
    ),
    CheckSpec(
        id="business.data_consistency",
        stage="post-deploy",
        family="consistency",
        severity="blocking",
        description="A write through the API is visible on every read endpoint and replica the target lists within the convergence window.",
        fault="stale-read",
    ),
    CheckSpec(
        id="business.model_quality",
        stage="post-deploy",
        family="model_quality",
        severity="blocking",
        description="The golden prompts' pass rate reaches the policy and does not fall behind the baseline "
        "by more than the allowed points.",
        fault="bad-model",
    ),
    CheckSpec(
        id="business.integrations",
        stage="post-deploy",
        family="integrations",
        severity="blocking",
        description="Every external dependency the target lists (a deep-health component or a URL) answers and is not degraded.",
        fault="cache-degraded",
    ),
    CheckSpec(
        id="slo.error_rate",
        stage="post-deploy",
        family="slo",
        severity="blocking",
        description="Share of 5xx answers from paced active probes (and Prometheus, when named) within the policy, "
        "absolute or against the baseline.",
        fault="error-burst",
    ),
    CheckSpec(
        id="slo.latency",
        stage="post-deploy",
        family="slo",
        severity="blocking",
        description="Latency percentiles from raw probe samples (and Prometheus histogram p95, when named) within the policy, "
        "absolute or against the baseline.",
        fault="slow-api",
    ),
    CheckSpec(
        id="load.smoke",
        stage="load",
        family="load",
        severity="blocking",
        description="The smoke load profile holds: gates.yaml load thresholds (HTTP and sync p95, fail ratio, rps) met "
        "with at least min_requests; a saturated load generator is inconclusive.",
        fault="slow-api",
    ),
    CheckSpec(
        id="infra.capacity",
        stage="load",
        family="capacity",
        severity="warning",
        description="Resources measured under load (CPU, memory, bytes sent per conversation) fit the sizing rules; "
        "headroom and recommended replicas for the small-team and enterprise sizes.",
        fault="cpu-hog",
    ),
    CheckSpec(
        id="canary.judge",
        stage="canary",
        family="canary",
        severity="blocking",
        description="Baseline vs canary over up to max_intervals looks: each metric judged by the right test, a "
        "weighted score, corrected for repeated looks; rollback / promote / hold with the evidence.",
        fault="slow-api",
    ),
    CheckSpec(
        id="canary.metric.http_latency",
        stage="canary",
        family="canary_metric",
        severity="warning",
        description="HTTP latency of the same probe requests to both sides: Mann-Whitney U, Hodges-Lehmann ratio and its "
        "confidence interval (the judge decides; this check explains).",
        fault="slow-api",
    ),
    CheckSpec(
        id="canary.metric.http_errors",
        stage="canary",
        family="canary_metric",
        severity="warning",
        description="HTTP error rate (5xx and unanswered) of the same probe requests to both sides: Fisher's exact test "
        "(the judge decides; this check explains).",
        fault="error-burst",
    ),
    CheckSpec(
        id="canary.metric.sync_latency",
        stage="canary",
        family="canary_metric",
        severity="warning",
        description="WebSocket sync round trip on both sides: Mann-Whitney U, Hodges-Lehmann ratio and its confidence "
        "interval (the judge decides; this check explains).",
        fault="slow-sync",
    ),
)

# Id families whose members are named by the user: a scenario file ``scenarios/<name>.yaml`` is
# the check ``business.scenario.<name>``, a load profile ``loadtests/profiles/<name>.yaml`` the
# check ``load.<name>``. The shipped scenarios are registered above with their
# proving faults; a user's own scenario is registered by this template (its proof is the
# user's business: the reference deployment knows nothing of their API).
TEMPLATES: tuple[CheckSpec, ...] = (
    CheckSpec(
        id="canary.metric",
        stage="canary",
        family="canary_metric",
        severity="warning",
        description="A canary metric named in gates.yaml canary.metrics, compared between baseline and canary "
        "(the judge decides; this check explains).",
        fault=None,
    ),
    CheckSpec(
        id="load",
        stage="load",
        family="load",
        severity="blocking",
        description="A load profile from loadtests/profiles/<name>.yaml holds the gates.yaml load thresholds.",
        fault=None,
    ),
    CheckSpec(
        id="business.scenario",
        stage="post-deploy",
        family="scenario",
        severity="blocking",
        description="A critical workflow from scenarios/<name>.yaml: HTTP and WebSocket steps, each with its assertions and timeout.",
        fault=None,
    ),
)
SCENARIO_PREFIX = "business.scenario."
LOAD_PREFIX = "load."
CANARY_METRIC_PREFIX = "canary.metric."
# A scenario name: lower-case words joined by underscores (it becomes part of a check id).
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,62}")

_BY_ID: dict[str, CheckSpec] = {spec.id: spec for spec in CHECKS}
assert len(_BY_ID) == len(CHECKS), "duplicate check id in the registry"
assert all(spec.id.startswith(SCENARIO_PREFIX) == (spec.family == "scenario") for spec in CHECKS)
assert all(spec.id.startswith(LOAD_PREFIX) == (spec.family == "load") for spec in CHECKS)


def get(check_id: str) -> CheckSpec:
    """The spec of a registered id, or of a template instance; KeyError for anything else."""
    if check_id in _BY_ID:
        return _BY_ID[check_id]
    template = _template_of(check_id)
    if template is None:
        raise KeyError(check_id)
    return CheckSpec(check_id, template.stage, template.family, template.severity, template.description, None)


def is_registered(check_id: str) -> bool:
    return check_id in _BY_ID or _template_of(check_id) is not None


def scenario_id(name: str) -> str:
    """The check id of the scenario called ``name``."""
    return SCENARIO_PREFIX + name


def canary_metric_id(name: str) -> str:
    """The check id of the canary metric called ``name`` (gates.yaml canary.metrics)."""
    return CANARY_METRIC_PREFIX + name


def load_id(profile: str) -> str:
    """The check id of the load profile called ``profile``."""
    return LOAD_PREFIX + profile


def _template_of(check_id: str) -> CheckSpec | None:
    for template in TEMPLATES:
        prefix = template.id + "."
        if check_id.startswith(prefix) and NAME_PATTERN.fullmatch(check_id[len(prefix) :]):
            return template
    return None


def matches(pattern: str, check_id: str) -> bool:
    """Whether an id pattern from gates.yaml or ``--only`` selects ``check_id``.

    A pattern is an exact id, a dotted prefix (``security`` selects ``security.tls.protocols``
    but ``health.live`` does not select ``health.liveness``) or a glob (``security.tls.*``).
    """
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatchcase(check_id, pattern)
    return check_id == pattern or check_id.startswith(pattern.rstrip(".") + ".")


def select(pattern: str) -> list[CheckSpec]:
    """Every registered check a pattern selects (empty when it selects nothing).

    A pattern naming a template instance (``business.scenario.checkout``, a user's scenario)
    selects that instance, so gates.yaml may give a user's scenario its own severity or waiver.
    """
    selected = [spec for spec in CHECKS if matches(pattern, spec.id)]
    if not selected and _template_of(pattern) is not None:
        selected.append(get(pattern))
    if not selected and any(matches(pattern, template.id + ".x") for template in TEMPLATES):
        selected.extend(template for template in TEMPLATES if matches(pattern, template.id + ".x"))
    return selected


def run_position(check_id: str) -> float:
    """Where a check runs within its stage: its place in CHECKS; a template instance runs right
    after the registered members of its family (a user's scenarios after the shipped ones)."""
    for index, spec in enumerate(CHECKS):
        if spec.id == check_id:
            return float(index)
    family = get(check_id).family
    last = max((index for index, spec in enumerate(CHECKS) if spec.family == family), default=len(CHECKS))
    return last + 0.5


FIXTURE_PREFIX = "fixture:"


def is_fixture_fault(fault: str) -> bool:
    """Whether a proving fault is a test fixture (tests/) rather than a fault of the reference deployment."""
    return fault.startswith(FIXTURE_PREFIX)


def ids() -> list[str]:
    return [spec.id for spec in CHECKS]
