"""The target file and gates.yaml, parsed into frozen models at the boundary.

Everything after :func:`load_target` / :func:`load_gates` works on these models and never
looks at YAML again. Every problem becomes a :class:`~releasegate.ConfigError` naming
file:line, the key and what to write instead; parsing collects all problems before raising.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from releasegate import registry
from releasegate._exceptions import ConfigError, Problem
from releasegate._yaml import LineIndex, YamlPath, dotted, load_yaml
from releasegate.redact import MIN_SECRET_LENGTH, mask_userinfo_passwords
from releasegate.results import Severity

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


# --------------------------------------------------------------------------- shared field checks


# pytest-testinfra backends that need nothing beyond the harness's own packages and the host's
# command-line client (ssh, docker, podman, kubectl, oc, lxc).
HOST_BACKENDS = ("local", "ssh", "safe-ssh", "docker", "podman", "kubectl", "openshift", "lxc", "lxd", "chroot")


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL such as https://app.example.test")
    if "\\" in parts.netloc:
        # http://evil.test\@app.test: host app.test to urlsplit and httpx, evil.test to urllib3 (Locust).
        raise ValueError("must not hold a backslash before its path: HTTP clients disagree on which host it names")
    return value.rstrip("/")


def _ws_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError("must be an absolute ws:// or wss:// URL such as wss://app.example.test/ws")
    return value


def _prometheus_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL such as http://prometheus:9090")
    if parts.username is not None or parts.password is not None:
        # A password in the URL ends up in evidence, logs and reports.
        raise ValueError("must not carry credentials (user:password@): put an authenticating proxy in front instead")
    return value.rstrip("/")


def _absolute_paths(value: list[str]) -> list[str]:
    for path in value:
        if not path.startswith("/"):
            raise ValueError(f"{path!r} must be a path starting with '/', relative to base_url")
    return value


# --------------------------------------------------------------------------- target file


def _os_path_problem(text: str) -> str | None:
    """Why the OS cannot take ``text`` as a path (resolve() would raise ValueError much later), or None."""
    if "\x00" in text:
        return "a path must not contain a NUL character"
    try:
        os.fsencode(text)
    except UnicodeEncodeError:  # a lone surrogate, written as a "\ud800" escape in YAML
        return "a path must be valid Unicode text"
    return None


def _os_path(value: Path) -> Path:
    problem = _os_path_problem(str(value))
    if problem:
        raise ValueError(problem)
    return value


# A path written in a target file, relative to it.
RelativePath = Annotated[Path, AfterValidator(_os_path)]


class TlsSettings(_Strict):
    """How the checks trust the deployment's certificate."""

    # Extra trust anchors for private CAs, relative to the target file.
    ca_bundle: RelativePath | None = None


