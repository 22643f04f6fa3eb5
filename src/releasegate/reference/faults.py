"""The fault catalog: named switches that each break exactly one thing of the reference service.

Every registered check names one of these as its proving fault (registry.py); the fault
matrix test starts the service with each fault and shows that the check fails and that no
unrelated blocking check does.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    name: str
    breaks: str  # what it breaks, in one line, for `releasegate demo --help` and docs
    # Checks (ids or patterns) besides the ones this fault proves that it may legitimately fail,
    # with the reason: a service without its database serves no workflow at all. The fault
    # matrix allows exactly these; any other blocking check that fails is imprecise.
    also_breaks: tuple[str, ...] = ()
    why: str = ""

    def __post_init__(self) -> None:
        if self.also_breaks and not self.why:
            raise ValueError(f"fault {self.name}: also_breaks needs a reason in why")


CATALOG: tuple[Fault, ...] = (
    # TLS and transport
    Fault("tls-legacy", "TLS 1.0 and 1.1 are accepted besides 1.2 and 1.3"),
    Fault("cert-expired", "the server certificate expired yesterday"),
    Fault("cert-expiring", "the server certificate has 5 days left"),
    Fault("cert-wrong-host", "the server certificate names another host"),
    Fault("tls-weak-ciphers", "TLS 1.2 also accepts CBC and static-RSA suites"),
    Fault("http-no-redirect", "the plain-HTTP port serves the API instead of redirecting to HTTPS"),
    # headers
    Fault("no-hsts", "no Strict-Transport-Security header"),
    Fault("short-hsts", "Strict-Transport-Security max-age is one day"),
    Fault("no-security-headers", "no X-Content-Type-Options, frame protection, Referrer-Policy or Cache-Control"),
    Fault("insecure-cookie", "the login session cookie has no Secure, HttpOnly or SameSite attribute"),
    # auth
    Fault("auth-bypass", "protected API endpoints answer without a valid token"),
    Fault("long-token-ttl", "issued tokens live 30 days"),
    # WebSocket
    Fault("ws-no-auth", "the WebSocket upgrade is accepted without credentials"),
    Fault("ws-any-origin", "the WebSocket upgrade is accepted from any Origin"),
    Fault("ws-no-size-limit", "WebSocket messages of any size are accepted"),
    Fault("ws-plaintext", "the plain-HTTP port accepts WebSocket upgrades (ws://) instead of redirecting"),
    Fault("ws-no-connection-limit", "a user may open any number of WebSocket connections"),
    # limits
    Fault("no-rate-limit", "no per-IP rate limit"),
    Fault("no-user-rate-limit", "no per-user rate limit"),
    Fault("no-endpoint-rate-limit", "no per-endpoint rate limit on the login endpoint"),
    Fault("no-body-limit", "request bodies of any size are accepted"),
    # health
    Fault("liveness-fail", "the liveness endpoint answers 500"),
    Fault(
        "db-down",
        "the database is unreachable: readiness 503, deep health fails the db component",
        also_breaks=("business", "slo"),
        why="without its database the service answers every API call with 503: no workflow, no SLO can hold",
    ),
    Fault("cache-degraded", "the cache is degraded: deep health reports warn"),
    Fault("wrong-release", "the service reports another releaseId than the one expected"),
    Fault("worker-stuck", "the tool worker stops taking jobs: tool runs never finish"),
    # readiness
    Fault("schema-mismatch", "the database is one schema version behind the app: a migration is pending"),
    Fault("unsupported-client", "the server no longer supports clients older than 1.5.0"),
    Fault("no-previous-artifact", "the previous release's artifact is gone: a rollback has nothing to go back to"),
    # backups
    Fault("backup-stale", "the newest backup is three days old"),
    Fault(
        "backup-corrupt",
        "the newest backup file is damaged",
        also_breaks=("infra.backup.restore_drill",),
        why="a backup that is no longer a database cannot be restored either: the drill fails on the same damage",
    ),
    Fault("backup-empty", "the newest backup is a valid database with none of the application's tables"),
    # performance and behaviour
    Fault("slow-api", "every API answer is delayed by 300 ms"),
    Fault(
        "error-burst",
        "30% of API answers are 500",
        also_breaks=("business", "canary.judge"),
        why="every business check drives the API, and three requests in ten fail: a workflow that meets a 500 is broken; "
        "the canary judge rolls back on the failed critical error-rate metric",
    ),
    Fault(
        "slow-sync",
        "WebSocket events are delivered 400 ms late",
        also_breaks=("canary.judge",),
        why="sync latency is a critical canary metric: the judge rolls back when it fails",
    ),
    Fault(
        "sync-drop",
        "events are not delivered to the other participants",
        also_breaks=("business.sync_latency", "business.scenario.conversation", "business.scenario.tool_run"),
        why="a lost event is an infinitely late one, and the assistant's reply and a tool's result reach the user as "
        "events: dropped, the workflows that wait for them never finish",
    ),
    Fault("stale-read", "reads of a conversation lag writes by several seconds"),
    Fault("bad-model", "the assistant's answers degrade to empty suggestions"),
    # capacity
    Fault("cpu-hog", "every API request burns 30 ms of CPU: the service needs far more cores per conversation"),
)

NAMES: frozenset[str] = frozenset(f.name for f in CATALOG)
assert len(NAMES) == len(CATALOG), "duplicate fault name"


def get(name: str) -> Fault:
    for fault in CATALOG:
        if fault.name == name:
            return fault
    raise KeyError(name)
