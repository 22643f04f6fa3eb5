"""``releasegate demo``: run the reference deployment on loopback and gate it.

The service is started exactly as a user would run a deployment: it gets its own data folder,
TLS from a freshly generated local CA, and a target file describing it. The gate then talks
to it over the network only, through the same ``releasegate run`` as for any deployment.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import ssl
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from releasegate.reference import faults as fault_catalog
from releasegate.reference.backups import write_demo_backup
from releasegate.reference.settings import DEFAULT_RELEASE, ServiceSettings

TOKEN_ENV = "RELEASEGATE_DEMO_TOKEN"
SECOND_TOKEN_ENV = "RELEASEGATE_DEMO_TOKEN_2"
EXPIRED_TOKEN_ENV = "RELEASEGATE_DEMO_EXPIRED_TOKEN"
USER_ENV = "RELEASEGATE_DEMO_USER"
PASSWORD_ENV = "RELEASEGATE_DEMO_PASSWORD"
BACKUP_FOLDER = "backups"  # in the data folder: where the demo's backup of the store is written
DEMO_ENVS = (TOKEN_ENV, SECOND_TOKEN_ENV, EXPIRED_TOKEN_ENV, USER_ENV, PASSWORD_ENV)
# The reference service is ready as soon as it answers, so the demo's convergence window is
# short; a real deployment keeps gates.yaml's 30 s.
DEMO_GATES = """\
# Policy of `releasegate demo`: the shipped gates.yaml, with a short convergence window
# because the reference deployment is ready the moment it answers.
probe:
  timeout_s: 5
  retry: {timeout_s: 2, interval_s: 0.5, max_interval_s: 1}
thresholds:
  # The reference answers /api in ~3 ms (p95 under ~10 ms on a busy 2-core machine); its
  # latency objective is 200 ms, so fault slow-api (+300 ms) breaks it.
  slo: {p95_ms: 200}
  # The reference's clients: the oldest still in use is 1.2.0 (fault unsupported-client drops it).
  readiness: {oldest_client_version: "1.2.0"}
  # The restore drill asks the restored copy what any backup of the reference must hold.
  backup:
    sanity_queries:
      - name: application tables
        sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('conversations', 'participants', 'messages', 'tool_runs')"
        min_rows: 4
      - {name: first migration recorded, sql: "SELECT name FROM schema_migrations WHERE version = 1", equals: "0001_initial"}
load:
  # The same objective under the smoke profile, which makes ~50 HTTP requests in 7 s.
  thresholds: {http_p95_ms: "<200", fail_ratio: "<0.01", sync_p95_ms: "<250"}
  min_requests: 30
"""


# `releasegate demo --canary`: the demo policy plus a fast canary (4 looks of 2.5 s). Two healthy
# instances on one machine differ by noise (one may be a little busier at times: on a loaded
# 2-core host a 2 ms sync round trip on one side was 3 ms on the other, ratio 1.46), so latencies
# may be 20 % or 25 ms apart before they can fail; slow-api (+300 ms) and slow-sync (+400 ms) are far
# beyond that, error-burst's 30 % of 500s against none is beyond any allowed ratio. min_samples is
# what one interval collects (the target's requests_per_interval and sync_round_trips), so the
# first look can already roll back; a healthy canary passes the error metric only at the last look
# (no errors on either side can never show a ratio bounded within 1.5 earlier).
CANARY_POLICY = """\
canary:
  interval_s: 2.5
  max_intervals: 4
  metrics:
    - {name: http_latency, kind: latency, probe: http_latency, allowed_increase: 1.2, allowed_increase_ms: 25,
       critical: true, weight: 40, min_samples: 40}
    - {name: http_errors, kind: rate, probe: http_errors, allowed_increase: 1.5, critical: true, weight: 40, min_samples: 40}
    - {name: sync_latency, kind: latency, probe: sync_latency, allowed_increase: 1.2, allowed_increase_ms: 25,
       critical: true, weight: 20, min_samples: 20}