class LoginSettings(_Strict):
    """A login flow the security checks may run (security.cookies): POST {username, password}."""

    # The login endpoint, relative to base_url.
    path: str
    # Names of the environment variables holding the user name and the password (redacted).
    username_env: str
    password_env: str

    @field_validator("username_env", "password_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not _is_env_name(value):
            raise ValueError("must be an environment variable name, not the value itself")
        return value


class AuthSettings(_Strict):
    """Credentials the checks use, each named by an environment variable."""

    # Names of environment variables holding secrets; a secret itself never appears in a file
    # releasegate reads or writes, and every one of them is redacted from every output.
    token_env: str | None = None
    # A second identity, so security.rate_limit.user can tell a per-user from a per-IP limit.
    second_token_env: str | None = None
    # A genuinely expired token for security.auth.token_lifetime. Without it a copy of the valid
    # token with exp in the past is sent, which only proves that tampered tokens are refused, so
    # the check can then at best warn ("expiry not proven").
    expired_token_env: str | None = None
    login: LoginSettings | None = None
    # Endpoints that must refuse missing and invalid tokens (security.auth.required).
    protected: list[str] = Field(default_factory=lambda: ["/api/"])

    @field_validator("token_env", "second_token_env", "expired_token_env")
    @classmethod
    def _looks_like_env_name(cls, value: str | None) -> str | None:
        if value is not None and not _is_env_name(value):
            raise ValueError("must be an environment variable name such as RELEASEGATE_TOKEN, not the token itself")
        return value

    def secret_envs(self) -> list[str]:
        names = [self.token_env, self.second_token_env, self.expired_token_env]
        if self.login is not None:
            names.append(self.login.password_env)
        return [name for name in names if name]


# Token formats that are also valid identifiers (GitHub's), so the character test alone lets them through.
_TOKEN_PREFIXES = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_")


def _is_env_name(value: str) -> bool:
    if not value or not value.replace("_", "a").isalnum() or not value.isascii() or value[0].isdigit():
        return False
    if value.startswith(_TOKEN_PREFIXES):
        return False
    # A long run of mixed case and digits is a random token, not a name someone chose.
    return not (
        len(value) >= 24 and any(c.islower() for c in value) and any(c.isupper() for c in value) and any(c.isdigit() for c in value)
    )


class HealthPaths(_Strict):
    """Health endpoints, as paths relative to base_url (health.*)."""

    # 2xx: the process is alive (health.liveness).
    liveness: str | None = None
    # 2xx: ready for traffic (health.readiness).
    readiness: str | None = None
    # Deep health document: application/health+json or Spring Boot actuator JSON.
    deep: str | None = None
    # Where the deployed version / releaseId is published; defaults to the deep document.
    version: str | None = None

    @field_validator("liveness", "readiness", "deep", "version")
    @classmethod
    def _absolute_path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("must be a path starting with '/', relative to base_url")
        return value


class RateLimitSettings(_Strict):
    """Where the rate-limit probes send their bounded bursts (security.rate_limit.*)."""

    # Endpoint the per-IP and per-user bursts go to.
    path: str
    # Hard cap on requests of one burst; a probe stops at the first 429 anyway.
    max_probe_requests: int = Field(default=40, gt=0, le=1000)
    # An endpoint with a limit of its own (e.g. login) and another that must still answer
    # while it is exhausted (security.rate_limit.endpoint).
    endpoint_path: str | None = None
    other_path: str | None = None


class LimitSettings(_Strict):
    """Request size limits (security.request_size)."""

    # Endpoint the oversized body is streamed to.
    body_path: str
    # Largest body the service accepts; one byte more must get 413.
    max_body_bytes: int = Field(gt=0)
    # Largest request header block the service accepts; one over it must get 431.
    max_header_bytes: int | None = Field(default=None, gt=0)


class WebSocketSettings(_Strict):
    """Limits the WebSocket checks hold the sync endpoint to (security.websocket.*)."""

    # A message one byte over this must close the connection with 1009.
    max_message_bytes: int = Field(default=65_536, gt=0)
    # Per-user connection cap (security.websocket.connection_limit); None: not checked.
    max_connections_per_user: int | None = Field(default=None, gt=0, le=200)
    # A conversation (or room) the token may join, if the endpoint needs one.
    query: str | None = None


# Who a scenario step, a sync client or a probe acts as: the token of auth.token_env (primary),
# of auth.second_token_env (second), or no token at all (anonymous).
Identity = Literal["primary", "second", "anonymous"]


_TWO_IDENTITIES: tuple[Identity, ...] = ("primary", "second")


class SyncSettings(_Strict):
    """How to join one conversation over WebSocket (business.collaboration, business.sync_latency)."""

    # Driver scenario (scenarios/drivers/<name>.yaml) that prepares a conversation both
    # identities take part in, and saves the variables ``url`` uses (e.g. conversation_id).
    setup: str
    # WebSocket URL of that conversation; ${name} takes a saved variable or ws_url.
    url: str = "${ws_url}?conversation=${conversation_id}"
    # What each kind of action sends, as a JSON template; ${nonce} is replaced by a unique
    # marker, and the action counts as delivered to a client when an event carrying it arrives.
    actions: dict[str, Any] = Field(min_length=1)
    # The action timed by business.sync_latency (one of ``actions``).
    latency_action: str = "edit"
    # Identities the clients join as, round robin (two tokens make three clients: primary,
    # second, primary).
    identities: list[Identity] = Field(default_factory=lambda: list(_TWO_IDENTITIES), min_length=1)
    # JSON path of the per-conversation sequence number in an event, if the protocol has one:
    # then every client must see strictly increasing numbers.
    seq_path: str | None = "$.seq"

    @model_validator(mode="after")
    def _latency_action_is_an_action(self) -> SyncSettings:
        if self.latency_action not in self.actions:
            raise ValueError(f"latency_action must be one of the actions ({', '.join(self.actions)})")
        return self


class ConsistencyRead(_Strict):
    """One endpoint or replica a write must become visible on."""

    # A path relative to base_url, or the absolute URL of a replica; ${name} takes saved variables.
    url: str
    # Identity to read as.
    as_: Identity = Field(default="primary", alias="as")
    # What "the write is visible" means there, in the scenario expectation language
    # (status, json, headers, body_contains); default: the body contains ${marker}.
    expect: dict[str, Any] = Field(default_factory=lambda: {"status": 200, "body_contains": "${marker}"})


class ConsistencySettings(_Strict):
    """business.data_consistency: write once, then read back everywhere listed."""

    # Driver scenario that writes; it receives ${marker} (unique per run) and saves the
    # variables the reads use.
    write: str
    reads: list[ConsistencyRead] = Field(min_length=1)


class SloProbeSettings(_Strict):
    """Active probing for slo.error_rate and slo.latency: ``requests`` spread evenly over ``window_s``."""

    # GETs of the probes (round robin), relative to base_url.
    paths: list[str] = Field(min_length=1)
    requests: int = Field(default=60, gt=0, le=5000)
    window_s: float = Field(default=10.0, gt=0, le=3600)
    # Identity of the probes.
    as_: Identity = Field(default="primary", alias="as")

    @field_validator("paths")
    @classmethod
    def _absolute_paths(cls, value: list[str]) -> list[str]:
        return _absolute_paths(value)


class PrometheusSettings(_Strict):
    """A Prometheus that scrapes this deployment; the PromQL itself lives in gates.yaml."""

    # Its HTTP API root, e.g. http://prometheus:9090 (no credentials in the URL).
    url: str
    # Label matchers that pick this deployment's series, put where a query says $selector
    # (e.g. job="api",namespace="prod"); empty selects everything the server has.
    selector: str = ""

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        return _prometheus_url(value)


class Integration(_Strict):
    """An external dependency (business.integrations): a component of the deep health document, or a URL."""

    name: str = Field(min_length=1)
    # Component name in health.deep (e.g. db:responseTime); its status must be pass.
    component: str | None = None
    # A URL (or a path relative to base_url) that must answer 2xx or 3xx.
    url: str | None = None
    # A degraded (warn) component is then a warning instead of a failure.
    allow_degraded: bool = False

    @model_validator(mode="after")
    def _one_kind(self) -> Integration:
        if (self.component is None) == (self.url is None):
            raise ValueError("component or url: give exactly one")
        return self


class LoadTargetSettings(_Strict):
    """Load against this deployment (`releasegate load`, the load stage)."""

    # Hosts load may go to besides loopback (always allowed). A base_url whose host is not
    # listed is refused before a single request: load against the wrong host is an incident.
    allowed_hosts: list[str] = Field(default_factory=list)
    # Profiles (loadtests/profiles/<name>.yaml) the load stage runs; `releasegate load
    # --profile NAME` runs one of any name.
    profiles: list[str] = Field(default_factory=lambda: ["smoke"], min_length=1)
    # Identities the virtual users act as, round robin.
    identities: list[Identity] = Field(default_factory=lambda: list(_TWO_IDENTITIES), min_length=1)
    # Folder of load profiles, relative to this file (default: the suite's loadtests/profiles).
    profiles_dir: RelativePath | None = None
    # Prometheus-format metrics of the service (a path relative to base_url or a URL), read
    # before and after the run for infra.capacity (process CPU seconds, resident memory,
    # bytes sent); a target with `prometheus` is asked there instead.
    metrics: str | None = None
    # Replicas serving base_url during the run: measured resources are divided among them.
    replicas: int = Field(default=1, ge=1, le=10_000)
    # CPU cores one replica may use (its CPU request or limit, e.g. 0.5 for 500m): infra.capacity's
    # CPU scaling trigger (load.capacity.scale_at_cpu_percent) is measured against it.
    cores_per_replica: float = Field(default=1.0, gt=0, le=1024)


# --------------------------------------------------------------------------- pre-deploy infrastructure


class CertFile(_Strict):
    """A certificate file on a host (infra.host.cert_files), and its private key."""

    cert: str = Field(min_length=1)  # absolute path on the host
    key: str | None = None  # absolute path on the host; its mode must be no wider than the policy's


class InfraTargetSettings(_Strict):
    """What the host checks look at on every host of ``hosts`` (infra.host.*)."""

    # The service's process (exact name as `pgrep -x` sees it): infra.host.nofile reads its limits.
    process: str | None = None
    # Services that must be running (and enabled, where a service manager such as systemd exists).
    services: list[str] = Field(default_factory=list)
    # Paths on the data and log mounts: each mount's usage must stay below the policy's limit.
    mounts: list[str] = Field(default_factory=list)
    # Ports that must be listening (TCP).
    listening: list[int] = Field(default_factory=list)
    # Database and cache ports: bound to loopback or private addresses only, never all interfaces.
    private_ports: list[int] = Field(default_factory=list)
    # Ports that may listen on public (non-loopback, non-private) addresses; anything else found
    # there is unexpected. None: not judged (only the private ports are).
    public_ports: list[int] | None = None
    cert_files: list[CertFile] = Field(default_factory=list)

    @field_validator("listening", "private_ports", "public_ports")
    @classmethod
    def _ports(cls, value: list[int] | None) -> list[int] | None:
        for port in value or []:
            if not 0 < port < 65536:
                raise ValueError(f"{port} is not a TCP port (1-65535)")
        return value


class PostgresServer(_Strict):
    """A scratch PostgreSQL server the restore drill may create (and drop) a database on."""

    # Where it listens, and the role the drill connects as (it needs CREATEDB).
    host: str = "127.0.0.1"
    port: int = Field(default=5432, gt=0, lt=65536)
    user: str = "postgres"
    # Environment variable holding that role's password (passed as PGPASSWORD, redacted).
    password_env: str | None = None
    # Database to connect to for CREATE/DROP DATABASE.
    maintenance_db: str = "postgres"
    # Folder of pg_restore/psql when they are not on PATH (e.g. /usr/lib/postgresql/15/bin).
    bin_dir: str | None = None

    @field_validator("password_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _is_env_name(value):
            raise ValueError("must be an environment variable name, not the password itself")
        return value


class BackupSource(_Strict):
    """Backups of one database (infra.backup.*): the newest file matching ``path`` is the one judged."""

    # Names this source in reports: each infra.backup.* check runs once per source.
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$")
    # sqlite: SQLite database files; postgres: pg_dump custom-format dumps (pg_dump -Fc).
    kind: Literal["sqlite", "postgres"]
    # A file, directory or glob on the gate's machine, relative to the target file.
    path: str = Field(min_length=1)
    # Where a postgres dump is restored for the drill (a scratch database is created and dropped).
    restore_server: PostgresServer | None = None


class RollbackSettings(_Strict):
    """readiness.rollback: can the previous release be restored?"""

    # A dry run of the rollback, e.g. [kubectl, rollout, undo, deploy/api, --dry-run=server]; exit 0 = ready.
    verify_command: list[str] | None = Field(default=None, min_length=1)
    # verify_command is stopped (and the check fails) after this many seconds.
    timeout_s: float = Field(default=60.0, gt=0, le=3600)
    # The previous release's artifact (image manifest, package): it must answer 2xx.
    previous_artifact_url: str | None = None

    @model_validator(mode="after")
    def _something_to_verify(self) -> RollbackSettings:
        if self.verify_command is None and self.previous_artifact_url is None:
            raise ValueError("verify_command or previous_artifact_url must be set: otherwise nothing proves a rollback is possible")
        return self


class CanaryPrometheus(_Strict):
    """A Prometheus that scrapes both sides; each side's series picked by its own label matchers."""

    # Its HTTP API root, e.g. http://prometheus:9090 (no credentials in the URL).
    url: str
    # Label matchers put where a canary query says $selector, e.g. job="api",track="stable".
    baseline_selector: str = Field(min_length=1)
    canary_selector: str = Field(min_length=1)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        return _prometheus_url(value)

    @model_validator(mode="after")
    def _sides_differ(self) -> CanaryPrometheus:
        if self.baseline_selector.strip() == self.canary_selector.strip():
            raise ValueError("canary_selector must differ from baseline_selector: both sides would read the same series")
        return self


class CanaryTargetSettings(_Strict):
    """The two sides of a canary (stage canary): where to probe them and how Prometheus tells them apart."""

    # The stable version's URL and the new version's (default: base_url). Active probes send the
    # same requests to both, interleaved, so both see the same conditions.
    baseline_url: str | None = None
    canary_url: str | None = None
    # WebSocket URLs of both sides for the sync round trips (canary default: ws_url).
    baseline_ws_url: str | None = None
    canary_ws_url: str | None = None
    # GETs of the HTTP probes (round robin), relative to each side's URL.
    paths: list[str] = Field(default_factory=lambda: ["/healthz"], min_length=1)
    # HTTP requests per side per interval, paced evenly over the interval (open loop).
    requests_per_interval: int = Field(default=60, ge=1, le=100_000)
    # WebSocket round trips per side per interval (sync_latency metric), paced over the interval.
    sync_round_trips: int = Field(default=20, ge=1, le=10_000)
    # Identity of the probes.
    as_: Identity = Field(default="primary", alias="as")
    prometheus: CanaryPrometheus | None = None

    @field_validator("baseline_url", "canary_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value)

    @field_validator("baseline_ws_url", "canary_ws_url")
    @classmethod
    def _ws_url(cls, value: str | None) -> str | None:
        return None if value is None else _ws_url(value)

    @field_validator("paths")
    @classmethod
    def _absolute_paths(cls, value: list[str]) -> list[str]:
        return _absolute_paths(value)


class Target(_Strict):
    name: str = Field(min_length=1)
    base_url: str
    # The plain-HTTP endpoint of the same service (security.transport.https); default: base_url
    # with http:// on the default port.
    http_url: str | None = None
    ws_url: str | None = None
    websocket: WebSocketSettings = WebSocketSettings()
    tls: TlsSettings = TlsSettings()
    auth: AuthSettings = AuthSettings()
    health: HealthPaths | None = None
    expected_release: str | None = None
    rate_limit: RateLimitSettings | None = None
    limits: LimitSettings | None = None
    # Folder of scenario files, relative to the target file: <dir>/*.yaml are workflows (one
    # check each), <dir>/drivers/*.yaml procedures other checks call, <dir>/golden/*.yaml the
    # golden prompts of business.model_quality. Without it those checks are skipped.
    scenarios: RelativePath | None = None
    sync: SyncSettings | None = None
    consistency: ConsistencySettings | None = None
    slo: SloProbeSettings | None = None
    prometheus: PrometheusSettings | None = None
    integrations: list[Integration] = Field(default_factory=list)
    load: LoadTargetSettings | None = None
    canary: CanaryTargetSettings | None = None
    # Pre-deploy infrastructure: pytest-testinfra host specs (local://, ssh://user@host,
    # docker://container, kubectl://pod?namespace=x, ...); every infra.host check runs once per host.
    hosts: list[str] = Field(default_factory=list)
    infra: InfraTargetSettings | None = None
    backups: list[BackupSource] = Field(default_factory=list)
    rollback: RollbackSettings | None = None

    @field_validator("hosts")
    @classmethod
    def _host_specs(cls, value: list[str]) -> list[str]:
        for spec in value:
            shown = mask_userinfo_passwords(spec)
            if "://" not in spec:
                # testinfra reads a bare name as paramiko://, which is not installed.
                raise ValueError(f"{shown!r} needs a scheme: local://, ssh://user@host, docker://name, kubectl://pod?namespace=x")
            scheme = spec.split("://", 1)[0]
            if scheme not in HOST_BACKENDS:
                # testinfra knows more (paramiko, ansible, salt, winrm): their libraries are not installed.
                raise ValueError(f"{shown!r}: backend {scheme}:// is not supported here; use one of {', '.join(HOST_BACKENDS)}")
            netloc = urlsplit(spec).netloc
            if "@" in netloc and ":" in netloc.rsplit("@", 1)[0]:
                # testinfra would put it on sshpass's command line, visible to every process.
                raise ValueError(f"{scheme}:// spec must not carry a password (user:password@host): use an SSH key")
        return value

    @field_validator("base_url", "http_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value)

    @field_validator("ws_url")
    @classmethod
    def _ws_url(cls, value: str | None) -> str | None:
        return None if value is None else _ws_url(value)


@dataclass(frozen=True)
class LoadedTarget:
    """A parsed target plus where it came from (relative paths resolve against its folder)."""

    target: Target
    path: Path

    @property
    def ca_bundle(self) -> Path | None:
        bundle = self.target.tls.ca_bundle
        return None if bundle is None else (self.path.parent / bundle).resolve()

    @property
    def scenario_dir(self) -> Path | None:
        folder = self.target.scenarios
        return None if folder is None else (self.path.parent / folder).resolve()

    def token(self) -> str | None:
        """The bearer token from the environment; never log or store the returned value."""
        return self.secret(self.target.auth.token_env)

    def token_of(self, identity: Identity) -> str | None:
        """The bearer token an identity acts with (None: anonymous, or its variable is not named)."""
        if identity == "primary":
            return self.token()
        if identity == "second":
            return self.secret(self.target.auth.second_token_env)
        return None

    def secret(self, env: str | None) -> str | None:
        """A secret named by one of the target's *_env keys; never log or store it."""
        return os.environ.get(env) if env else None

    def secrets(self) -> list[tuple[str, str]]:
        """(variable name, value) of every secret the target names, for the redactor."""
        names = self.target.auth.secret_envs() + [
            source.restore_server.password_env
            for source in self.target.backups
            if source.restore_server is not None and source.restore_server.password_env
        ]
        return [(env, value) for env in names if (value := os.environ.get(env))]


# --------------------------------------------------------------------------- gates.yaml


class RetryPolicy(_Strict):
    # Keep probing a post-deploy check until it passes or this many seconds have gone by
    # (like goss --retry-timeout); 0 means a single attempt.
    timeout_s: float = Field(default=30.0, ge=0, le=3600)
    interval_s: float = Field(default=1.0, gt=0, le=600)
    backoff: float = Field(default=2.0, ge=1, le=10)
    max_interval_s: float = Field(default=10.0, gt=0, le=600)

    @model_validator(mode="after")
    def _consistent(self) -> RetryPolicy:
        if self.max_interval_s < self.interval_s:
            raise ValueError("max_interval_s must be at least interval_s")
        return self


class ProbeSettings(_Strict):
    # Upper bound on one request, connect to last byte.
    timeout_s: float = Field(default=5.0, gt=0, le=300)
    # Bodies are read up to this many bytes; a bigger answer is an error, not a crash.
    max_body_bytes: int = Field(default=1_048_576, gt=0, le=64 * 1_048_576)
    retry: RetryPolicy = RetryPolicy()


class HealthThresholds(_Strict):
    # Latency budget for one liveness/readiness answer; slower is a failure. None: no budget.
    max_latency_ms: float | None = Field(default=2000.0, gt=0)


class SecurityThresholds(_Strict):
    # Mozilla profile the TLS configuration must meet (intermediate | modern | old), or a path
    # to a custom profile JSON in sslyze's format, relative to gates.yaml.
    tls_profile: str = "intermediate"
    # Certificate: fewer days left than cert_min_days fails, fewer than cert_warn_days warns;
    # a lifespan over cert_max_lifespan_days warns (browsers refuse over 398).
    cert_min_days: int = Field(default=14, ge=0)
    cert_warn_days: int = Field(default=30, ge=0)
    cert_max_lifespan_days: int = Field(default=398, gt=0)
    # Strict-Transport-Security max-age at least this (one year).
    hsts_min_max_age_s: int = Field(default=31_536_000, ge=0)
    # A freshly issued token may live at most this long (exp - iat).
    token_max_lifetime_s: int = Field(default=3600, gt=0)

    @model_validator(mode="after")
    def _warn_before_fail(self) -> SecurityThresholds:
        if self.cert_warn_days < self.cert_min_days:
            raise ValueError("cert_warn_days must be at least cert_min_days")
        return self


class SyncLatencyThresholds(_Strict):
    # Open-loop round trips: client A sends one action every interval_ms, whether or not the
    # previous one arrived (waiting would hide a stall: coordinated omission).
    round_trips: int = Field(default=60, gt=0, le=10_000)
    interval_ms: float = Field(default=30.0, gt=0, le=60_000)
    # An event not at client B this long after it was sent is lost (counted as infinitely late).
    timeout_ms: float = Field(default=2000.0, gt=0, le=600_000)
    # Percentile budgets in milliseconds; null: not judged, but at least one must be set (a
    # check that judges nothing must not pass).
    p50_ms: float | None = Field(default=None, gt=0)
    p95_ms: float | None = Field(default=250.0, gt=0)
    p99_ms: float | None = Field(default=None, gt=0)
    max_ms: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _judges_something(self) -> SyncLatencyThresholds:
        if all(budget is None for budget in (self.p50_ms, self.p95_ms, self.p99_ms, self.max_ms)):
            # The first word is the key the problem points at: the budget a policy most likely nulled.
            raise ValueError("p95_ms or another budget (p50_ms, p99_ms, max_ms) must be set: with every budget null nothing is judged")
        return self


class CollaborationThresholds(_Strict):
    # Clients in the conversation, and how many times each sends each kind of action.
    clients: int = Field(default=3, ge=2, le=50)
    rounds: int = Field(default=2, ge=1, le=50)
    # Pause between two actions of one client (servers rate-limit messages per connection).
    interval_ms: float = Field(default=30.0, ge=0, le=60_000)
    # After the last action, how long to wait for everything to arrive.
    timeout_ms: float = Field(default=3000.0, gt=0, le=600_000)


class ConsistencyThresholds(_Strict):
    # A write must be visible everywhere within this many seconds (read-after-write window).
    window_s: float = Field(default=2.0, ge=0, le=600)
    poll_interval_ms: float = Field(default=100.0, gt=0, le=60_000)


class PrometheusQueries(_Strict):
    # Range of rate() in the queries ($window). It should not reach back before the deploy:
    # a 5m window two minutes after a rollout still averages in three minutes of the old release.
    window: str = Field(default="5m", pattern=r"^[0-9]+(ms|s|m|h|d)$")
    # PromQL; $selector is the target's prometheus.selector (it must isolate the new release's
    # series: old replicas still serving would dilute its errors), $window the range above. The
    # gate's own probe traffic is in these series too. A
    # trailing comma inside {} is valid PromQL, so {status=~"5..",$selector} works with an
    # empty selector too. Empty result or NaN is "could not measure", never a pass; `or vector(0)`
    # because a healthy service has no 5xx series at all (no traffic at all stays unmeasurable).
    error_rate: str = (
        '(sum(rate(http_requests_total{status=~"5..",$selector}[$window])) or vector(0))'
        " / sum(rate(http_requests_total{$selector}[$window]))"
    )
    latency_p95_seconds: str = "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{$selector}[$window])))"


class SloThresholds(_Strict):
    # Errors (5xx answers and requests that got no answer: refused, timed out, cut) among the
    # judged requests (0.01 = 1 %). A 429 is the service protecting itself, other 4xx a wrong
    # path or token: neither is judged, both are reported; 4xx on over 5 % of a path's answers
    # make the check an error (it cannot tell whether the release broke the path).
    max_error_rate: float = Field(default=0.01, ge=0, le=1)
    # Latency budgets in milliseconds from raw samples; null: not judged. All null: only
    # --baseline judges, and without a baseline figure the check is an error, never a pass.
    p50_ms: float | None = Field(default=None, gt=0)
    p95_ms: float | None = Field(default=500.0, gt=0)
    p99_ms: float | None = Field(default=None, gt=0)
    # Against --baseline (a saved verdict.json or a second target): at most this much worse.
    baseline_max_error_rate_increase: float = Field(default=0.005, ge=0, le=1)
    baseline_max_p95_ratio: float = Field(default=1.25, ge=1)
    # ... but p95 may always grow by this much: a ratio of a few milliseconds is noise.
    baseline_min_p95_increase_ms: float = Field(default=10.0, ge=0)
    prometheus: PrometheusQueries = PrometheusQueries()


class ModelQualityThresholds(_Strict):
    # Share of golden cases that must pass (0..1).
    min_pass_rate: float = Field(default=0.9, ge=0, le=1)
    # Against --baseline: the pass rate may fall at most this many percentage points.
    max_drop_points: float = Field(default=5.0, ge=0, le=100)


class InfraThresholds(_Strict):
    # infra.host.nofile: the service process's soft open-file limit.
    min_nofile: int = Field(default=65_536, gt=0)
    # infra.host.sysctl: kernel setting -> condition. A number compares as such; a range such as
    # net.ipv4.ip_local_port_range compares its width (ports in it).
    sysctl: dict[str, str] = Field(
        default_factory=lambda: {
            "net.core.somaxconn": ">=4096",
            "net.ipv4.tcp_max_syn_backlog": ">=4096",
            "net.ipv4.ip_local_port_range": ">=28000",
            "fs.file-max": ">=65536",
        }
    )
    # infra.host.disk: a mount's usage (percent of its size) must stay below this.
    max_disk_percent: float = Field(default=85.0, gt=0, le=100)
    # infra.host.cert_files: a private key's mode may be no wider than this (octal).
    max_key_mode: str = Field(default="0640", pattern=r"^0?[0-7]{3}$")
    # infra.host.cert_files: a certificate file on the host with fewer days left than this fails.
    cert_min_days: int = Field(default=14, ge=0)

    @field_validator("sysctl")
    @classmethod
    def _conditions(cls, value: dict[str, str]) -> dict[str, str]:
        for name, condition in value.items():
            if not re.match(_CONDITION, condition):
                raise ValueError(f"{name}: {condition!r} is not a condition such as '>=4096'")
        return value


class SanityQuery(_Strict):
    """A query the restored database must answer (restore drill): at least ``min_rows`` rows, or exactly ``equals``."""

    # Shown in the drill's evidence.
    name: str = Field(min_length=1)
    # One statement, run against the restored copy (psql for postgres, SQLite for sqlite).
    sql: str = Field(min_length=1)
    # The answer has at least this many rows.
    min_rows: int | None = Field(default=None, ge=0)
    # The first column of the first row, compared as text.
    equals: str | None = None

    @model_validator(mode="after")
    def _one_expectation(self) -> SanityQuery:
        if (self.min_rows is None) == (self.equals is None):
            raise ValueError("min_rows or equals must be set (exactly one): what the answer must be")
        return self


class BackupThresholds(_Strict):
    # infra.backup.freshness: the newest backup is at most this old (the recovery point objective).
    rpo_hours: float = Field(default=24.0, gt=0)
    # infra.backup.restore_drill: the restore plus the sanity queries finish within this (the
    # recovery time objective); the drill is stopped at it.
    rto_s: float = Field(default=900.0, gt=0, le=86_400)
    # Run against the restored copy: table names are the application's.
    sanity_queries: list[SanityQuery] = Field(default_factory=list)


class MonitoringThresholds(_Strict):
    # infra.monitoring.targets: every scrape job named here has targets, all up (Prometheus /api/v1/targets).
    jobs: list[str] = Field(default_factory=list)
    # infra.monitoring.alert_rules: alerting rules loaded by name (Prometheus /api/v1/rules).
    alert_rules: list[str] = Field(default_factory=list)


class ReadinessThresholds(_Strict):
    # readiness.client_compat: the oldest client version still in use; the server's supported
    # range (clientVersions in /version) must include it.
    oldest_client_version: str | None = Field(default=None, pattern=r"^[0-9]+(\.[0-9]+){0,2}$")
    # readiness.migrations: the schema version the release expects; null: the app's own
    # schemaVersion must equal the database's, with no pending migrations.
    expected_schema_version: int | None = Field(default=None, ge=0)


class Thresholds(_Strict):
    health: HealthThresholds = HealthThresholds()
    security: SecurityThresholds = SecurityThresholds()
    sync_latency: SyncLatencyThresholds = SyncLatencyThresholds()
    collaboration: CollaborationThresholds = CollaborationThresholds()
    data_consistency: ConsistencyThresholds = ConsistencyThresholds()
    slo: SloThresholds = SloThresholds()
    model_quality: ModelQualityThresholds = ModelQualityThresholds()
    infra: InfraThresholds = InfraThresholds()
    backup: BackupThresholds = BackupThresholds()
    monitoring: MonitoringThresholds = MonitoringThresholds()
    readiness: ReadinessThresholds = ReadinessThresholds()


# A percentile from fewer samples says little: p95 of 20 samples is the second-largest value.
DEFAULT_MIN_SAMPLES: dict[str, int] = {"business.sync_latency": 50, "slo.latency": 30, "slo.error_rate": 30}


LOAD_METRICS = (
    "http_p50_ms",
    "http_p95_ms",
    "http_p99_ms",
    "http_max_ms",
    "fail_ratio",
    "rps",
    "requests",
    "sync_p50_ms",
    "sync_p95_ms",
    "sync_p99_ms",
    "dropped_iterations",
)
_CONDITION = r"^\s*(<=|>=|==|<|>)\s*-?[0-9]+(\.[0-9]+)?\s*$"


class LoadThreshold(_Strict):
    """One k6-style condition on a load metric, e.g. ``"<800"``."""

    condition: str = Field(pattern=_CONDITION)
    # Stop the run as soon as the condition fails (after delay_abort_eval_s of warm-up), as
    # k6's abortOnFail: a release that is clearly failing need not be loaded for ten minutes.
    abort_on_fail: bool = False
    delay_abort_eval_s: float = Field(default=0.0, ge=0, le=3600)


def _default_load_thresholds() -> dict[str, Any]:
    # dropped_iterations reads 0 (a count, not missing data) for a profile without an open model.
    return {"http_p95_ms": "<800", "fail_ratio": "<0.01", "sync_p95_ms": "<250", "dropped_iterations": "<=0"}


class CapacityRules(_Strict):
    """The deployment guide's sizing rules (infra.capacity)."""

    # 0.5-1 CPU core per 10 concurrent conversations: more than the upper bound is too heavy.
    max_cores_per_10_conversations: float = Field(default=1.0, gt=0)
    # 4-8 GB base plus 100-200 MB per concurrent conversation.
    base_memory_gb: float = Field(default=8.0, gt=0)
    max_memory_mb_per_conversation: float = Field(default=200.0, gt=0)
    # 1-10 KB/s per active user.
    max_kb_per_s_per_user: float = Field(default=10.0, gt=0)
    # Scaling triggers: CPU over this share of the available cores, connection pool over this use.
    scale_at_cpu_percent: float = Field(default=70.0, gt=0, le=100)
    scale_at_pool_percent: float = Field(default=80.0, gt=0, le=100)
    # Sizes to recommend replicas for (concurrent conversations).
    sizes: dict[str, int] = Field(default_factory=lambda: {"small_team": 50, "enterprise": 500})


class LoadPolicy(_Strict):
    # metric (optionally scoped to one request name: `http_p95_ms{POST /api/v1/messages}`) ->
    # a condition, a list of them, or {condition, abort_on_fail, delay_abort_eval_s}.
    thresholds: dict[str, str | LoadThreshold | list[str | LoadThreshold]] = Field(default_factory=_default_load_thresholds)
    # Fewer requests than this: inconclusive (error), neither pass nor fail.
    min_requests: int = Field(default=30, ge=1)
    # A load generator above this CPU share measured itself, not the service: inconclusive.
    max_generator_cpu_percent: float = Field(default=90.0, gt=0, le=100)
    # No profile runs longer than this, whatever its stages say.
    max_duration_s: float = Field(default=900.0, gt=0, le=86_400)
    capacity: CapacityRules = CapacityRules()

    @field_validator("thresholds")
    @classmethod
    def _known_metrics(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            metric = key.split("{", 1)[0].strip()
            if metric not in LOAD_METRICS:
                raise ValueError(f"{key!r}: unknown metric; use one of {', '.join(LOAD_METRICS)}")
            if "{" in key and not key.rstrip().endswith("}"):
                raise ValueError(f"{key!r}: scope a metric as metric{{request name}}")
        for conditions in value.values():
            for condition in conditions if isinstance(conditions, list) else [conditions]:
                text = condition if isinstance(condition, str) else condition.condition
                if not re.match(_CONDITION, text):
                    raise ValueError(f"{text!r} is not a condition such as '<800' or '>=5'")
        return value


# What feeds a canary metric when its source is the gate's own probes.
CANARY_PROBES: dict[str, Literal["latency", "rate"]] = {"http_latency": "latency", "http_errors": "rate", "sync_latency": "latency"}


class CanaryMetric(_Strict):
    """One metric the canary judge compares between the baseline and the canary (releasegate.canary.judge)."""

    # Lower-case words joined by underscores: the metric's check is canary.metric.<name>.
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    # latency: positive values (one per request, round trip or Prometheus point), judged on the
    # ratio scale by Mann-Whitney U with the Hodges-Lehmann ratio and its confidence interval.
    # rate: events out of trials (errors out of requests), judged by Fisher's exact test.
    kind: Literal["latency", "rate"]
    # probe: the gate's own requests to both sides (probe: http_latency | http_errors | sync_latency).
    # prometheus: the target's canary.prometheus, each side's selector put where $selector is.
    source: Literal["probe", "prometheus"] = "probe"
    probe: Literal["http_latency", "http_errors", "sync_latency"] | None = None
    # latency from Prometheus: a PromQL range query, one sample per side per step (canary.step_s);
    # $step is the step as a duration (e.g. "5s"), so rate(x[$step]) points do not overlap.
    query: str | None = None
    # rate from Prometheus: two instant queries over the interval ($interval, e.g. "60s") whose
    # values are counts: events (errors) and trials (requests).
    errors_query: str | None = None
    total_query: str | None = None
    # Which way is worse: increase (latency, errors), decrease (throughput), either.
    direction: Literal["increase", "decrease", "either"] = "increase"
    # The effect the canary may show before it fails: it fails when it is significantly worse
    # AND its estimated ratio to the baseline is beyond this (1.0: any significant change fails).
    # It passes early once the confidence bound on the ratio is within it.
    allowed_increase: float = Field(default=1.0, ge=1.0, le=1000.0)
    allowed_decrease: float = Field(default=1.0, gt=0.0, le=1.0)
    # Latency only: an increase the canary may show in absolute terms (the samples' unit, ms),
    # measured at the baseline's median. The allowed ratio becomes the larger of allowed_increase
    # and 1 + allowed_increase_ms / baseline median, so a 2 ms -> 3 ms change (ratio 1.5, and
    # within the noise of two processes on one host) is not a regression. 0: ratio only.
    allowed_increase_ms: float = Field(default=0.0, ge=0.0, le=3_600_000.0)
    # A critical metric that fails rolls back at once, whatever the score; one that has no data
    # at the last interval holds.
    critical: bool = False
    # Share of the score (weights are relative).
    weight: float = Field(default=1.0, gt=0.0, le=1000.0)
    # Samples (latency) or trials (rate) each side needs before the metric is judged at all;
    # below it the metric has no data: never a pass, never a fail.
    min_samples: int = Field(default=50, ge=1, le=10_000_000)

    @model_validator(mode="after")
    def _source_is_complete(self) -> CanaryMetric:
        # Each message starts with the key to change, so the problem points at that key's line.
        if self.allowed_increase_ms and self.kind != "latency":
            raise ValueError("allowed_increase_ms must be 0 for a rate metric: it is an absolute latency tolerance (use allowed_increase)")
        queries = [key for key in ("query", "errors_query", "total_query") if getattr(self, key)]
        if self.source == "probe":
            if self.probe is None:
                raise ValueError(
                    f"probe must name what feeds a probe metric: one of {', '.join(CANARY_PROBES)} (or set source: prometheus)"
                )
            if CANARY_PROBES[self.probe] != self.kind:
                raise ValueError(f"kind must be {CANARY_PROBES[self.probe]}: probe {self.probe} measures a {CANARY_PROBES[self.probe]}")
            if queries:
                raise ValueError(f"source must be prometheus for PromQL ({', '.join(queries)}), or drop the queries")
        elif self.probe is not None:
            raise ValueError("probe must not be set for a prometheus metric (or set source: probe)")
        elif self.kind == "latency":
            if not self.query:
                raise ValueError("query must be set: a prometheus latency metric takes one PromQL range query")
            if self.errors_query or self.total_query:
                raise ValueError("kind must be rate for errors_query and total_query (a latency metric takes one query)")
        else:
            if self.query:
                raise ValueError("query must not be set for a rate metric: it takes errors_query and total_query")
            for key in ("errors_query", "total_query"):
                if not getattr(self, key):
                    raise ValueError(f"{key} must be set: a prometheus rate metric takes two count queries, errors_query and total_query")
        return self


def _default_canary_metrics() -> list[CanaryMetric]:
    return [
        CanaryMetric(
            name="http_latency", kind="latency", probe="http_latency", allowed_increase=1.1, allowed_increase_ms=5, critical=True, weight=40
        ),
        CanaryMetric(name="http_errors", kind="rate", probe="http_errors", allowed_increase=1.5, critical=True, weight=40, min_samples=100),
        CanaryMetric(
            name="sync_latency",
            kind="latency",
            probe="sync_latency",
            allowed_increase=1.1,
            allowed_increase_ms=5,
            critical=True,
            weight=20,
            min_samples=30,
        ),
    ]


class CanaryScore(_Strict):
    # Kayenta-style score (0-100): the weighted share of metrics that passed. At or above pass
    # the canary may be promoted; below marginal even if every undecided metric passed, it is
    # rolled back; in between it holds for a human.
    pass_: float = Field(default=95.0, alias="pass", gt=0, le=100)
    marginal: float = Field(default=75.0, ge=0, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> CanaryScore:
        if self.marginal > self.pass_:
            raise ValueError(f"marginal ({self.marginal:g}) must not be above pass ({self.pass_:g})")
        return self


class CanaryPolicy(_Strict):
    """The canary stage: how long to look, how to correct for looking often, what to compare."""

    # Samples are collected for interval_s, then everything so far is judged (one look), up to
    # max_intervals looks: rollback as soon as a critical metric fails, promote once the score
    # passes with enough samples, hold when the intervals run out undecided.
    interval_s: float = Field(default=60.0, gt=0, le=3600)
    max_intervals: int = Field(default=10, ge=1, le=100)
    # The false-rollback rate a healthy canary may have over ALL looks together (one-sided; a
    # metric judged in either direction splits it between the two).
    alpha: float = Field(default=0.01, gt=0, lt=0.5)
    # How alpha is shared among the looks, so that judging every interval does not inflate false
    # rollbacks: haybittle-peto (each interim look gets interim_alpha / (max_intervals - 1), the
    # last look the rest: full power at the end, early rollback only on strong evidence),
    # obrien-fleming (Lan-DeMets spending), bonferroni (alpha / max_intervals each), none (alpha
    # at every look: what a judge without correction does; for comparison only).
    looks: Literal["haybittle-peto", "obrien-fleming", "bonferroni", "none"] = "haybittle-peto"
    interim_alpha: float = Field(default=0.001, gt=0, lt=0.5)
    score: CanaryScore = CanaryScore()
    # Prometheus range-query step: one latency sample per side per step.
    step_s: float = Field(default=5.0, gt=0, le=3600)
    metrics: list[CanaryMetric] = Field(default_factory=_default_canary_metrics, min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> CanaryPolicy:
        names = [metric.name for metric in self.metrics]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"metrics must have unique names: {', '.join(duplicates)} appears more than once")
        if self.looks == "haybittle-peto" and self.max_intervals > 1 and self.interim_alpha >= self.alpha:
            raise ValueError(f"interim_alpha ({self.interim_alpha:g}) must be below alpha ({self.alpha:g}): the last look needs the rest")
        if self.step_s > self.interval_s and any(m.source == "prometheus" and m.kind == "latency" for m in self.metrics):
            raise ValueError(
                f"step_s ({self.step_s:g}) is longer than interval_s ({self.interval_s:g}): an interval would hold no Prometheus point"
            )
        return self


class Waiver(_Strict):
    """Accepts a known failure or warning of matching checks until a date; never an error."""

    # Id or pattern of registered checks (exact id, dotted prefix or glob).
    check: str = Field(min_length=1)
    # Why, and who tracks the fix (a ticket); shown with every result it waives.
    justification: str = Field(min_length=10)
    # YYYY-MM-DD, the last day the waiver applies.
    expires: date


# A whole run's longest deadline (gates.yaml deadline_s and `run --deadline`): one day.
MAX_DEADLINE_S = 86_400.0


class Gates(_Strict):
    version: Literal[1] = 1
    on_error: Literal["hold", "rollback"] = "hold"
    on_warning: Literal["ignore", "hold"] = "ignore"
    deadline_s: float = Field(default=900.0, gt=0, le=MAX_DEADLINE_S)
    severity: dict[str, Severity] = Field(default_factory=dict)
    required: list[str] = Field(default_factory=list)
    # Evidence minimums: check id or pattern -> samples a statistical check needs; below it the
    # result is inconclusive (error), neither pass nor fail.
    # Built-in minimums (DEFAULT_MIN_SAMPLES) apply unless an entry here names the same check.
    min_samples: dict[str, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)
    waivers: list[Waiver] = Field(default_factory=list)
    probe: ProbeSettings = ProbeSettings()
    thresholds: Thresholds = Thresholds()
    load: LoadPolicy = LoadPolicy()
    canary: CanaryPolicy = CanaryPolicy()

    @model_validator(mode="after")
    def _deadline_fits_a_probe(self) -> Gates:
        if self.deadline_s < self.probe.timeout_s:
            raise ValueError("deadline_s must be at least probe.timeout_s, or no check could finish")
        if self.deadline_s < self.probe.retry.timeout_s + self.probe.timeout_s:
            raise ValueError(
                "deadline_s must be at least probe.retry.timeout_s + probe.timeout_s, or one converging check outlives the run"
            )
        minimum = self.min_samples_of("business.sync_latency")
        round_trips = self.thresholds.sync_latency.round_trips
        if minimum is not None and round_trips < minimum:
            # The first word names the key the problem points at (its line): the one the policy set.
            if "round_trips" in self.thresholds.sync_latency.model_fields_set:
                raise ValueError(
                    f"thresholds set sync_latency.round_trips to {round_trips}, below the min_samples of business.sync_latency "
                    f"({minimum}): every run would be inconclusive; raise round_trips or lower min_samples"
                )
            raise ValueError(
                f"min_samples of business.sync_latency ({minimum}) is above thresholds.sync_latency.round_trips ({round_trips}): "
                "every run would be inconclusive; lower min_samples or raise round_trips"
            )
        return self

    def min_samples_of(self, check_id: str) -> int | None:
        """The evidence minimum for ``check_id``: exact id, else the longest matching pattern."""
        if check_id in self.min_samples:
            return self.min_samples[check_id]
        matching = [(len(p), n) for p, n in self.min_samples.items() if registry.matches(p, check_id)]
        if matching:
            return max(matching)[1]
        return DEFAULT_MIN_SAMPLES.get(check_id)

    def severity_of(self, check_id: str) -> Severity:
        """Registry default, overridden by an exact id, else by the longest matching pattern."""
        if check_id in self.severity:
            return self.severity[check_id]
        best: tuple[int, Severity] | None = None
        for pattern, severity in self.severity.items():
            if registry.matches(pattern, check_id) and (best is None or len(pattern) > best[0]):
                best = (len(pattern), severity)
        return best[1] if best else registry.get(check_id).severity


@dataclass(frozen=True)
class LoadedGates:
    gates: Gates
    path: Path | None
    lines: LineIndex

    def line_of(self, path: YamlPath) -> int | None:
        return self.lines.line(path)


# --------------------------------------------------------------------------- loading


def load_target(path: Path) -> LoadedTarget:
    data, lines = load_yaml(path)
    shown = str(path)
    # Like gates.yaml: look at the raw data too, so schema and file/env problems come in one list.
    problems = target_problems(data, lines, shown, folder=path.resolve().parent)
    try:
        target = _validate(Target, data, lines, shown)
    except ConfigError as exc:
        raise ConfigError(sorted(exc.problems + problems, key=_by_line)) from None
    if problems:
        raise ConfigError(problems)
    return LoadedTarget(target=target, path=path.resolve())


def target_problems(data: Any, lines: LineIndex, shown: str, *, folder: Path) -> list[Problem]:
    """Problems a valid schema cannot see: missing files, unset secret variables."""
    problems: list[Problem] = []
    if not isinstance(data, dict):
        return problems
    scenarios = data.get("scenarios")
    # A path the OS cannot take is the schema's problem (RelativePath); resolve() would raise on it.
    if isinstance(scenarios, str) and scenarios and not _os_path_problem(scenarios) and not (folder / scenarios).resolve().is_dir():
        problems.append(
            Problem(
                shown,
                lines.line(("scenarios",)),
                "scenarios",
                f"folder {(folder / scenarios).resolve()} does not exist",
                "point it at the folder of scenario files, relative to the target file",
            )
        )
    tls, auth = data.get("tls"), data.get("auth")
    ca_bundle = tls.get("ca_bundle") if isinstance(tls, dict) else None
    if (
        isinstance(ca_bundle, str)
        and ca_bundle
        and not _os_path_problem(ca_bundle)
        and not (bundle := (folder / ca_bundle).resolve()).is_file()
    ):
        problems.append(
            Problem(
                shown,
                lines.line(("tls", "ca_bundle")),
                "tls.ca_bundle",
                f"file {bundle} does not exist",
                "point it at a PEM file, relative to the target file",
            )
        )
    if isinstance(auth, dict):
        for key in ("token_env", "second_token_env", "expired_token_env"):
            env = auth.get(key)
            if isinstance(env, str) and _is_env_name(env):
                problem = _token_problem(env, os.environ.get(env), data.get("base_url"))
                if problem is not None:
                    message, fix = problem
                    problems.append(Problem(shown, lines.line(("auth", key)), f"auth.{key}", message, fix))
        login = auth.get("login")
        for key in ("username_env", "password_env"):
            env = login.get(key) if isinstance(login, dict) else None
            if isinstance(env, str) and _is_env_name(env) and not os.environ.get(env):
                problems.append(
                    Problem(
                        shown,
                        lines.line(("auth", "login", key)),
                        f"auth.login.{key}",
                        f"environment variable {env} is not set or empty",
                        f"export {env}=... before running the gate",
                    )
                )
    backups = data.get("backups")
    for index, source in enumerate(backups if isinstance(backups, list) else []):
        server = source.get("restore_server") if isinstance(source, dict) else None
        env = server.get("password_env") if isinstance(server, dict) else None
        if isinstance(env, str) and _is_env_name(env):
            password = os.environ.get(env)
            if password and len(password) >= MIN_SECRET_LENGTH:
                continue
            # Short values are not redacted (they would match ordinary words): refuse, never print.
            message = (
                f"environment variable {env} is not set or empty"
                if not password
                else f"the password in {env} is shorter than {MIN_SECRET_LENGTH} characters and could not be redacted from reports"
            )
            where = ("backups", index, "restore_server", "password_env")
            problems.append(
                Problem(
                    shown,
                    lines.line(where),
                    dotted(where),
                    message,
                    f"export {env}=<the restore user's password> before running the gate, or drop password_env for peer or trust auth",
                )
            )
    return problems


def _token_problem(env: str, token: str | None, base_url: Any) -> tuple[str, str] | None:
    """What is wrong with the token in ``env`` (never quoting it), or None."""
    if not token:
        return f"environment variable {env} is not set or empty", f"export {env}=<token> before running the gate"
    if len(token) < MIN_SECRET_LENGTH:
        # Redaction ignores values this short (they would match ordinary words), so such a
        # token would be printed in clear: refuse it rather than leak it.
        return (
            f"the token in {env} is shorter than {MIN_SECRET_LENGTH} characters and could not be redacted from reports",
            f"use a real bearer token in {env}",
        )
    if token != token.strip() or any(ch.isspace() or not ch.isprintable() for ch in token):
        return f"the token in {env} contains whitespace or control characters (a stray newline?)", f"export {env} without them"
    if isinstance(base_url, str):
        try:
            parts = urlsplit(base_url)
        except ValueError:  # "http://[": the schema reports base_url itself; raw data must not crash the loader
            return None
        if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
            return (
                f"base_url is plain http:// to {parts.hostname}: the token in {env} would cross the network in clear",
                "use an https:// base_url, or drop auth.token_env for this target",
            )
    return None


def load_gates(path: Path | None, *, today: date | None = None, strict_waivers: bool = False) -> LoadedGates:
    """Parse gates.yaml (``None``: built-in defaults).

    ``strict_waivers`` (used by ``releasegate validate``) also reports expired waivers; a gate
    run keeps going and simply stops honouring them.
    """
    if path is None:
        return LoadedGates(gates=Gates(), path=None, lines=LineIndex({}))
    data, lines = load_yaml(path)
    if data is None:
        data = {}
    shown = str(path)
    # Semantic problems are looked for in the raw data too, so one `validate` lists them
    # together with the schema problems instead of one round-trip per fix.
    problems = gates_problems(data, lines, shown, today=today or date.today(), strict_waivers=strict_waivers)
    problems += _tls_profile_problems(data, lines, shown, folder=path.resolve().parent)
    try:
        gates = _validate(Gates, data, lines, shown)
    except ConfigError as exc:
        raise ConfigError(sorted(exc.problems + problems, key=_by_line)) from None
    if problems:
        raise ConfigError(problems)
    return LoadedGates(gates=gates, path=path.resolve(), lines=lines)


def with_deadline(loaded: LoadedGates, deadline_s: float, *, source: str = "--deadline") -> LoadedGates:
    """``loaded`` with the whole-run deadline replaced (``run --deadline S``), held to gates.yaml's own bounds.

    The flag wins over ``deadline_s`` for this run only; a value the policy file could not hold
    either (not a positive finite number, or too short for one probe) is a configuration error.
    """
    gates = loaded.gates
    floor = gates.probe.timeout_s + gates.probe.retry.timeout_s
    maximum = MAX_DEADLINE_S
    message: str | None = None
    if not math.isfinite(deadline_s) or deadline_s <= 0:
        message = f"{deadline_s:g} is not a positive number of seconds"
    elif deadline_s > maximum:
        message = f"{deadline_s:g} s is over the limit of {maximum:g} s"
    elif deadline_s < floor:
        message = (
            f"{deadline_s:g} s is shorter than probe.timeout_s + probe.retry.timeout_s ({floor:g} s) of "
            f"{loaded.path or 'the built-in policy'}: no check could finish"
        )
    if message is not None:
        fix = f"pass a number of seconds between {floor:g} and {maximum:g}, e.g. {source} 300"
        raise ConfigError([Problem(source, None, "", message, fix)])
    return dataclasses.replace(loaded, gates=gates.model_copy(update={"deadline_s": float(deadline_s)}))


def _by_line(problem: Problem) -> int:
    return problem.line or 0


MOZILLA_PROFILES = ("intermediate", "modern", "old")


def _tls_profile_problems(data: Any, lines: LineIndex, shown: str, *, folder: Path) -> list[Problem]:
    """thresholds.security.tls_profile: a Mozilla profile name or a JSON file next to gates.yaml."""
    thresholds = data.get("thresholds") if isinstance(data, dict) else None
    security = thresholds.get("security") if isinstance(thresholds, dict) else None
    spec = security.get("tls_profile") if isinstance(security, dict) else None
    if not isinstance(spec, str) or spec in MOZILLA_PROFILES or (folder / spec).is_file():
        return []
    return [
        Problem(
            shown,
            lines.line(("thresholds", "security", "tls_profile")),
            "thresholds.security.tls_profile",
            f"'{spec}' is neither a Mozilla profile nor a file next to this gates.yaml",
            f"use one of {', '.join(MOZILLA_PROFILES)}, or the path of a profile JSON relative to this file",
        )
    ]


def gates_problems(data: Any, lines: LineIndex, shown: str, *, today: date, strict_waivers: bool) -> list[Problem]:
    """Problems beyond the schema: ids and globs that select no registered check, expired waivers."""
    problems: list[Problem] = []
    if not isinstance(data, dict):
        return problems

    def unknown(pattern: Any, path: YamlPath) -> None:
        if isinstance(pattern, str) and pattern and not registry.select(pattern):
            close = difflib.get_close_matches(pattern, registry.ids(), n=1)
            hint = f"did you mean '{close[0]}'?" if close else "run `releasegate checks` for the registered ids"
            problems.append(Problem(shown, lines.line(path), dotted(path), f"'{pattern}' matches no registered check", hint))

    for key in ("severity", "min_samples"):
        mapping = data.get(key)
        if isinstance(mapping, dict):
            for pattern in mapping:
                unknown(pattern, (key, str(pattern)))
    required = data.get("required")
    if isinstance(required, list):
        for index, pattern in enumerate(required):
            unknown(pattern, ("required", index))
    waivers = data.get("waivers")
    if isinstance(waivers, list):
        for index, waiver in enumerate(waivers):
            if not isinstance(waiver, dict):
                continue
            unknown(waiver.get("check"), ("waivers", index, "check"))
            expires = _as_date(waiver.get("expires"))
            if strict_waivers and expires is not None and expires < today:
                problems.append(
                    Problem(
                        shown,
                        lines.line(("waivers", index, "expires")),
                        f"waivers[{index}].expires",
                        f"waiver for '{waiver.get('check')}' expired on {expires.isoformat()} and no longer applies",
                        "fix the check, or renew the waiver with a new justification and date, or remove it",
                    )
                )
    return problems


def _as_date(value: Any) -> date | None:
    """The date the schema will see: YAML gives a date, a datetime or (quoted) a string."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


M = typing.TypeVar("M", bound=BaseModel)


def validate_model(model: type[M], data: Any, lines: LineIndex, shown: str) -> M:
    """``data`` (from :func:`~releasegate._yaml.load_yaml`) as ``model``; every problem as one
    ConfigError naming file:line, key and fix. For other YAML files of the suite (scenarios)."""
    return _validate(model, data, lines, shown)


def _validate(model: type[M], data: Any, lines: LineIndex, shown: str) -> M:
    if not isinstance(data, dict):
        raise ConfigError(
            [
                Problem(
                    shown, lines.line(()), "", "the file must be a YAML mapping of keys to values", "start the file with `key: value` lines"
                )
            ]
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_problem(model, err, lines, shown) for err in exc.errors()]) from None


def _problem(model: type[BaseModel], err: Any, lines: LineIndex, shown: str) -> Problem:
    loc: YamlPath = tuple(part for part in err["loc"] if isinstance(part, (str, int)))
    key = dotted(loc)
    line = lines.line(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        fix = f"did you mean '{close[0]}'?" if close else f"remove it; allowed here: {', '.join(allowed)}"
        return Problem(shown, line, key, "unknown key", fix)
    if kind == "missing":
        return Problem(shown, line, key, "required key is missing", f"add `{loc[-1]}:` here")
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return Problem(shown, line, key, f"invalid value {err.get('input')!r}", f"use one of {expected}")
    message = err["msg"].removeprefix("Value error, ")
    value = err.get("input")
    if kind == "value_error" and isinstance(value, dict):
        # A rule across fields (model validator) starts its message with the field to change;
        # point at that key rather than at the enclosing mapping.
        field = message.split(" ", 1)[0]
        if field in _allowed_keys(model, loc):
            loc = (*loc, field)
            key, line, value = dotted(loc), lines.line(loc), value.get(field, "the default")
            return Problem(shown, line, key, f"{message} (got {_short(value)})", f"change the value: {message}")
    # A token pasted where its variable's name belongs must not be echoed into logs.
    # (And credentials written into a URL, user:pass@host.)
    secret = bool(loc) and (loc[-1] == "token_env" or (isinstance(value, str) and "@" in value and "://" in value))
    got = "the value is not shown: it may be a secret" if secret else f"got {_short(value)}"
    return Problem(shown, line, key, f"{message} ({got})", _fix_for(kind, err.get("ctx") or {}, message))


_BOUND_WORDS = {"greater_than": "greater than", "greater_than_equal": "at least", "less_than": "less than", "less_than_equal": "at most"}
_BOUND_CTX = {"greater_than": "gt", "greater_than_equal": "ge", "less_than": "lt", "less_than_equal": "le"}


def _fix_for(kind: str, ctx: dict[str, Any], message: str) -> str:
    if kind in _BOUND_WORDS:
        return f"use a number {_BOUND_WORDS[kind]} {ctx.get(_BOUND_CTX[kind])}"
    if kind.startswith("date"):
        return "write a date as YYYY-MM-DD"
    if kind == "string_too_short":
        return f"write at least {ctx.get('min_length')} characters"
    if kind == "model_type":
        return "write a mapping: `key: value` lines indented under this key"
    if kind.endswith(("_type", "_parsing")):
        return "write " + message.removeprefix("Input should be ")
    if kind == "value_error":
        return "change the value: it " + message
    return "see the comment on this key in the shipped gates.yaml / targets/staging.example.yaml"


def _short(value: Any) -> str:
    # Masked before it is cut: a cut could leave "user:passw" without the @ that marks it.
    text = mask_userinfo_passwords(repr(value))
    return text if len(text) <= 60 else text[:57] + "..."


def _allowed_keys(model: type[BaseModel], path: YamlPath) -> list[str]:
    """Field names of the model found at ``path`` inside ``model`` (best effort)."""
    current: Any = model
    for part in path:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel) and isinstance(part, str) and part in current.model_fields:
            current = current.model_fields[part].annotation
        elif typing.get_origin(current) in (list, dict):
            current = typing.get_args(current)[-1]
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation
