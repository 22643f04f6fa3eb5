"""Fault no-endpoint-rate-limit of the reference deployment: log-in loses its own limit and nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from starlette.testclient import TestClient

from releasegate.reference.app import create_app
from releasegate.reference.settings import RateLimit, ServiceSettings

BOGUS = {"username": "nobody", "password": "wrong"}


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@contextmanager
def service(tmp_path: Path, *faults: str) -> Iterator[TestClient]:
    settings = replace(
        ServiceSettings(data_dir=tmp_path, faults=frozenset(faults)),
        rate_limit_ip=RateLimit(rate=1.0, burst=6),
        rate_limit_user=RateLimit(rate=1.0, burst=3),
        rate_limit_login=RateLimit(rate=1.0, burst=2),
    )
    with TestClient(create_app(settings, mono=FakeClock()), base_url="https://localhost") as client:
        yield client


def test_healthy_login_has_its_own_limit_below_the_ip_limit(tmp_path: Path) -> None:
    with service(tmp_path) as client:
        statuses = [client.post("/api/v1/auth/login", json=BOGUS).status_code for _ in range(3)]
        refused = client.post("/api/v1/auth/login", json=BOGUS)
        other = client.get("/api/v1/me")
    assert statuses == [401, 401, 429]
    assert refused.headers["ratelimit"].startswith('"login";r=0')
    assert other.status_code == 401  # the rest of the API still answers: the address has IP quota left


def test_fault_removes_the_login_limit_so_only_the_shared_ip_limit_stops_a_burst(tmp_path: Path) -> None:
    with service(tmp_path, "no-endpoint-rate-limit") as client:
        statuses = [client.post("/api/v1/auth/login", json=BOGUS).status_code for _ in range(7)]
        other = client.get("/api/v1/me")
    assert statuses == [401] * 6 + [429]
    assert other.status_code == 429  # the other endpoint is refused too: one limit for the whole address
    assert "login" not in other.headers["ratelimit-policy"]


def test_fault_leaves_the_per_user_limit_and_log_in_itself_alone(tmp_path: Path) -> None:
    with service(tmp_path, "no-endpoint-rate-limit") as client:
        login = client.post("/api/v1/auth/login", json={"username": "alice", "password": "alice-demo-password"})
        assert login.status_code == 200
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        statuses = [client.get("/api/v1/me", headers=auth).status_code for _ in range(4)]
        refused = client.get("/api/v1/me", headers=auth)
    assert statuses == [200, 200, 200, 429]
    assert refused.headers["ratelimit"].startswith('"user";r=0')
