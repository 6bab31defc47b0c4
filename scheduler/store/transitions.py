"""The only writer of `state` columns.

A transition is a compare-and-set (`UPDATE ... WHERE id = :id AND state =
:seen`) plus its event row, in the caller's transaction. Two writers racing
on the same entity cannot both win: the database lets one UPDATE match; the
other re-reads, finds a state from which the move is not allowed, and
raises `InvalidTransition` (HTTP 409). Because the UPDATE names the exact
state it saw, the event's `from_state` is always true.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, bindparam, insert, select, update
from sqlalchemy.orm import Session

from ..domain.errors import InvalidTransition, NotFound
from ..domain.states import JOB_TRANSITIONS, JobState, NodeState, job_sources, node_sources
from .models import Job, JobEvent, Node, NodeEvent, utcnow

_CAS_RETRIES = 5


def transition_job(
    session: Session,
    job_id: str,
    target: JobState,
    *,
    actor: str,
    reason: str | None = None,
    expect: frozenset[JobState] | None = None,
    likely: JobState | None = None,
    **values: Any,
) -> JobState:
    """Move a job to `target` and record the event; returns the state it left.

    `expect` narrows the allowed source states (e.g. requeue only from
    PREEMPTED); `likely` is the source the caller believes the job is in, tried
    first without a read (one statement instead of two on the hot path);
    `values` are extra columns set in the same UPDATE.
    """
    sources = job_sources(target) if expect is None else job_sources(target) & expect
    previous = _compare_and_set(session, Job, "job", job_id, target, sources, values, likely)
    session.add(
        JobEvent(
            job_id=job_id, from_state=previous, to_state=target.value, actor=actor, reason=reason
        )
    )
    return JobState(previous)


def transition_jobs(
    session: Session,
    where: ColumnElement[bool],
    target: JobState,
    *,
    actor: str,
    reason: str | Mapping[str, str] | None = None,
    **values: Any,
) -> list[tuple[str, JobState]]:
    """Move every job matching `where` that may move to `target`; returns (id, state left).

    For many jobs at once (cancelling a 10,000-task array): one guarded
    `UPDATE ... WHERE state = :source RETURNING id` per allowed source state
    instead of a read and an UPDATE per job, and the events in one insert.
    Each UPDATE names the state it moves from, so every event's `from_state`
    is true; jobs in other states (final ones) are left alone. `reason` is the
    events' reason, or each job's own (by job id).
    """
    moved: list[tuple[str, JobState]] = []
    for source in sorted(job_sources(target)):
        ids = session.scalars(
            update(Job)
            .where(where, Job.state == source.value)
            .values(state=target.value, updated_at=utcnow(), **values)
            .returning(Job.id)
            .execution_options(synchronize_session=False)
        ).all()
        moved.extend((job_id, source) for job_id in ids)
    if moved:
        session.execute(
            insert(JobEvent),
            [
                {
                    "job_id": job_id,
                    "from_state": source.value,
                    "to_state": target.value,
                    "actor": actor,
                    "reason": reason.get(job_id) if isinstance(reason, Mapping) else reason,
                }
                for job_id, source in moved
            ],
        )
    return moved


@dataclass(frozen=True, slots=True)
class JobMove:
    """One job's move in `transition_each`: its event reason and its own column values."""

    job_id: str
    reason: str | None = None
    values: Mapping[str, Any] = field(default_factory=dict)


def transition_each(
    session: Session,
    moves: Sequence[JobMove],
    source: JobState,
    target: JobState,
    *,
    actor: str,
) -> bool:
    """Move every job of `moves` from `source` to `target`, each with its own values and
    event, or none: False when any of them was not in `source` (nothing written then).

    One guarded UPDATE run as an executemany and one insert of the events, where
    `transition_job` per job costs two statements each: the launcher's hot path
    (launches, ends of short commands). Callers fall back to `transition_job` per job
    on False, which tells each job's own outcome (e.g. cancelled meanwhile).
    """
    if target not in JOB_TRANSITIONS[source]:
        raise ValueError(f"a job may not move from {source.value} to {target.value}")
    if not moves:
        return True
    columns = sorted({name for move in moves for name in move.values})
    jobs = Job.__table__
    guarded = (
        update(jobs)
        .where(jobs.c.id == bindparam("m_id"), jobs.c.state == source.value)
        .values(
            state=target.value,
            updated_at=bindparam("m_updated_at"),
            **{name: bindparam(f"m_{name}") for name in columns},
        )
    )
    now = utcnow()
    rows = [
        {
            "m_id": move.job_id,
            "m_updated_at": now,
            **{f"m_{name}": move.values.get(name) for name in columns},
        }
        for move in moves
    ]
    with session.begin_nested() as savepoint:
        if session.execute(guarded, rows).rowcount != len(moves):
            savepoint.rollback()
            return False
        session.execute(
            insert(JobEvent),
            [
                {
                    "job_id": move.job_id,
                    "from_state": source.value,
                    "to_state": target.value,
                    "actor": actor,
                    "reason": move.reason,
                }
                for move in moves
            ],
        )
    return True


def transition_node(
    session: Session,
    node_id: str,
    target: NodeState,
    *,
    actor: str,
    reason: str | None = None,
    **values: Any,
) -> NodeState:
    """Move a node to `target` and record the event; returns the state it left."""
    previous = _compare_and_set(
        session, Node, "node", node_id, target, node_sources(target), values
    )
    session.add(
        NodeEvent(
            node_id=node_id, from_state=previous, to_state=target.value, actor=actor, reason=reason
        )
    )
    return NodeState(previous)


def _compare_and_set(
    session: Session,
    model: type[Job] | type[Node],
    entity: str,
    entity_id: str,
    target: JobState | NodeState,
    sources: frozenset[Any],
    values: dict[str, Any],
    likely: JobState | NodeState | None = None,
) -> str:
    allowed = {s.value for s in sources}
    # With one allowed source (or a likely one) the guarded UPDATE alone decides; only
    # when it matches nothing is the state read, to tell why (not found, not allowed).
    guess = likely.value if likely is not None else next(iter(allowed), None)
    single = likely is not None or len(allowed) == 1
    if single and guess in allowed and _guarded_update(
        session, model, entity_id, guess, target, values
    ):
        return guess
    for _ in range(_CAS_RETRIES):
        seen = session.scalar(
            select(model.state)
            .where(model.id == entity_id)
            .execution_options(populate_existing=True)
        )
        if seen is None:
            raise NotFound(f"{entity} {entity_id} not found", entity=entity, id=entity_id)
        if seen not in allowed:
            raise InvalidTransition(entity, entity_id, seen, target.value)
        if _guarded_update(session, model, entity_id, seen, target, values):
            return seen
    raise InvalidTransition(entity, entity_id, seen, target.value)


def _guarded_update(
    session: Session,
    model: type[Job] | type[Node],
    entity_id: str,
    seen: str,
    target: JobState | NodeState,
    values: dict[str, Any],
) -> bool:
    """`UPDATE ... WHERE id = :id AND state = :seen`; whether it matched."""
    stmt = (
        update(model)
        .where(model.id == entity_id, model.state == seen)
        .values(state=target.value, updated_at=utcnow(), **values)
        .execution_options(synchronize_session=False)
    )
    return session.execute(stmt).rowcount == 1
