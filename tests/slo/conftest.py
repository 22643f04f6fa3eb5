"""Session fixtures of the SLO tests: each reference deployment is started once, on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from slo_reference import SLOW_API_MS, Reference, start

from releasegate.reference.settings import ServiceSettings


@pytest.fixture(scope="session")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    yield from start("healthy", ServiceSettings(data_dir=tmp_path_factory.mktemp("healthy")))


@pytest.fixture(scope="session")
def error_burst(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    settings = ServiceSettings(data_dir=tmp_path_factory.mktemp("error-burst"), faults=frozenset({"error-burst"}))
    yield from start("error-burst", settings)


@pytest.fixture(scope="session")
def slow_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    """slow-api at +100 ms (the fault's default is +300 ms): the shift the latency test measures."""
    settings = ServiceSettings(data_dir=tmp_path_factory.mktemp("slow-api"), faults=frozenset({"slow-api"}), slow_api_ms=SLOW_API_MS)
    yield from start("slow-api", settings)
