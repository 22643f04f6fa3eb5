"""Settings of one reference-service instance: plain data, chosen by the demo or the tests."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_RELEASE = "2026.11.26-1"
# The release before it: what a rollback returns to, and what still answers under wrong-release
# (the deployment did not take: the previous build is serving).
PREVIOUS_RELEASE = "2026.11.19-7"
WRONG_RELEASE = PREVIOUS_RELEASE


@dataclass(frozen=True)
class RateLimit:
    """Token bucket: ``rate`` tokens per second, up to ``burst``."""

    rate: float
    burst: int


@dataclass(frozen=True)
class ServiceSettings:
    data_dir: Path  # SQLite database, generated CA and certificates
    faults: frozenset[str] = frozenset()
    host: str = "127.0.0.1"  # loopback only
    server_name: str = "localhost"  # the name in the certificate and in the target file
    release_id: str = DEFAULT_RELEASE
    previous_release_id: str = PREVIOUS_RELEASE
    version: str = "1.4.0"
    schema_version: int = 7
    client_versions: str = ">=1.2.0,<2.0.0"
    unsupported_client_versions: str = ">=1.5.0,<2.0.0"  # fault unsupported-client
    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    token_ttl_s: int = 900
    long_token_ttl_s: int = 30 * 86400  # fault long-token-ttl
    users: tuple[tuple[str, str], ...] = (("alice", "alice-demo-password"), ("bob", "bob-demo-password"), ("carol", "carol-demo-password"))
    think_time_s: float = 0.02  # the assistant "thinks" before replying
    max_body_bytes: int = 1_048_576
    max_header_bytes: int = 16_384
    ws_max_message_bytes: int = 65_536
    ws_max_messages_per_s: float = 50.0
    ws_max_connections_per_user: int = 8
    # Rate limits on /api only (health, version and metrics are exempt). A gate probe sends at
    # most 40 requests (target rate_limit.max_probe_requests), so each burst stays well below.
    # Each bucket refills in one second, so the gate's rate-limit checks (which wait for the
    # quotas they drained to refill before the next burst) stay quick against the demo.
    rate_limit_ip: RateLimit = RateLimit(rate=30.0, burst=30)  # per client IP
    rate_limit_user: RateLimit = RateLimit(rate=20.0, burst=20)  # per authenticated user
    rate_limit_login: RateLimit = RateLimit(rate=10.0, burst=10)  # per client IP on the login endpoint
    slow_api_ms: int = 300
    error_burst_ratio: float = 0.3
    slow_sync_ms: int = 400
    stale_read_s: float = 5.0

    def has(self, fault: str) -> bool:
        return fault in self.faults
