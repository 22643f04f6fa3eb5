"""``releasegate demo``: run the reference deployment on loopback and gate it.

The service is started exactly as a user would run a deployment: it gets its own data folder,
TLS from a freshly generated local CA, and a target file describing it. The gate then talks
to it over the network only, through the same ``releasegate run`` as for any deployment.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import tempfile
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from releasegate.reference import faults as fault_catalog
from releasegate.reference.settings import DEFAULT_RELEASE, ServiceSettings

TOKEN_ENV = "RELEASEGATE_DEMO_TOKEN"
# The reference service is ready as soon as it answers, so the demo's convergence window is
# short; a real deployment keeps gates.yaml's 30 s.
DEMO_GATES = """\
# Policy of `releasegate demo`: the shipped gates.yaml, with a short convergence window
# because the reference deployment is ready the moment it answers.
probe:
  timeout_s: 5
  retry: {timeout_s: 2, interval_s: 0.5, max_interval_s: 1}
"""


@dataclass(frozen=True)
class DemoDeployment:
    """A running reference deployment and the files that describe it."""

    target_path: Path
    gates_path: Path
    token_path: Path
    data_dir: Path


def unknown_faults(names: Sequence[str]) -> list[str]:
    return [name for name in names if name not in fault_catalog.NAMES]


def target_text(base_url: str, ws_url: str, http_url: str, ca_path: Path, *, expected_release: str) -> str:
    """The target file of a running reference service (paths relative to the file's folder)."""
    return f"""\
# Written by `releasegate demo`: the reference deployment running on loopback.
name: reference-demo
base_url: {base_url}
ws_url: {ws_url}
tls: {{ca_bundle: {ca_path}}}
auth: {{token_env: {TOKEN_ENV}}}
health: {{liveness: /healthz, readiness: /readyz, deep: /health, version: /version}}
expected_release: "{expected_release}"
rate_limit: {{path: /api/v1/conversations, max_probe_requests: 40}}
limits: {{body_path: /api/v1/conversations, max_body_bytes: 1048576}}
# plain-HTTP port of the same service (redirects to HTTPS): {http_url}
"""


def login(base_url: str, ca_path: Path, username: str, password: str, *, timeout_s: float = 10.0) -> str:
    """A fresh bearer token from the service's own login endpoint."""
    context = ssl.create_default_context(cafile=str(ca_path))
    request = urllib.request.Request(
        base_url + "/api/v1/auth/login",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout_s, context=context) as response:  # noqa: S310 - loopback https only
        return str(json.load(response)["access_token"])


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
    previous_token = os.environ.get(TOKEN_ENV)
    try:
        with server.start(settings) as service:
            username, password = settings.users[0]
            token = login(service.base_url, service.ca_path, username, password)
            os.environ[TOKEN_ENV] = token
            token_path = folder / "token"
            token_path.touch(mode=0o600)
            token_path.write_text(token + "\n", encoding="utf-8")
            target_path = folder / "target.yaml"
            target_path.write_text(
                target_text(service.base_url, service.ws_url, service.http_url, service.ca_path, expected_release=DEFAULT_RELEASE),
                encoding="utf-8",
            )
            gates_path = folder / "gates.yaml"
            gates_path.write_text(DEMO_GATES, encoding="utf-8")
            yield DemoDeployment(target_path=target_path, gates_path=gates_path, token_path=token_path, data_dir=folder)
    finally:
        if previous_token is None:
            os.environ.pop(TOKEN_ENV, None)
        else:
            os.environ[TOKEN_ENV] = previous_token
        if owned:
            shutil.rmtree(folder, ignore_errors=True)
