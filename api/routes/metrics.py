"""GET /metrics: Prometheus text exposition of the pool (see docs/metrics.md)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from ..authz import METRICS, authorize

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response, dependencies=[authorize(METRICS)])
async def metrics(request: Request) -> Response:
    """Read on scrape; the DB queries run in the thread pool, off the event loop."""
    body = await run_in_threadpool(request.app.state.metrics.render)
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)
