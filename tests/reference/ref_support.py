"""Helpers for the reference service's own tests: settings, a logged-in client, a fake clock, a real uvicorn.

Not a conftest.py on purpose: other suites share tests/reference/, and plain functions keep each
test's setup visible where it is used.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.testclient import TestClient

from releasegate.reference.app import create_app
from releasegate.reference.settings import ServiceSettings

PASSWORDS = dict(ServiceSettings(data_dir=Path(".")).users)
BASE_URL = "https://localhost"  # https, so the app sees what it sees behind TLS


@dataclass
class FakeClock:
    """A monotonic clock the test moves by hand: token buckets refill only when told to."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_settings(data_dir: Path, *faults: str, **overrides: Any) -> ServiceSettings:
    return replace(ServiceSettings(data_dir=data_dir, faults=frozenset(faults)), **overrides)


@contextmanager
def running(settings: ServiceSettings, **clocks: Any) -> Iterator[TestClient]:
    """A started instance (lifespan run) behind a TestClient; stopped again on exit."""
    app = create_app(settings, **clocks)
    with TestClient(app, base_url=BASE_URL) as client:
        yield client


def login(client: TestClient, user: str = "alice") -> dict[str, str]:
    """Authorization headers for ``user``."""
    response = client.post("/api/v1/auth/login", json={"username": user, "password": PASSWORDS[user]})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def conversation(client: TestClient, auth: dict[str, str], *others: str, title: str = "pairing") -> str:
    """A new conversation owned by ``auth``'s user with ``others`` added; its id."""
    response = client.post("/api/v1/conversations", json={"title": title}, headers=auth)
    assert response.status_code == 201, response.text
    cid: str = response.json()["id"]
    for user in others:
        added = client.post(f"/api/v1/conversations/{cid}/participants", json={"username": user}, headers=auth)
        assert added.status_code == 200, added.text
    return cid


def wait_for(predicate: Any, timeout_s: float = 5.0) -> Any:
    """Poll ``predicate`` until it returns something truthy (bounded: a broken service fails, not hangs)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(0.01)


@contextmanager
def uvicorn_server(app: Starlette) -> Iterator[int]:
    """Serve ``app`` with a real uvicorn on 127.0.0.1, port 0, plain HTTP; yields the port.

    Configured like the runner must configure it: no Server header, and an h11 event limit above
    the app's header limit so that oversized headers reach the app (431) instead of h11 (400).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_level="warning",
        server_header=False,
        ws="websockets-sansio",
        h11_max_incomplete_event_size=256 * 1024,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), timeout_s=10)
        assert server.started, "uvicorn did not start"
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
