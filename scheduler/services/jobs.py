"""Job use cases: submit, read, cancel, and what job code reports back."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, insert, select, update
from sqlalchemy.orm import Session, aliased

from ..domain.errors import (
    Invalid,
    InvalidTransition,
    NotFound,
    QueueQuotaExceeded,
    QuotaExceeded,
    StaleLease,
)
from ..domain.ids import new_id
from ..domain.states import JobState
from ..policy import Cancellation
from ..spec import JobSpec
from ..store.models import Allocation, Job, JobEvent, JobLogLine, JobMetric, Project, utcnow
from ..store.transitions import transition_job
from . import artifacts, audit
from .accounts import DEFAULT_PROJECT, get_project
from .dependencies import record_dependencies, resolve_dependencies, submit_reason
from .pagination import Page

MAX_LOG_LINE_CHARS = 10_000
LOG_TRUNCATED = "[commonpool: log size cap reached; later lines are dropped]"


def submit_job(
    session: Session,
    spec: JobSpec,
    *,
    actor: str,
    require_project: bool = False,
    visible_projects: frozenset[str] | None = None,
) -> Job:
    """Insert a QUEUED job, its first event and its dependencies, within the project's quotas.

    `require_project`: the project must exist (the API's rule); direct
    callers (simulations, tests) may charge projects that have no row.
    `visible_projects` (None: all): the jobs named in `after` must be of
    these projects, as the caller could read them (see `dependencies`).
    An array or sweep is refused: it is many jobs (`services.arrays`).
    """
    if spec.is_array:
        raise Invalid(
            f"job {spec.name!r} has `array` or `sweep`, which makes many jobs: submit it as "
            "a job array (POST /api/v1/arrays, `commonpool submit`); nothing was written",
            field="array" if spec.array is not None else "sweep",
        )
    project_name = charge_project(session, spec, require_project=require_project)
    waits_for = resolve_dependencies(session, spec.after, visible_projects=visible_projects)
    inputs = artifacts.resolve_inputs(
        session, artifacts.Viewer(spec.owner or actor, visible_projects), spec, project_name
    )
    # INSERT ... RETURNING, not add + flush: one statement, without the unit-of-work
    # bookkeeping, on the API's hottest path (the row comes back as the response's Job).
    job = session.scalars(
        insert(Job).returning(Job),
        [
            {
                "id": new_id("job"),
                **job_columns(spec, project_name, submitted_at=utcnow()),
                "pending_reason": submit_reason(waits_for),
            }
        ],
    ).one()
    session.execute(insert(JobEvent), [submitted_event(job.id, actor)])
    record_dependencies(session, [job.id], waits_for)
    artifacts.record_inputs(session, [job.id], inputs)
    audit.record(session, actor, "job.submit", job.id, project=project_name)
    return job


def job_columns(spec: JobSpec, project: str, *, submitted_at: datetime) -> dict[str, Any]:
    """The columns of a new QUEUED job of `spec` (all but its id and array place).

    One mapping for both paths, so a single job and each task of an array
    are stored alike: a field added to the spec is added here once.
    """
    return {
        "name": spec.name,
        "owner": spec.owner or "anonymous",
        "project": project,
        "priority": spec.priority,
        "state": JobState.QUEUED.value,
        "kind": spec.kind,
        "entrypoint": spec.entrypoint,
        "command": spec.command,
        "args": spec.service.model_dump(exclude={"model"}) if spec.service else spec.args,
        "working_dir": spec.working_dir,
        "env": dict(spec.env),
        "workers_min": spec.workers.min,
        "workers_max": spec.workers.max,
        "cpus_per_worker": spec.resources.cpus,
        "memory_bytes_per_worker": spec.resources.memory_bytes,
        "gpus_per_worker": spec.resources.gpus,
        "gpu_type": spec.resources.gpu_type,
        "label_selector": dict(spec.label_selector),
        "max_runtime_s": spec.max_runtime_s,
        "job_type": spec.job_type,
        "deadline_at": spec.deadline,
        "max_attempts": spec.max_attempts,
        "framework": spec.framework,
        "carbon": spec.carbon,
        "publish": spec.publish,
        "submitted_at": submitted_at,
        "metrics": {},
    }


def submitted_event(job_id: str, actor: str) -> dict[str, Any]:
    """The columns of a new job's first event."""
    return {
        "job_id": job_id,
        "from_state": None,
        "to_state": JobState.QUEUED.value,
        "actor": actor,
        "reason": "submitted",
    }


def charge_project(session: Session, spec: JobSpec, *, require_project: bool, jobs: int = 1) -> str:
    """The project a submit of `jobs` jobs of `spec` is charged to, once its quotas allow.

    The project row is locked for the rest of the transaction, so concurrent
    submits cannot both take the last queue slots.
    """
    project_name = spec.project or DEFAULT_PROJECT
    project = (
        get_project(session, project_name, for_update=True)
        if require_project
        else session.scalar(select(Project).where(Project.name == project_name).with_for_update())
    )
    if project is not None:
        check_submit_quota(session, project, spec, jobs=jobs)
    return project_name


def check_submit_quota(session: Session, project: Project, spec: JobSpec, *, jobs: int = 1) -> None:
    """Refuse, before anything is written, `jobs` jobs of `spec` the project's quotas forbid.

    A job larger than the project's CPU/GPU quota could never start (403), nor
    could an array with more tasks than the queue quota; a full queue is
    temporary (429). The project row is locked by the caller, so concurrent
    submits cannot both take the last queue slot.
    """
    need_cpus = spec.workers.min * spec.resources.cpus
    need_gpus = spec.workers.min * spec.resources.gpus
    if project.max_cpus is not None and need_cpus > project.max_cpus:
        raise QuotaExceeded(
            f"the job needs {need_cpus:g} CPUs; project {project.name!r} may hold "
            f"at most {project.max_cpus:g}",
            project=project.name,
        )
    if project.max_gpus is not None and need_gpus > project.max_gpus:
        raise QuotaExceeded(
            f"the job needs {need_gpus} GPUs; project {project.name!r} may hold "
            f"at most {project.max_gpus}",
            project=project.name,
        )
    if project.max_queued_jobs is None:
        return
    if jobs > project.max_queued_jobs:
        raise QuotaExceeded(
            f"the array has {jobs} tasks; project {project.name!r} may queue at most "
            f"{project.max_queued_jobs} jobs",
            project=project.name,
        )
    queued = (
        session.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.project == project.name, Job.state == JobState.QUEUED.value)
        )
        or 0
    )
    if queued + jobs > project.max_queued_jobs:
        what = "" if jobs == 1 else f"; {jobs} more would pass it"
        raise QueueQuotaExceeded(
            f"project {project.name!r} already has {queued} queued jobs "
            f"(quota {project.max_queued_jobs}{what}); retry when some have started",
            project=project.name,
            retry_after_s=30,
        )


