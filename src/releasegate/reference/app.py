"""``create_app``: the reference service as one ASGI application.

    app = create_app(ServiceSettings(data_dir=tmp, faults=frozenset({"no-hsts"})))
    uvicorn.Server(uvicorn.Config(app, ..., server_header=False, h11_max_incomplete_event_size=...))

Layout: health.py (health, version, metrics), api.py (REST), ws.py (WebSocket sync), edge.py (the
one middleware: limits, auth, faults, headers, request metrics), service.py (the instance's state),
store.py (SQLite), sync.py (event hub), worker.py + tools.py (tool runs), assistant.py (the model).

Startup and shutdown run in the Starlette lifespan: the store opens ``data_dir / "service.db"`` and
the worker starts; at shutdown background tasks are cancelled and the database closed. Each call
builds a fresh, independent instance (own registry, limiters, hub), so many run in one process.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from releasegate.reference import api, health, ws
from releasegate.reference.api import ApiError
from releasegate.reference.edge import Edge
from releasegate.reference.faults import NAMES as FAULTS
from releasegate.reference.service import Service
from releasegate.reference.settings import ServiceSettings
from releasegate.reference.store import StoreUnavailable

Clock = Callable[[], float]


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _store_unavailable(request: Request, exc: Exception) -> Response:
    return ApiError(503, "Service Unavailable", f"the database is unavailable: {exc}", [("Retry-After", "5")]).response()


def create_app(settings: ServiceSettings, *, mono: Clock = time.monotonic, wall: Clock = time.time) -> Starlette:
    """A new service instance. ``mono`` drives the rate limiters and the worker's health, ``wall`` the
    token times and stored timestamps; tests inject both, the runner passes only ``settings``."""
    unknown = set(settings.faults) - FAULTS
    if unknown:
        raise ValueError(f"unknown fault(s): {', '.join(sorted(unknown))}")
    service = Service(settings, mono=mono, wall=wall)
    routes = [*health.routes(), *api.routes(), *ws.routes()]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = Starlette(
        routes=routes,
        middleware=[Middleware(Edge, service=service, routes=routes)],
        exception_handlers={ApiError: _api_error, StoreUnavailable: _store_unavailable},
        lifespan=lifespan,
    )
    app.state.service = service
    return app