"""
CANARY_GATES = DEMO_GATES + CANARY_POLICY
# Per side per interval, under the reference's rate limits (per instance: 20 requests/s per user,
# 30 per IP; 50 WebSocket messages/s): 40 GETs in 2.5 s is 16/s, 20 round trips 8 messages/s.
CANARY_REQUESTS_PER_INTERVAL = 40
CANARY_SYNC_ROUND_TRIPS = 20


@dataclass(frozen=True)
class DemoDeployment:
    """A running reference deployment and the files that describe it."""

    target_path: Path
    gates_path: Path
    token_path: Path
    env_path: Path  # every secret the target names, as `export NAME=value` lines (mode 0600)
    data_dir: Path


def unknown_faults(names: Sequence[str]) -> list[str]:
    return [name for name in names if name not in fault_catalog.NAMES]


# The post-deploy business part of the demo target: how the reference service's conversations,
# sync protocol, read endpoints and dependencies look to the gate. ${...} are the gate's own
# variables (filled in at run time), not Python's.
BUSINESS_SECTIONS = """\
sync:
  setup: shared_conversation
  url: "${ws_url}?conversation=${conversation_id}"
  actions:
    message: {type: message, text: "releasegate sync ${nonce}"}
    typing: {type: typing, typing: true, nonce: "${nonce}"}
    presence: {type: presence, status: online, nonce: "${nonce}"}
    edit: {type: edit, doc: main.py, text: "marker = '${nonce}'", nonce: "${nonce}"}
  latency_action: edit
  identities: [primary, second]
consistency:
  write: post_marker
  reads:
    - {url: "/api/v1/conversations/${conversation_id}/messages", as: primary}
    - {url: "/api/v1/conversations/${conversation_id}/messages", as: second}
slo: {paths: [/api/v1/me, /api/v1/conversations], requests: 40, window_s: 2.5}
integrations:
  - {name: database, component: "db:responseTime"}
  - {name: suggestion cache, component: "cache:utilization"}
  - {name: model backend, component: "model:responseTime"}
  - {name: metrics endpoint, url: /metrics}
load:
  profiles: [smoke]
  identities: [primary, second]
  metrics: /metrics
  # Sized as a 200m-CPU replica: healthy smoke uses ~0.035 core (~18 %), cpu-hog ~0.25-0.3 (120-150 %).
  cores_per_replica: 0.2
