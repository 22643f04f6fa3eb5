"""Reference deployments for the SLO tests, and the target files that describe them.

Several run side by side (a healthy one, one with error-burst, one with slow-api at +100 ms), so
they are started with ``server.start`` rather than ``demo.running`` (which owns the demo's
token variables): each gets its own token variable and writes its own target files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from releasegate.reference import server
from releasegate.reference.demo import login
from releasegate.reference.settings import ServiceSettings

# Below the reference's per-user limit (20 req/s), so the window is not throttled into noise.
SLO_PLAN = "{paths: [/api/v1/me, /api/v1/conversations], requests: 40, window_s: 2.5}"
SLOW_API_MS = 100


@dataclass(frozen=True)
class Reference:
    """A running reference service and the variable holding its token."""

    name: str
    service: server.RunningService
    token_env: str

    @property
    def token(self) -> str:
        return os.environ[self.token_env]

    @property
    def host_port(self) -> str:
        return self.service.base_url.removeprefix("https://")

    def write_target(self, folder: Path, *, slo: str | None = SLO_PLAN, prometheus: str | None = None) -> Path:
        """A target file for this service (``prometheus``: the flow mapping of the target's prometheus key)."""
        folder.mkdir(parents=True, exist_ok=True)
        lines = [
            f"name: {self.name}",
            f"base_url: {self.service.base_url}",
            f"tls: {{ca_bundle: {self.service.ca_path}}}",
            f"auth: {{token_env: {self.token_env}}}",
        ]
        if slo is not None:
            lines.append(f"slo: {slo}")
        if prometheus is not None:
            lines.append(f"prometheus: {prometheus}")
        path = folder / f"{self.name}.yaml"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path


def start(name: str, settings: ServiceSettings) -> Iterator[Reference]:
    env = f"RELEASEGATE_SLO_TOKEN_{name.upper().replace('-', '_')}"
    with server.start(settings) as service, pytest.MonkeyPatch.context() as patch:
        username, password = settings.users[0]
        patch.setenv(env, login(service.base_url, service.ca_path, username, password))
        yield Reference(name, service, env)
