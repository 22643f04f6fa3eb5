"""Security headers, health endpoints, version and metrics, healthy and under their faults."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from ref_support import conversation, login, make_settings, running

from releasegate.reference.settings import WRONG_RELEASE

SECURITY = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


@pytest.mark.parametrize("path", ["/", "/healthz", "/api/v1/me", "/nowhere"])
def test_every_answer_carries_the_security_headers(tmp_path: Path, path: str) -> None:
    with running(make_settings(tmp_path)) as client:
        headers = client.get(path).headers
    assert headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    for name, value in SECURITY.items():
        assert headers[name] == value
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "server" not in headers


def test_fault_no_hsts_drops_only_hsts(tmp_path: Path) -> None:
    with running(make_settings(tmp_path, "no-hsts")) as client:
        headers = client.get("/healthz").headers
    assert "strict-transport-security" not in headers
    assert all(headers[name] == value for name, value in SECURITY.items())


def test_fault_short_hsts_is_one_day(tmp_path: Path) -> None:
    with running(make_settings(tmp_path, "short-hsts")) as client:
        assert client.get("/healthz").headers["strict-transport-security"] == "max-age=86400; includeSubDomains"


def test_fault_no_security_headers_keeps_hsts(tmp_path: Path) -> None:
    with running(make_settings(tmp_path, "no-security-headers")) as client:
        headers = client.get("/api/v1/me").headers
    assert not set(SECURITY) & set(headers) and "content-security-policy" not in headers
    assert headers["strict-transport-security"].startswith("max-age=31536000")


def test_healthy_health_endpoints(tmp_path: Path) -> None:
    with running(make_settings(tmp_path)) as client:
        live, ready, deep, version = (client.get(p) for p in ("/healthz", "/readyz", "/health", "/version"))
    assert (live.status_code, live.text) == (200, "ok")
    assert ready.status_code == 200
    assert deep.status_code == 200 and deep.headers["content-type"] == "application/health+json"
    body = deep.json()
    assert body["status"] == "pass" and body["releaseId"] == "2026.11.26-1" and body["version"] == "1.4.0"
    assert set(body["checks"]) == {"db:responseTime", "cache:utilization", "worker:queue", "model:responseTime"}
    db = body["checks"]["db:responseTime"][0]
    assert db["componentType"] == "datastore" and db["observedUnit"] == "ms" and db["status"] == "pass" and "time" in db
    assert version.json() == {
        "version": "1.4.0",
        "releaseId": "2026.11.26-1",
        "schemaVersion": 7,
        "databaseSchemaVersion": 7,
        "pendingMigrations": [],
        "clientVersions": ">=1.2.0,<2.0.0",
    }


def test_fault_db_down_fails_readiness_deep_health_and_the_api(tmp_path: Path) -> None:
    with running(make_settings(tmp_path, "db-down")) as client:
        auth = login(client)  # log-in needs no database: users come from settings
        live, ready, deep = (client.get(p) for p in ("/healthz", "/readyz", "/health"))
        api = client.post("/api/v1/conversations", json={"title": "t"}, headers=auth)
    assert live.status_code == 200
    assert ready.status_code == 503
    assert deep.status_code == 503 and deep.json()["status"] == "fail"
    assert deep.json()["checks"]["db:responseTime"][0]["status"] == "fail"
    assert api.status_code == 503
    assert (tmp_path / "service.db").exists()  # the fault pretends; it never deletes data


def test_fault_cache_degraded_warns_with_200(tmp_path: Path) -> None:
    with running(make_settings(tmp_path, "cache-degraded")) as client:
        deep, ready = client.get("/health"), client.get("/readyz")
    assert deep.status_code == 200 and deep.json()["status"] == "warn"
    assert deep.json()["checks"]["cache:utilization"][0]["status"] == "warn"
    assert deep.json()["checks"]["db:responseTime"][0]["status"] == "pass"
    assert ready.status_code == 200


def test_fault_wrong_release_reports_the_other_release(tmp_path: Path) -> None:
    with running(make_settings(tmp_path, "wrong-release")) as client:
        assert client.get("/health").json()["releaseId"] == WRONG_RELEASE
        assert client.get("/health").json()["status"] == "pass"
        assert client.get("/version").json()["releaseId"] == WRONG_RELEASE


def test_fault_liveness_fail_fails_only_liveness(tmp_path: Path) -> None:
    with running(make_settings(tmp_path, "liveness-fail")) as client:
        assert client.get("/healthz").status_code == 500
        assert client.get("/readyz").status_code == 200
        assert client.get("/health").status_code == 200


def test_metrics_parse_and_count_requests_by_route_template(tmp_path: Path) -> None:
    with running(make_settings(tmp_path)) as client:
        auth = login(client)
        cid = conversation(client, auth)
        client.get(f"/api/v1/conversations/{cid}", headers=auth)
        client.get("/api/v1/conversations/unknown", headers=auth)
        with client.websocket_connect("/ws/sync", headers=auth):
            text = client.get("/metrics").text
        assert client.get("/metrics").headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = {(s.labels["route"], s.labels["status"]): s.value for s in families["http_requests"].samples if s.name.endswith("_total")}
    assert requests[("/api/v1/conversations/{cid}", "200")] == 1
    assert requests[("/api/v1/conversations/{cid}", "404")] == 1
    assert "http_request_duration_seconds" in families
    assert families["websocket_connections"].samples[0].value == 1
    assert {"sync_event_latency_seconds", "worker_queue_depth"} <= families.keys()


def test_instances_in_one_process_keep_separate_metrics(tmp_path: Path) -> None:
    with running(make_settings(tmp_path / "a")) as first, running(make_settings(tmp_path / "b")) as second:
        first.get("/healthz")
        first.get("/healthz")
        second.get("/healthz")
        assert 'route="/healthz",status="200"} 2.0' in first.get("/metrics").text
        assert 'route="/healthz",status="200"} 1.0' in second.get("/metrics").text