"""


def target_text(service: RunningServiceLike, settings: ServiceSettings, *, expected_release: str, scenarios: Path | None = None) -> str:
    """The target file of a running reference service (``scenarios``: the suite's scenario folder)."""
    business = "" if scenarios is None else f"scenarios: {scenarios}\n" + BUSINESS_SECTIONS
    return (
        f"""\
# Written by `releasegate demo`: the reference deployment running on loopback.
name: reference-demo
base_url: {service.base_url}
http_url: {service.http_url}
ws_url: {service.ws_url}
websocket: {{max_message_bytes: {settings.ws_max_message_bytes}, max_connections_per_user: {settings.ws_max_connections_per_user}}}
tls: {{ca_bundle: {service.ca_path}}}
auth:
  token_env: {TOKEN_ENV}
  second_token_env: {SECOND_TOKEN_ENV}
  expired_token_env: {EXPIRED_TOKEN_ENV}
  login: {{path: /api/v1/auth/login, username_env: {USER_ENV}, password_env: {PASSWORD_ENV}}}
  protected: [/api/v1/me, /api/v1/conversations]
health: {{liveness: /healthz, readiness: /readyz, deep: /health, version: /version}}
expected_release: "{expected_release}"
rate_limit: {{path: /api/v1/me, max_probe_requests: 40, endpoint_path: /api/v1/auth/login, other_path: /api/v1/me}}
limits: {{body_path: /api/v1/conversations, max_body_bytes: {settings.max_body_bytes}, max_header_bytes: {settings.max_header_bytes}}}
rollback: {{previous_artifact_url: "{service.base_url}/releases/{settings.previous_release_id}/manifest"}}
backups: [{{name: store, kind: sqlite, path: {json.dumps(str(settings.data_dir / BACKUP_FOLDER))}}}]
"""
        + business
    )


def _suite_scenarios() -> Path | None:
    """The gate suite's scenarios/ folder (written for the reference service), if a suite is found."""
    from releasegate._exceptions import ConfigError
    from releasegate.suite import find_suite

    try:
        folder = find_suite() / "scenarios"
    except ConfigError:
        return None
    return folder if folder.is_dir() else None


class RunningServiceLike(Protocol):
    base_url: str
    http_url: str
    ws_url: str
    ca_path: Path


@dataclass
class _Endpoints:
    """A service's URLs with another trust anchor file (the canary pair's CA bundle)."""

    base_url: str
    http_url: str
    ws_url: str
    ca_path: Path


def login(base_url: str, ca_path: Path, username: str, password: str, *, timeout_s: float = 10.0, verify: bool = True) -> str:
    """A fresh bearer token from the service's own login endpoint.

    ``verify=False`` only for the demo's own loopback service started with a certificate fault
    (expired, wrong host): the gate must see that certificate, the demo must still log in.
    """
    context = ssl.create_default_context(cafile=str(ca_path))
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(
        base_url + "/api/v1/auth/login",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout_s, context=context) as response:  # noqa: S310 - loopback https only
        return str(json.load(response)["access_token"])


def expired_token(settings: ServiceSettings, username: str) -> str:
    """A really expired token: the service's own signature, issued two hours ago, expired one hour ago.

    The demo knows the service's secret because it started the service; with it the gate can
    prove that expiry itself is enforced (a tampered token only proves signatures are checked).
    """
    import jwt

    from releasegate.reference.auth import ISSUER

    now = int(time.time())
    claims = {"iss": ISSUER, "sub": username, "iat": now - 7200, "exp": now - 3600, "jti": secrets.token_hex(8)}
    return str(jwt.encode(claims, settings.jwt_secret, algorithm="HS256"))


def _export_secrets(settings: ServiceSettings, base_url: str, ca_path: Path, folder: Path, *, verify: bool) -> tuple[Path, Path]:
    """Log both users in, put every secret the target names in this process's environment and in
    0600 files in ``folder``; returns (token file, demo.env). The caller restores the environment."""
    (username, password), (second_user, second_password) = settings.users[0], settings.users[1]
    token = login(base_url, ca_path, username, password, verify=verify)
    os.environ[TOKEN_ENV] = token
    os.environ[SECOND_TOKEN_ENV] = login(base_url, ca_path, second_user, second_password, verify=verify)
    os.environ[USER_ENV], os.environ[PASSWORD_ENV] = username, password
    os.environ[EXPIRED_TOKEN_ENV] = expired_token(settings, username)
    token_path = folder / "token"
    token_path.touch(mode=0o600)
    token_path.write_text(token + "\n", encoding="utf-8")
    env_path = folder / "demo.env"
    env_path.touch(mode=0o600)
    env_path.write_text("".join(f"export {name}={shlex.quote(os.environ[name])}\n" for name in DEMO_ENVS), encoding="utf-8")
    return token_path, env_path


def _restore(previous: dict[str, str | None]) -> None:
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@contextmanager
def running(faults: Sequence[str] = (), *, data_dir: Path | None = None) -> Iterator[DemoDeployment]:
    """Start the reference deployment with ``faults``; yield its target; stop and clean up.

    The token is placed in this process's environment under :data:`TOKEN_ENV` (the gate
    reads it from there) and in a 0600 file for a person who wants to export it.
    """
    from releasegate.reference import server

    owned = data_dir is None
    folder = Path(tempfile.mkdtemp(prefix="releasegate-demo-")) if data_dir is None else data_dir
    folder.mkdir(parents=True, exist_ok=True)
    settings = ServiceSettings(data_dir=folder, faults=frozenset(faults))
    previous = {name: os.environ.get(name) for name in DEMO_ENVS}
    try:
        with server.start(settings) as service:
            verify = not any(name.startswith("cert-") for name in settings.faults)
            token_path, env_path = _export_secrets(settings, service.base_url, service.ca_path, folder, verify=verify)
            # The store is open and migrated once the service answers: back it up as a backup job would.
            write_demo_backup(folder / "service.db", folder / BACKUP_FOLDER, settings.faults)
            target_path = folder / "target.yaml"
            text = target_text(service, settings, expected_release=DEFAULT_RELEASE, scenarios=_suite_scenarios())
            target_path.write_text(text, encoding="utf-8")
            gates_path = folder / "gates.yaml"
            gates_path.write_text(DEMO_GATES, encoding="utf-8")
            yield DemoDeployment(target_path=target_path, gates_path=gates_path, token_path=token_path, env_path=env_path, data_dir=folder)
    finally:
        _restore(previous)
        if owned:
            shutil.rmtree(folder, ignore_errors=True)


def canary_section(baseline: RunningServiceLike, canary: RunningServiceLike) -> str:
    """The target's canary section for a baseline and a canary reference service."""
    return f"""\
canary:
  baseline_url: {baseline.base_url}
  canary_url: {canary.base_url}
  baseline_ws_url: {baseline.ws_url}
  canary_ws_url: {canary.ws_url}
  paths: [/api/v1/me, /api/v1/conversations]
  requests_per_interval: {CANARY_REQUESTS_PER_INTERVAL}
  sync_round_trips: {CANARY_SYNC_ROUND_TRIPS}
"""


@contextmanager
def running_canary(faults: Sequence[str] = (), *, data_dir: Path | None = None) -> Iterator[DemoDeployment]:
    """Start a healthy baseline and a canary with ``faults``; yield the canary's target; stop both and clean up.

    Both instances share one JWT secret and the same users, so the tokens (issued by the
    baseline, which never has a fault) work on both; the target trusts one CA bundle holding
    both instances' CAs. The target is what :func:`running` writes for the canary instance
    (base_url = the canary) plus a ``canary:`` section naming both sides; the gates file is the
    demo policy with a fast canary (:data:`CANARY_GATES`). Environment as :func:`running`.
    """
    from releasegate.reference import server

    owned = data_dir is None
    folder = Path(tempfile.mkdtemp(prefix="releasegate-canary-demo-")) if data_dir is None else data_dir
    folder.mkdir(parents=True, exist_ok=True)
    baseline_settings = ServiceSettings(data_dir=folder / "baseline")
    # replace() keeps every other field, the generated jwt_secret included: one token, both sides.
    canary_settings = replace(baseline_settings, data_dir=folder / "canary", faults=frozenset(faults))
    previous = {name: os.environ.get(name) for name in DEMO_ENVS}
    try:
        with ExitStack() as stack:
            baseline = stack.enter_context(server.start(baseline_settings))
            canary = stack.enter_context(server.start(canary_settings))
            bundle = folder / "ca-bundle.pem"
            bundle.write_text(baseline.ca_path.read_text(encoding="utf-8") + canary.ca_path.read_text(encoding="utf-8"), encoding="utf-8")
            token_path, env_path = _export_secrets(baseline_settings, baseline.base_url, baseline.ca_path, folder, verify=True)
            sides = _Endpoints(canary.base_url, canary.http_url, canary.ws_url, bundle)
            text = target_text(sides, canary_settings, expected_release=DEFAULT_RELEASE, scenarios=_suite_scenarios())
            target_path = folder / "target.yaml"
            target_path.write_text(text + canary_section(baseline, canary), encoding="utf-8")
            gates_path = folder / "gates.yaml"
            gates_path.write_text(CANARY_GATES, encoding="utf-8")
            yield DemoDeployment(target_path=target_path, gates_path=gates_path, token_path=token_path, env_path=env_path, data_dir=folder)
    finally:
        _restore(previous)
        if owned:
            shutil.rmtree(folder, ignore_errors=True)
