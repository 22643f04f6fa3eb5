"""The reference's capacity metrics: process figures, response bytes, the in-flight budget, and fault cpu-hog."""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from ref_support import login, make_settings, running
from starlette.testclient import TestClient

from releasegate.reference.edge import CPU_HOG_S, burn_cpu
from releasegate.reference.metrics import MAX_IN_FLIGHT


def parse(text: str) -> dict[str, float]:
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def samples(client: TestClient) -> dict[str, float]:
    return parse(client.get("/metrics").text)


def test_metrics_carry_the_process_figures_of_the_whole_process(tmp_path: Path) -> None:
    with running(make_settings(tmp_path / "a")) as first, running(make_settings(tmp_path / "b")) as second:
        one, two = samples(first), samples(second)
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "process_start_time_seconds"):
        assert name in one, name
    assert one["process_resident_memory_bytes"] > 10 * 1024 * 1024
    # Two instances in one process report the same process (documented in metrics.py).
    assert one["process_start_time_seconds"] == two["process_start_time_seconds"]


def test_response_bytes_count_every_body_sent(tmp_path: Path) -> None:
    with running(make_settings(tmp_path)) as client:
        auth = login(client)
        page = client.get("/metrics")
        me = client.get("/api/v1/me", headers=auth)
        refused = client.get("/api/v1/me")  # a 401 problem document is a body sent too
        after = samples(client)["http_response_bytes_total"]
    assert me.status_code == 200 and refused.status_code == 401
    # The page's own bytes are counted once it has been sent, so they are in `after` only.
    assert after - parse(page.text)["http_response_bytes_total"] == len(page.content) + len(me.content) + len(refused.content)


def test_in_flight_budget_is_published_and_released(tmp_path: Path) -> None:
    with running(make_settings(tmp_path)) as client:
        auth = login(client)
        for _ in range(3):
            assert client.get("/api/v1/me", headers=auth).status_code == 200
        figures = samples(client)
    assert figures["api_requests_in_flight_limit"] == MAX_IN_FLIGHT
    assert figures["api_requests_in_flight"] == 0
    assert figures["api_requests_in_flight_seconds_total"] > 0


def test_api_requests_beyond_the_in_flight_budget_get_503(tmp_path: Path) -> None:
    with running(make_settings(tmp_path)) as client:
        auth = login(client)
        metrics = client.app.state.service.metrics  # type: ignore[attr-defined]
        metrics.max_in_flight = 0  # every slot taken
        refused = client.get("/api/v1/me", headers=auth)
        health = client.get("/healthz")
        limit = samples(client)["api_requests_in_flight_limit"]
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert "in flight" in refused.json()["detail"]
    assert health.status_code == 200  # only /api has the budget
    assert limit == 0


def test_burn_cpu_spends_thread_cpu_not_wall_time() -> None:
    cpu0 = time.thread_time()
    used = burn_cpu(0.03, wall_cap_s=5.0)
    assert used >= 0.03
    assert time.thread_time() - cpu0 >= 0.03


def test_burn_cpu_is_bounded_by_its_wall_cap() -> None:
    started = time.perf_counter()
    burn_cpu(60.0, wall_cap_s=0.05)
    assert time.perf_counter() - started < 5.0  # generous: the cap is 0.05 s, a loaded host may lag


def cpu_per_request(tmp_path: Path, *faults: str, requests: int = 12) -> float:
    """Process CPU seconds per GET /api/v1/me, read from the instance's own metrics."""
    with running(make_settings(tmp_path, *faults)) as client:
        auth = login(client)
        before = samples(client)["process_cpu_seconds_total"]
        for _ in range(requests):
            assert client.get("/api/v1/me", headers=auth).status_code == 200
        after = samples(client)["process_cpu_seconds_total"]
    return (after - before) / requests


def test_fault_cpu_hog_burns_cpu_on_every_api_request(tmp_path: Path) -> None:
    # Given the same requests with and without the fault
    healthy = cpu_per_request(tmp_path / "healthy")
    hog = cpu_per_request(tmp_path / "hog", "cpu-hog")
    # Then each request costs ~30 ms more CPU (generous: 2/3 of it, the clock ticks at 10 ms)
    assert hog - healthy >= CPU_HOG_S * 2 / 3, (healthy, hog)


def test_fault_cpu_hog_spares_health_and_metrics(tmp_path: Path) -> None:
    with running(make_settings(tmp_path, "cpu-hog")) as client:
        cpu0 = time.process_time()
        for _ in range(10):
            assert client.get("/healthz").status_code == 200
        used = time.process_time() - cpu0
    assert used < 10 * CPU_HOG_S * 2 / 3