def get_job(session: Session, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"job {job_id} not found", entity="job", id=job_id)
    return job


def list_jobs(
    session: Session,
    *,
    states: Sequence[JobState] = (),
    owner: str | None = None,
    project: str | None = None,
    array: str | None = None,
    kind: str | None = None,
    visible_projects: frozenset[str] | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page[Job]:
    """Newest first; `cursor` is the id of the last job of the previous page.

    `array` keeps the tasks of one job array (their ids sort by index).
    `visible_projects` (None: all) confines the listing to the caller's projects.
    """
    stmt = select(Job).order_by(Job.id.desc()).limit(limit + 1)
    if states:
        stmt = stmt.where(Job.state.in_([s.value for s in states]))
    if owner:
        stmt = stmt.where(Job.owner == owner)
    if project:
        stmt = stmt.where(Job.project == project)
    if array:
        stmt = stmt.where(Job.array_id == array)
    if kind:
        stmt = stmt.where(Job.kind == kind)
    if visible_projects is not None:
        stmt = stmt.where(Job.project.in_(sorted(visible_projects)))
    if cursor:
        stmt = stmt.where(Job.id < cursor)
    rows = list(session.scalars(stmt))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, rows[-1].id if more and rows else None)


def cancel_job(session: Session, job_id: str, *, actor: str, reason: str | None = None) -> Job:
    """Cancel from any non-final state; allocations are released in the same transaction."""
    transition_job(
        session,
        job_id,
        JobState.CANCELLED,
        actor=actor,
        reason=reason or "cancelled by user",
        ended_at=utcnow(),
        exit_reason=reason or "cancelled by user",
    )
    release_allocations(session, job_id)
    job = get_job(session, job_id)
    audit.record(session, actor, "job.cancel", job_id, project=job.project, reason=reason)
    return job


