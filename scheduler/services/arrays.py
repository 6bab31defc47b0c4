"""Job arrays and sweeps: many tasks from one spec, submitted, read and cancelled as one.

An array is not a row of its own: its tasks are jobs sharing an `array_id`,
each with its `array_index`, so everything that works on a job (placement,
logs, energy, cancel) works on a task unchanged. Tasks keep the spec's
name, as Slurm's do; the index tells them apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from ..domain.errors import Invalid, NotFound
from ..domain.ids import new_id
from ..domain.states import JobState
from ..spec import JobSpec
from ..store.models import Allocation, Job, JobEvent, utcnow
from ..store.transitions import transition_jobs
from . import artifacts, audit
from .dependencies import (
    check_dependency_rows,
    record_dependencies,
    resolve_dependencies,
    submit_reason,
)
from .jobs import charge_project, job_columns, release_allocations_where, submitted_event

PARAM_ENV_PREFIX = "COMMONPOOL_PARAM_"


@dataclass(frozen=True, slots=True)
class ArraySummary:
    """An array at a glance: its tasks counted by state."""

    id: str
    name: str
    project: str
    owner: str
    tasks: int
    limit: int | None
    by_state: dict[str, int] = field(default_factory=dict)


def submit_array(
    session: Session,
    spec: JobSpec,
    *,
    actor: str,
    require_project: bool = False,
    visible_projects: frozenset[str] | None = None,
) -> ArraySummary:
    """Insert every task of an array or sweep, in bulk, in the caller's one transaction.

    The queue quota counts every task: over it, nothing is written. Tasks
    get ids that sort by index, so listings and FIFO ties follow the index.
    `require_project` and `visible_projects` as for `jobs.submit_job`.
    """
    tasks = spec.array_tasks()
    if not tasks:
        raise Invalid(
            f"job {spec.name!r} has neither `array` nor `sweep`: submit it as a single job "
            "(POST /api/v1/jobs)",
            field="array",
        )
    project = charge_project(session, spec, require_project=require_project, jobs=len(tasks))
    waits_for = resolve_dependencies(session, spec.after, visible_projects=visible_projects)
    check_dependency_rows(len(tasks), waits_for)
    inputs = artifacts.resolve_inputs(
        session, artifacts.Viewer(spec.owner or actor, visible_projects), spec, project
    )
    array_id = new_id("arr")
    ids = sorted(new_id("job") for _ in tasks)
    limit = spec.array_limit  # once: it parses `array`, 5,000 parses cost most of a second
    common = {
        **job_columns(spec, project, submitted_at=utcnow()),
        "array_id": array_id,
        "array_limit": limit,
        # The scheduler loads only the first `limit` waiting tasks of an array; the
        # others show this reason until their turn comes.
        "pending_reason": submit_reason(waits_for)
        or (f"array limit: at most {limit} at once" if limit else None),
    }
    session.execute(
        insert(Job),
        [
            {
                **common,
                "id": job_id,
                "array_index": index,
                "args": {**spec.args, **params},
                "env": task_env(spec.env, array_id, index, len(tasks), params),
            }
            for job_id, (index, params) in zip(ids, tasks, strict=True)
        ],
    )
    session.execute(insert(JobEvent), [submitted_event(job_id, actor) for job_id in ids])
    record_dependencies(session, ids, waits_for)
    artifacts.record_inputs(session, ids, inputs)
    audit.record(session, actor, "array.submit", array_id, project=project, tasks=len(ids))
    return ArraySummary(
        array_id,
        spec.name,
        project,
        common["owner"],
        len(ids),
        limit,
        {JobState.QUEUED.value: len(ids)},
    )


def task_env(
    env: dict[str, str], array_id: str, index: int, tasks: int, params: dict[str, Any]
) -> dict[str, str]:
    """A task's environment: the spec's, its sweep parameters, and where it sits in its array.

    Parameters are `COMMONPOOL_PARAM_<NAME>` (upper case; JSON unless a plain
    string) so a command job reads them without parsing its args. The array
    variables are set last: a spec cannot fake them.
    """
    out = dict(env)
    for name, value in params.items():
        out[PARAM_ENV_PREFIX + name.upper()] = (
            value if isinstance(value, str) else json.dumps(value)
        )
    out["COMMONPOOL_ARRAY_ID"] = array_id
    out["COMMONPOOL_ARRAY_INDEX"] = str(index)
    out["COMMONPOOL_ARRAY_TASKS"] = str(tasks)
    return out


def get_array(session: Session, array_id: str) -> ArraySummary:
    """The array's summary (two grouped queries), or 404."""
    head = session.execute(
        select(Job.name, Job.project, Job.owner, Job.array_limit)
        .where(Job.array_id == array_id)
        .limit(1)
    ).first()
    if head is None:
        raise NotFound(f"array {array_id} not found", entity="array", id=array_id)
    by_state = {
        state: count
        for state, count in session.execute(
            select(Job.state, func.count()).where(Job.array_id == array_id).group_by(Job.state)
        )
    }
    return ArraySummary(
        array_id,
        head.name,
        head.project,
        head.owner,
        sum(by_state.values()),
        head.array_limit,
        dict(sorted(by_state.items())),
    )


def cancel_array(
    session: Session, array_id: str, *, actor: str, reason: str | None = None
) -> ArraySummary:
    """Cancel every task not yet final, release what they hold; finished tasks stay as they are.

    A few guarded bulk UPDATEs, not one cancel per task, so a 10,000-task array
    cancels in one short transaction. Cancelling an array whose tasks are all
    final changes nothing and is not an error.
    """
    summary = get_array(session, array_id)
    why = reason or "cancelled by user"
    moved = transition_jobs(
        session,
        Job.array_id == array_id,
        JobState.CANCELLED,
        actor=actor,
        reason=why,
        ended_at=utcnow(),
        exit_reason=why,
    )
    if moved:
        tasks = select(Job.id).where(Job.array_id == array_id)
        release_allocations_where(session, Allocation.job_id.in_(tasks))
    audit.record(
        session,
        actor,
        "array.cancel",
        array_id,
        project=summary.project,
        tasks=len(moved),
        reason=reason,
    )
    return get_array(session, array_id)
