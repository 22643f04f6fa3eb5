"""Health, version and metrics endpoints (never rate-limited, never touched by the API faults).

- ``/healthz`` liveness: the process answers (fault liveness-fail: 500);
- ``/readyz`` readiness: the database answers ``SELECT 1`` (else 503);
- ``/health`` deep health, ``application/health+json`` per draft-inadarei-api-health-check-06, with
  the components ``db:responseTime``, ``cache:utilization``, ``worker:queue`` and ``model:responseTime``;
  the overall status is the worst component's; 200 for pass and warn, 503 for fail;
- ``/version``: version, releaseId, the app's schemaVersion, the database's
  (databaseSchemaVersion, null when the database does not answer), pendingMigrations (the app's
  migrations the database has not applied; fault schema-mismatch: one) and the supported client
  version range clientVersions (fault unsupported-client: ``>=1.5.0,<2.0.0``);
- ``/releases/{release_id}/manifest``: the release artifacts this service can roll between (the
  current and the previous release), ``{releaseId, digest}``; 404 for any other release, and for
  the previous one under fault no-previous-artifact;
- ``/metrics``: this instance's Prometheus registry in the text format.

A stuck worker or a degraded cache *warn*: the service still serves, it is degraded. Only the
database fails deep health, because without it the service cannot serve at all.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from releasegate.reference.metrics import CONTENT_TYPE
from releasegate.reference.service import SERVICE_ID, Service
from releasegate.reference.store import StoreUnavailable, migration_name

Status = Literal["pass", "warn", "fail"]
HEALTH_JSON = "application/health+json"
_RANK: dict[Status, int] = {"pass": 0, "warn": 1, "fail": 2}
CACHE_DEGRADED_PERCENT = 99.0  # what cache-degraded reports: a cache that is full and thrashing
DB_WARN_MS = 250.0


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _component(component_type: str, value: float | int, unit: str, status: Status, now: str, output: str = "") -> list[dict[str, Any]]:
    entry: dict[str, Any] = {
        "componentType": component_type,
        "observedValue": value,
        "observedUnit": unit,
        "status": status,
        "time": now,
    }
    if output:  # the draft: output should be omitted when the status is pass
        entry["output"] = output
    return [entry]


def deep_health(service: Service) -> tuple[Status, dict[str, Any]]:
    """The health document and its overall status (plain data; the route only serialises it)."""
    now = datetime.fromtimestamp(service.wall(), UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    checks: dict[str, list[dict[str, Any]]] = {}

    started = time.perf_counter()
    try:
        service.store.ping()
        db_ms = round((time.perf_counter() - started) * 1000, 3)
        db_status: Status = "warn" if db_ms > DB_WARN_MS else "pass"
        checks["db:responseTime"] = _component("datastore", db_ms, "ms", db_status, now, "slow database" if db_status == "warn" else "")
    except StoreUnavailable as exc:
        db_ms = round((time.perf_counter() - started) * 1000, 3)
        checks["db:responseTime"] = _component("datastore", db_ms, "ms", "fail", now, str(exc))

    if service.settings.has("cache-degraded"):
        checks["cache:utilization"] = _component(
            "component", CACHE_DEGRADED_PERCENT, "percent", "warn", now, "the cache is full and evicting"
        )
    else:
        checks["cache:utilization"] = _component("component", service.cache.utilization_percent, "percent", "pass", now)

    worker = service.worker.health()
    checks["worker:queue"] = _component("component", worker.depth, "jobs", worker.status, now, worker.output)

    # The model backend's health is whether it answers in time; the quality of its answers is a
    # business check (golden prompts), so bad-model does not show here.
    started = time.perf_counter()
    service.assistant.suggest("health probe: sort a list")
    model_ms = round((time.perf_counter() - started) * 1000, 3)
    checks["model:responseTime"] = _component("component", model_ms, "ms", "pass", now)

    statuses: list[Status] = [entry["status"] for entries in checks.values() for entry in entries]
    overall: Status = max(statuses, key=lambda s: _RANK[s])
    document = {
        "status": overall,
        "version": service.settings.version,
        "releaseId": service.release_id,
        "serviceId": SERVICE_ID,
        "description": "releasegate reference collaborative coding-assistant service",
        "checks": checks,
    }
    return overall, document


async def healthz(request: Request) -> Response:
    if _service(request).settings.has("liveness-fail"):
        return PlainTextResponse("liveness check failed (fault liveness-fail)", status_code=500)
    return PlainTextResponse("ok")


async def readyz(request: Request) -> Response:
    try:
        _service(request).store.ping()
    except StoreUnavailable as exc:
        return PlainTextResponse(f"not ready: {exc}", status_code=503)
    return PlainTextResponse("ready")


async def health(request: Request) -> Response:
    overall, document = deep_health(_service(request))
    return JSONResponse(document, status_code=503 if overall == "fail" else 200, media_type=HEALTH_JSON)


def schema_status(service: Service) -> tuple[int | None, list[str] | None]:
    """The database's schema version and the app's migrations it lacks; (None, None) when it does not answer."""
    try:
        applied = service.store.applied_migrations()
    except StoreUnavailable:
        return None, None
    pending = [migration_name(n) for n in range(1, service.settings.schema_version + 1) if n not in applied]
    return max(applied, default=0), pending


async def version(request: Request) -> Response:
    service = _service(request)
    settings = service.settings
    database_version, pending = schema_status(service)
    return JSONResponse(
        {
            "version": settings.version,
            "releaseId": service.release_id,
            "schemaVersion": settings.schema_version,
            "databaseSchemaVersion": database_version,
            "pendingMigrations": pending,
            "clientVersions": settings.unsupported_client_versions if settings.has("unsupported-client") else settings.client_versions,
        }
    )


def release_digest(release_id: str) -> str:
    """A stable stand-in for the digest of a release's artifact."""
    return "sha256:" + hashlib.sha256(f"{SERVICE_ID}/{release_id}".encode()).hexdigest()


async def release_manifest(request: Request) -> Response:
    settings = _service(request).settings
    release_id = request.path_params["release_id"]
    available = {settings.release_id}
    if not settings.has("no-previous-artifact"):
        available.add(settings.previous_release_id)
    if release_id not in available:
        return JSONResponse({"error": "not found", "detail": f"no artifact for release {release_id}"[:200]}, status_code=404)
    return JSONResponse({"releaseId": release_id, "digest": release_digest(release_id)})


async def metrics(request: Request) -> Response:
    service = _service(request)
    service.metrics.queue_depth.set(service.worker.depth)
    return Response(service.metrics.render(), media_type=CONTENT_TYPE)


async def index(request: Request) -> Response:
    """A small map of the service, so that ``GET /`` answers (header checks often probe the root)."""
    return JSONResponse(
        {
            "service": SERVICE_ID,
            "api": "/api/v1",
            "websocket": "/ws/sync",
            "health": {"liveness": "/healthz", "readiness": "/readyz", "deep": "/health"},
            "version": "/version",
            "releases": "/releases/{release_id}/manifest",
            "metrics": "/metrics",
        }
    )


def routes() -> list[BaseRoute]:
    return [
        Route("/", index, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/version", version, methods=["GET"]),
        Route("/releases/{release_id}/manifest", release_manifest, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
