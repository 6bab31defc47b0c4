"""/api/v1/pool/summary and the health probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import text

from commonpool.scheduler.domain.errors import Unavailable
from commonpool.scheduler.services.pool import pool_summary

from ..authz import JOBS_READ, PUBLIC, authorize
from ..deps import ReadSession
from ..schemas import PoolSummaryRead

router = APIRouter(tags=["pool"])
health = APIRouter(tags=["health"])


@router.get("/pool/summary", response_model=PoolSummaryRead, dependencies=[authorize(JOBS_READ)])
def summary(session: ReadSession) -> PoolSummaryRead:
    return PoolSummaryRead.model_validate(pool_summary(session))


@health.get("/healthz", dependencies=[authorize(PUBLIC)])
def healthz() -> dict[str, str]:
    """The process is up (no dependency checked)."""
    return {"status": "ok"}


@health.get("/readyz", dependencies=[authorize(PUBLIC)])
def readyz(request: Request) -> dict[str, str]:
    """The database answers; 503 with Retry-After otherwise."""
    try:
        with request.app.state.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        raise Unavailable(f"database unreachable: {type(exc).__name__}") from exc
    return {"status": "ready"}
