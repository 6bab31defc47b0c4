"""/api/v1/arrays: submit a job array or sweep, read its summary, cancel it whole.

The tasks themselves are jobs: list them with `GET /jobs?array=ID`, read or
cancel one with the jobs routes.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, status

from commonpool.scheduler.domain.principal import Principal
from commonpool.scheduler.services import arrays as svc

from ..authz import (
    ARRAY_CANCEL,
    ARRAY_READ,
    JOBS_SUBMIT,
    authorize,
    authorized_submission,
    visible_projects,
)
from ..deps import ReadSession, WriteSession, in_write_unit
from ..schemas import ArrayRead, CancelRequest, JobSpec

router = APIRouter(prefix="/arrays", tags=["arrays"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ArrayRead)
async def submit(
    spec: JobSpec, request: Request, caller: Annotated[Principal, authorize(JOBS_SUBMIT)]
) -> ArrayRead:
    """Every task in one transaction: all are queued, or (over a quota) none."""
    spec = authorized_submission(caller, spec, request.app.state.settings.job_code_dirs)
    summary = await in_write_unit(
        request,
        svc.submit_array,
        spec,
        actor=caller.subject,
        require_project=True,
        visible_projects=visible_projects(caller),
    )
    request.app.state.wake_scheduler()
    return summary


@router.get("/{array_id}", response_model=ArrayRead, dependencies=[authorize(ARRAY_READ)])
def get(array_id: str, session: ReadSession) -> ArrayRead:
    return ArrayRead.model_validate(svc.get_array(session, array_id))


@router.post("/{array_id}/cancel", response_model=ArrayRead)
def cancel(
    array_id: str,
    session: WriteSession,
    request: Request,
    caller: Annotated[Principal, authorize(ARRAY_CANCEL)],
    body: CancelRequest | None = None,
) -> ArrayRead:
    summary = svc.cancel_array(
        session, array_id, actor=caller.subject, reason=body.reason if body else None
    )
    request.app.state.wake_scheduler()
    return ArrayRead.model_validate(summary)
