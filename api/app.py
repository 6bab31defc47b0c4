"""The FastAPI application: `create_app(settings)` is the composition root of the API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
from fastapi import APIRouter, FastAPI

from commonpool import __version__
from commonpool.scheduler.carbon import IntensityProvider, default_chain
from commonpool.scheduler.config import Settings
from commonpool.scheduler.store.engine import make_engine
from commonpool.scheduler.store.uow import Database

from .authentication import Authenticator
from .dashboard import routes as dashboard
from .limits import BodySizeLimit
from .metrics import PoolMetrics
from .problems import API_PROBLEMS, document_problems, install_problem_handlers, problem_responses
from .ratelimit import Rate, RateLimiter
from .routes import (
    admin,
    arrays,
    artifacts,
    energy,
    fairness,
    jobs,
    metrics,
    nodes,
    pool,
    services,
)
from .serve_status import ServeStatus
from .service_stats import ServiceStats

API_PREFIX = "/api/v1"
# A request to a service scaled to zero waits for a replica to start and load its model.
SERVE_TIMEOUT_S = 120.0

ROUTERS: tuple[tuple[str, APIRouter], ...] = (
    (API_PREFIX, jobs.router),
    (API_PREFIX, arrays.router),
    (API_PREFIX, artifacts.router),
    (API_PREFIX, services.router),
    (API_PREFIX, admin.router),
    (API_PREFIX, nodes.router),
    (API_PREFIX, pool.router),
    (API_PREFIX, energy.router),
    (API_PREFIX, fairness.router),
    ("", metrics.router),
    ("", pool.health),
    ("", dashboard.router),
)
"""Every router of the app, with its prefix; the authorization-matrix test walks this."""


def create_app(
    settings: Settings,
    db: Database | None = None,
    wake_scheduler: Callable[[], None] | None = None,
    carbon: IntensityProvider | None = None,
) -> FastAPI:
    """An app bound to one database; `wake_scheduler` lets a submit start a cycle at once.

    `carbon` answers grid intensity for heartbeats' energy (default: the
    `default_chain()`, CSV series replayed, then yearly and world averages).
    `app.state.metrics` owns this app's Prometheus registry; composition
    roots hand `app.state.metrics.observe_step` to the scheduler loop.
    """
    app = FastAPI(
        lifespan=_lifespan,
        title="commonpool",
        version=__version__,
        summary="A shared compute pool for training AI models on donated machines.",
        docs_url="/docs",
    )
    app.state.settings = settings
    app.state.db = db or Database(make_engine(settings.resolved_database_url))
    app.state.wake_scheduler = wake_scheduler or (lambda: None)
    app.state.carbon = carbon or default_chain()
    app.state.blobs = settings.blob_store()
    app.state.serve_http = (
        httpx.AsyncClient(base_url=settings.ray_serve_url, timeout=SERVE_TIMEOUT_S)
        if settings.ray_serve_url
        else None
    )
    app.state.service_stats = ServiceStats()
    app.state.services_ready = {}
    app.state.serve_status = ServeStatus(settings.ray_dashboard_url, settings.ray_auth_token)
    app.state.metrics = PoolMetrics(app.state.db)
    app.state.auth = Authenticator(app.state.db, settings.auth_cache_s)
    app.state.rate_limiter = RateLimiter(
        {
            "submit": Rate(settings.submit_rate_per_s, settings.submit_burst),
            "heartbeat": Rate(settings.heartbeat_rate_per_s, settings.heartbeat_burst),
        }
    )
    install_problem_handlers(app)
    for prefix, router in ROUTERS:
        app.include_router(router, prefix=prefix, responses=_problems(prefix, router))
    document_problems(app)
    # An artifact upload streams into the blob store, which enforces its own limit.
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_request_bytes,
        streamed_paths=(f"{API_PREFIX}{artifacts.router.prefix}",),
    )
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    if app.state.serve_http is not None:
        await app.state.serve_http.aclose()


def _problems(prefix: str, router: APIRouter) -> dict[int | str, dict[str, object]]:
    """The problem+json responses a router's routes document in the OpenAPI."""
    if prefix == API_PREFIX:
        return API_PROBLEMS
    if router is pool.health:
        return problem_responses(503)  # readyz; healthz always answers 200
    if router is metrics.router:
        return problem_responses(401, 403, 503)
    return {}