def apply_cancellations(
    session: Session, cancellations: Iterable[Cancellation], *, actor: str = "scheduler"
) -> list[str]:
    """Cancel the jobs a policy found can never start (a dependency ended the wrong way).

    A job that left QUEUED meanwhile (a user cancelled it) is skipped, not an
    error: the decision was about a state that no longer holds. Nothing is
    written for a skipped job (the guarded transition refuses before writing).
    """
    cancelled: list[str] = []
    for cancellation in cancellations:
        try:
            cancel_job(session, cancellation.job_id, actor=actor, reason=cancellation.reason)
        except (InvalidTransition, NotFound):
            continue
        cancelled.append(cancellation.job_id)
    return cancelled


def release_allocations(session: Session, job_id: str) -> int:
    """Mark the job's active allocations released; returns how many."""
    return release_allocations_where(session, Allocation.job_id == job_id)


def release_allocations_where(session: Session, jobs: ColumnElement[bool]) -> int:
    """Mark released the active allocations matching `jobs` (a condition on Allocation).

    Chained allocations (`Allocation.after_id`) move up: one that waited behind a released
    standby allocation now waits behind what that one waited behind, and one whose run
    ahead is released holds its resources from now on (that run has ended or is being
    stopped, and the node's executor starts the next one at its end).
    """
    now = utcnow()
    _relink_followers(session, jobs)
    result = session.execute(
        update(Allocation)
        .where(jobs, Allocation.released_at.is_(None))
        .values(released_at=now, standby=False)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount:
        ahead = aliased(Allocation)
        session.execute(
            update(Allocation)
            .where(
                Allocation.standby.is_(True),
                Allocation.after_id.is_(None)  # the run ahead was deleted
                | select(ahead.id)
                .where(ahead.id == Allocation.after_id, ahead.released_at.is_not(None))
                .exists(),
            )
            .values(standby=False, created_at=now)
            .execution_options(synchronize_session=False)
        )
    return result.rowcount


def _relink_followers(session: Session, jobs: ColumnElement[bool]) -> None:
    """Before standby allocations are released: each allocation chained behind one of them
    (and not released with them) waits behind the first run ahead that stays."""
    leaving: dict[int, int | None] = {
        row.id: row.after_id
        for row in session.execute(
            select(Allocation.id, Allocation.after_id).where(
                jobs, Allocation.released_at.is_(None), Allocation.standby.is_(True)
            )
        )
    }
    if not leaving:
        return
    followers = session.execute(
        select(Allocation.id, Allocation.after_id).where(
            Allocation.after_id.in_(sorted(leaving)), Allocation.id.not_in(sorted(leaving))
        )
    ).all()
    session.execute(  # first: `after_id` is unique, and a follower takes over this one's
        update(Allocation)
        .where(Allocation.id.in_(sorted(leaving)))
        .values(after_id=None)
        .execution_options(synchronize_session=False)
    )
    for follower, after in followers:
        while after in leaving:
            after = leaving[after]
        session.execute(
            update(Allocation)
            .where(Allocation.id == follower)
            .values(after_id=after)
            .execution_options(synchronize_session=False)
        )


def list_events(session: Session, job_id: str) -> list[JobEvent]:
    get_job(session, job_id)
    return list(
        session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id))
    )


