"""The FastAPI application: `create_app(settings)` is the composition root of the API."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from commonpool import __version__
from commonpool.scheduler.carbon import IntensityProvider, default_chain
from commonpool.scheduler.config import Settings
from commonpool.scheduler.store.engine import make_engine
from commonpool.scheduler.store.uow import Database

from .limits import BodySizeLimit
from .metrics import PoolMetrics
from .problems import install_problem_handlers
from .routes import energy, jobs, metrics, nodes, pool

API_PREFIX = "/api/v1"


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
        title="commonpool",
        version=__version__,
        summary="A shared compute pool for training AI models on donated machines.",
        docs_url="/docs",
    )
    app.state.settings = settings
    app.state.db = db or Database(make_engine(settings.resolved_database_url))
    app.state.wake_scheduler = wake_scheduler or (lambda: None)
    app.state.carbon = carbon or default_chain()
    app.state.metrics = PoolMetrics(app.state.db)
    install_problem_handlers(app)
    app.include_router(jobs.router, prefix=API_PREFIX)
    app.include_router(nodes.router, prefix=API_PREFIX)
    app.include_router(pool.router, prefix=API_PREFIX)
    app.include_router(energy.router, prefix=API_PREFIX)
    app.include_router(metrics.router)
    app.include_router(pool.health)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    return app
