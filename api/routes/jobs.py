"""/api/v1/jobs: submit, list, get, cancel, events, allocations, logs, metrics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import StreamingResponse

from commonpool.scheduler.domain.principal import Principal
from commonpool.scheduler.domain.states import JobState
from commonpool.scheduler.services import jobs as svc

from ..authz import (
    JOB_CANCEL,
    JOB_READ,
    JOB_REPORT,
    JOBS_READ,
    JOBS_SUBMIT,
    authorize,
    authorized_submission,
    visible_projects,
)
from ..deps import ReadSession, SettingsDep, WriteSession, get_db, in_write_unit
from ..schemas import (
    AllocationRead,
    CancelRequest,
    EventRead,
    JobRead,
    JobSpec,
    LogBatch,
    LogLineRead,
    MetricIn,
    MetricRead,
    Page,
)

router = APIRouter(prefix="/jobs", tags=["jobs"])

FOLLOW_POLL_S = 0.5
MAX_ID = 2**31 - 1  # the largest id an `Integer` column holds (PostgreSQL int4): larger is a 422


@router.post("", status_code=status.HTTP_201_CREATED, response_model=JobRead)
async def submit(
    spec: JobSpec, request: Request, caller: Annotated[Principal, authorize(JOBS_SUBMIT)]
) -> JobRead:
    """The hot path: the whole unit of work runs in a single worker-thread hop."""
    spec = authorized_submission(caller, spec, request.app.state.settings.job_code_dirs)
    job = await in_write_unit(
        request,
        svc.submit_job,
        spec,
        actor=caller.subject,
        require_project=True,
        visible_projects=visible_projects(caller),
    )
    request.app.state.wake_scheduler()
    return job


@router.get("", response_model=Page[JobRead])
def list_jobs(
    session: ReadSession,
    request: Request,
    caller: Annotated[Principal, authorize(JOBS_READ)],
    state: Annotated[list[JobState] | None, Query()] = None,
    owner: Annotated[str | None, Query(max_length=100)] = None,
    project: Annotated[str | None, Query(max_length=100)] = None,
    array: Annotated[str | None, Query(max_length=40, description="Tasks of this array.")] = None,
    kind: Annotated[Literal["ddp", "command", "service"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 50,
    cursor: Annotated[str | None, Query(max_length=40)] = None,
) -> Page[JobRead]:
    limit = min(limit, request.app.state.settings.page_size_max)
    page = svc.list_jobs(
        session,
        states=tuple(state or ()),
        owner=owner,
        project=project,
        array=array,
        kind=kind,
        visible_projects=visible_projects(caller),
        limit=limit,
        cursor=cursor,
    )
    return Page[JobRead](
        items=[JobRead.model_validate(j) for j in page.items], next_cursor=page.next_cursor
    )


@router.get("/{job_id}", response_model=JobRead, dependencies=[authorize(JOB_READ)])
def get(job_id: str, session: ReadSession) -> JobRead:
    return JobRead.model_validate(svc.get_job(session, job_id))


@router.post("/{job_id}/cancel", response_model=JobRead)
def cancel(
    job_id: str,
    session: WriteSession,
    request: Request,
    caller: Annotated[Principal, authorize(JOB_CANCEL)],
    body: CancelRequest | None = None,
) -> JobRead:
    job = svc.cancel_job(
        session, job_id, actor=caller.subject, reason=body.reason if body else None
    )
    request.app.state.services_ready.pop(job_id, None)  # a stopped service answers no more
    request.app.state.wake_scheduler()
    return JobRead.model_validate(job)


@router.get("/{job_id}/events", response_model=list[EventRead], dependencies=[authorize(JOB_READ)])
def events(job_id: str, session: ReadSession) -> list[EventRead]:
    return [EventRead.model_validate(e) for e in svc.list_events(session, job_id)]


@router.get(
    "/{job_id}/allocations",
    response_model=list[AllocationRead],
    dependencies=[authorize(JOB_READ)],
)
def allocations(job_id: str, session: ReadSession) -> list[AllocationRead]:
    svc.get_job(session, job_id)
    return [AllocationRead.model_validate(a) for a in svc.list_allocations(session, job_id)]


@router.post(
    "/{job_id}/logs", status_code=status.HTTP_201_CREATED, dependencies=[authorize(JOB_REPORT)]
)
def append_logs(
    job_id: str, batch: LogBatch, session: WriteSession, settings: SettingsDep
) -> dict[str, int]:
    count = svc.append_logs(
        session,
        job_id,
        ((ln.stream, ln.line) for ln in batch.lines),
        max_bytes=settings.job_log_max_bytes,
    )
    return {"stored": count}


@router.get(
    "/{job_id}/logs",
    response_model=list[LogLineRead],
    responses={200: {"content": {"application/x-ndjson": {}}}},
    dependencies=[authorize(JOB_READ)],
)
def logs(
    job_id: str,
    request: Request,
    session: ReadSession,
    tail: Annotated[int | None, Query(ge=1, le=10_000)] = None,
    after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    follow: bool = False,
) -> list[LogLineRead] | StreamingResponse:
    """The last `tail` lines (or lines after cursor `after`); `follow` streams NDJSON."""
    lines = [
        LogLineRead.model_validate(x)
        for x in svc.read_logs(session, job_id, after=after, tail=tail)
    ]
    if not follow:
        return lines
    return StreamingResponse(_follow(request, job_id, lines), media_type="application/x-ndjson")


async def _follow(request: Request, job_id: str, first: list[LogLineRead]) -> AsyncIterator[str]:
    """Stream lines as they arrive until the job is final and drained, or the client leaves."""
    db = get_db(request)
    cursor = 0
    for line in first:
        cursor = line.id
        yield line.model_dump_json() + "\n"
    while not await request.is_disconnected():

        def _poll(after: int = cursor) -> tuple[list[LogLineRead], bool]:
            with db.unit_of_work(write=False) as session:
                rows = [
                    LogLineRead.model_validate(x)
                    for x in svc.read_logs(session, job_id, after=after)
                ]
                done = JobState(svc.get_job(session, job_id).state).terminal
                return rows, done

        rows, done = await asyncio.to_thread(_poll)
        for line in rows:
            cursor = line.id
            yield line.model_dump_json() + "\n"
        if done and not rows:
            yield json.dumps({"end": True}) + "\n"
            return
        if not rows:
            await asyncio.sleep(FOLLOW_POLL_S)


@router.post(
    "/{job_id}/metrics",
    status_code=status.HTTP_201_CREATED,
    response_model=MetricRead,
    dependencies=[authorize(JOB_REPORT)],
)
def report_metrics(job_id: str, metric: MetricIn, session: WriteSession) -> MetricRead:
    row = svc.record_metrics(
        session, job_id, step=metric.step, values=metric.values, attempt=metric.attempt
    )
    session.flush()
    return MetricRead.model_validate(row)


@router.get(
    "/{job_id}/metrics", response_model=list[MetricRead], dependencies=[authorize(JOB_READ)]
)
def metrics(
    job_id: str,
    session: ReadSession,
    after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[MetricRead]:
    return [
        MetricRead.model_validate(m)
        for m in svc.list_metrics(session, job_id, after=after, limit=limit)
    ]