def list_allocations(
    session: Session, job_id: str, *, active_only: bool = False
) -> list[Allocation]:
    stmt = select(Allocation).where(Allocation.job_id == job_id)
    if active_only:
        stmt = stmt.where(Allocation.released_at.is_(None))
    return list(session.scalars(stmt.order_by(Allocation.attempt, Allocation.rank)))


def append_logs(
    session: Session, job_id: str, lines: Iterable[tuple[str, str]], *, max_bytes: int = 0
) -> int:
    """Store (stream, line) pairs; over-long lines are cut, not refused.

    `max_bytes` (0: no cap) bounds what one job may store in all: past it,
    one marker line is kept and the rest dropped, so a chatty or hostile job
    cannot fill the registry. Returns how many lines were stored.
    """
    job = get_job(session, job_id)
    used = job.log_bytes or 0
    if max_bytes and used >= max_bytes:
        return 0
    rows: list[JobLogLine] = []
    for stream, line in lines:
        text = line[:MAX_LOG_LINE_CHARS]
        size = len(text.encode("utf-8", "replace"))
        if max_bytes and used + size > max_bytes:
            rows.append(JobLogLine(job_id=job_id, stream="system", line=LOG_TRUNCATED))
            used = max_bytes
            break
        rows.append(JobLogLine(job_id=job_id, stream=stream, line=text))
        used += size
    session.add_all(rows)
    job.log_bytes = used
    return len(rows)


def read_logs(
    session: Session, job_id: str, *, after: int = 0, limit: int = 1000, tail: int | None = None
) -> list[JobLogLine]:
    """Lines after the cursor `after`, or the last `tail` lines."""
    get_job(session, job_id)
    stmt = select(JobLogLine).where(JobLogLine.job_id == job_id)
    if tail is not None:
        rows = list(session.scalars(stmt.order_by(JobLogLine.id.desc()).limit(tail)))
        return rows[::-1]
    return list(
        session.scalars(stmt.where(JobLogLine.id > after).order_by(JobLogLine.id).limit(limit))
    )


def record_metrics(
    session: Session,
    job_id: str,
    *,
    step: int,
    values: dict[str, float],
    attempt: int | None = None,
) -> JobMetric:
    """Store a step report and fold it into the job's summary metrics.

    The first report of an attempt is the moment training really runs, so
    it moves the job STARTING -> RUNNING. A report from an older attempt (a
    worker of a run that was preempted) is refused.
    """
    job = get_job(session, job_id)
    if attempt is not None and attempt != job.attempt:
        raise StaleLease(
            f"job {job_id} is at attempt {job.attempt}; a report from attempt {attempt} is stale",
            job_id=job_id,
            attempt=attempt,
            current_attempt=job.attempt,
        )
    if job.state == JobState.STARTING.value:
        transition_job(
            session,
            job_id,
            JobState.RUNNING,
            actor="job",
            reason=f"first step reported (step {step})",
            started_at=utcnow(),
        )
        session.refresh(job)
    metric = JobMetric(job_id=job_id, attempt=job.attempt, step=step, values=values)
    session.add(metric)
    summary: dict[str, Any] = dict(job.metrics or {})
    summary.update(values)
    summary["step"] = step
    job.metrics = summary
    return metric


def list_metrics(
    session: Session, job_id: str, *, after: int = 0, limit: int = 1000
) -> list[JobMetric]:
    get_job(session, job_id)
    return list(
        session.scalars(
            select(JobMetric)
            .where(JobMetric.job_id == job_id, JobMetric.id > after)
            .order_by(JobMetric.id)
            .limit(limit)
        )
    )
