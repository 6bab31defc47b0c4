"""/api/v1/pool/fairness and /pool/usage: the pool-wide reads behind the dashboard.

Both are aggregates over every project and node, for any user token with
`jobs:read` (like `/pool/summary`): project names, weights and totals, no job.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from commonpool.scheduler.services.fairness import pool_fairness
from commonpool.scheduler.services.usage import pool_usage

from ..authz import JOBS_READ, authorize
from ..deps import ReadSession, SettingsDep
from ..schemas import PoolFairnessRead, PoolUsageRead

router = APIRouter(prefix="/pool", tags=["pool"])


@router.get("/fairness", response_model=PoolFairnessRead, dependencies=[authorize(JOBS_READ)])
def fairness(session: ReadSession) -> PoolFairnessRead:
    """Per project: weight and entitled share vs usage share, energy used, donor credits."""
    return PoolFairnessRead.model_validate(pool_fairness(session))


@router.get("/usage", response_model=PoolUsageRead, dependencies=[authorize(JOBS_READ)])
def usage(
    session: ReadSession,
    settings: SettingsDep,
    since: Annotated[AwareDatetime | None, Query()] = None,
) -> PoolUsageRead:
    """Resources by type, per-node holdings and power now; jobs' energy since `since` (today)."""
    return PoolUsageRead.model_validate(
        pool_usage(session, fresh_s=settings.node_lease_s, since=since)
    )
