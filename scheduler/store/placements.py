"""Carries out a policy's placements in the registry, each all-or-nothing.

Every placement is checked inside the cycle's transaction: the job moves
QUEUED -> PLACED by compare-and-set, its allocations are inserted, and the
nodes' capacity is re-checked in SQL with the node rows locked (PostgreSQL),
so a stale snapshot or a second scheduler can never over-allocate a node. A
project with a CPU/GPU quota has its row locked and its holdings summed the
same way, so no policy and no second scheduler can place past the quota
either. A placement that fails any check is undone alone.

A cycle's placements are first tried as one batch in one savepoint (a few
set-based statements, whatever their number: the per-job statements were most
of a cycle while trivial jobs drained); when any check fails, that savepoint
is rolled back and they are placed one by one, each in its own savepoint, so
the failing ones are refused with their reason and the others still placed.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from ..domain.errors import CommonpoolError, Conflict, QuotaExceeded
from ..domain.states import JobState, NodeState
from ..policy import Placement, Resources, WorkerSlot
from .engine import id_batches
from .models import HELD, Allocation, Job, Node, Project, utcnow
from .transitions import transition_jobs


@dataclass(frozen=True, slots=True)
class ApplyResult:
    placed: tuple[str, ...]
    rejected: dict[str, str]


def apply_placements(
    session: Session, placements: tuple[Placement, ...], *, actor: str = "scheduler"
) -> ApplyResult:
    limited = _projects_with_quotas(session) if placements else frozenset()
    if len(placements) > 1:
        try:
            with session.begin_nested():
                _place(session, placements, actor=actor, limited=limited)
            return ApplyResult(tuple(p.job_id for p in placements), {})
        except CommonpoolError:
            pass  # some placement fails a check: place them one by one to tell which
    placed: list[str] = []
    rejected: dict[str, str] = {}
    for placement in placements:
        try:
            with session.begin_nested():
                _place(session, (placement,), actor=actor, limited=limited)
            placed.append(placement.job_id)
        except CommonpoolError as exc:
            rejected[placement.job_id] = exc.detail
    return ApplyResult(tuple(placed), rejected)


def _place(
    session: Session,
    placements: tuple[Placement, ...],
    *,
    actor: str,
    limited: frozenset[str],
) -> None:
    """Every placement, with its checks, in the caller's savepoint; raises on any failure
    (the caller rolls the savepoint back): a few set-based statements whatever their number.
    """
    node_ids = sorted({w.node_id for p in placements for w in p.workers})
    _lock_nodes(session, node_ids)
    reasons = {placement.job_id: _placed_reason(placement) for placement in placements}
    placed_at = utcnow()
    for batch in id_batches(list(reasons)):
        moved = transition_jobs(
            session,
            Job.id.in_(batch),
            JobState.PLACED,
            actor=actor,
            reason=reasons,
            placed_at=placed_at,
            pending_reason=None,
        )
        if len(moved) != len(batch):
            gone = sorted(set(batch) - {job_id for job_id, _ in moved})
            raise Conflict(f"job {gone[0]} is no longer queued (cancelled meanwhile?)")
    jobs: dict[str, tuple[int, str]] = {}
    for batch in id_batches([p.job_id for p in placements]):
        jobs.update(
            (job_id, (attempt, project))
            for job_id, attempt, project in session.execute(
                select(Job.id, Job.attempt, Job.project).where(Job.id.in_(batch))
            )
        )
    rows = [
        _allocation_row(placement.job_id, jobs[placement.job_id][0], worker)
        for placement in placements
        if placement.after is None
        for worker in placement.workers
    ]
    if rows:
        session.execute(insert(Allocation), rows)
    chained = [placement for placement in placements if placement.after is not None]
    if chained:  # after the rest: a line's first job may wait behind one of them
        _insert_chained(session, chained, jobs)
    _check_capacity(session, node_ids)
    for project in sorted({project for _, project in jobs.values()} & limited):
        _check_project_quota(session, project)


def _placed_reason(placement: Placement) -> str:
    nodes = ", ".join(sorted({w.node_id for w in placement.workers}))
    behind = f" behind job {placement.after}" if placement.after else ""
    return f"placed on {nodes}{behind}"


def _insert_chained(
    session: Session, placements: list[Placement], jobs: dict[str, tuple[int, str]]
) -> None:
    """The standby allocations of chained placements, each behind the allocation its job
    waits for, which must be open on the same node, hold room for it, belong to the same
    project and have nobody behind it yet (`policy.chain`); raises Conflict if not.

    A line's first job waits behind an allocation already written (a run, or a job placed
    on a free slot this step); the jobs behind it wait behind chained placements of this
    same batch, checked against them. All rows go in one insert, and the ones behind a
    row of this batch get its id in one update: two statements for lines of any depth.
    """
    in_batch = {placement.job_id: placement for placement in placements}
    _check_no_circle(in_batch)
    ahead_counts = Counter(placement.after for placement in placements)
    twice = sorted(job_id for job_id, count in ahead_counts.items() if count > 1)
    if twice:
        raise Conflict(f"two jobs would wait behind job {twice[0]}")
    held = _open_allocations(session, sorted(a for a in ahead_counts if a not in in_batch))
    followed = Allocation.after_id.in_([row.id for row in held.values()])
    taken = set(session.scalars(select(Allocation.after_id).where(followed)))
    rows = []
    for placement in placements:
        (worker,) = placement.workers
        attempt, project = jobs[placement.job_id]
        ahead = in_batch.get(placement.after)  # type: ignore[arg-type]
        after_id = None  # behind a row of this batch: set once that row has its id
        if ahead is not None:
            (slot_worker,) = ahead.workers
            node_id, slot, slot_project = (
                slot_worker.node_id, slot_worker.resources, jobs[ahead.job_id][1]
            )  # fmt: skip
        else:
            run = held.get(placement.after)  # type: ignore[arg-type]
            if run is None or run.id in taken:
                raise Conflict(f"job {placement.after} no longer runs alone in its slot")
            node_id, slot, slot_project = (
                run.node_id, Resources(run.cpus, run.memory_bytes, run.gpus), run.project
            )  # fmt: skip
            after_id = run.id
        if node_id != worker.node_id or not slot.fits(worker.resources) or slot_project != project:
            raise Conflict(
                f"job {placement.job_id} does not fit in job {placement.after}'s slot"
            )
        rows.append(
            {
                **_allocation_row(placement.job_id, attempt, worker),
                "after_id": after_id,
                "standby": True,
            }
        )
    ids = dict(
        session.execute(insert(Allocation).returning(Allocation.job_id, Allocation.id), rows).all()
    )
    behind_batch = [
        {"a_id": ids[placement.job_id], "a_after": ids[placement.after]}
        for placement in placements
        if placement.after in in_batch
    ]
    if behind_batch:
        table = Allocation.__table__
        session.execute(
            update(table)
            .where(table.c.id == bindparam("a_id"))
            .values(after_id=bindparam("a_after")),
            behind_batch,
        )


def _check_no_circle(in_batch: Mapping[str, Placement]) -> None:
    """Each chain of this batch leads, within its length, to a job outside it."""
    for placement in in_batch.values():
        ahead, steps = placement.after, 0
        while ahead in in_batch:
            steps += 1
            if steps > len(in_batch):
                raise Conflict("chained placements wait on each other in a circle")
            ahead = in_batch[ahead].after


def _open_allocations(session: Session, job_ids: list[str]) -> dict[str, Row[Any]]:
    """The open allocation of each of these jobs' current attempts, with its project."""
    columns = (Allocation.id, Allocation.job_id, Allocation.node_id, Allocation.cpus,
               Allocation.memory_bytes, Allocation.gpus, Job.project)  # fmt: skip
    return {
        row.job_id: row
        for batch in id_batches(job_ids)
        for row in session.execute(
            select(*columns)
            .join(Job, Job.id == Allocation.job_id)
            .where(
                Allocation.job_id.in_(batch),
                Allocation.released_at.is_(None),
                Allocation.attempt == Job.attempt,
            )
        )
    }


def _allocation_row(job_id: str, attempt: int, worker: WorkerSlot) -> dict[str, object]:
    return {
        "job_id": job_id,
        "node_id": worker.node_id,
        "attempt": attempt,
        "rank": worker.rank,
        "cpus": worker.resources.cpus,
        "memory_bytes": worker.resources.memory_bytes,
        "gpus": worker.resources.gpus,
    }


def _lock_nodes(session: Session, node_ids: list[str]) -> None:
    """Lock the nodes in id order (no deadlock between schedulers) before counting."""
    session.execute(
        select(Node.id).where(Node.id.in_(node_ids)).order_by(Node.id).with_for_update()
    )


def _projects_with_quotas(session: Session) -> frozenset[str]:
    rows = session.scalars(
        select(Project.name).where(Project.max_cpus.is_not(None) | Project.max_gpus.is_not(None))
    )
    return frozenset(rows)


def _check_project_quota(session: Session, project: str) -> None:
    """What the project's jobs hold, with this placement, stays within its quota."""
    quota = session.execute(
        select(Project.max_cpus, Project.max_gpus).where(Project.name == project).with_for_update()
    ).one()
    used_cpus, used_gpus = session.execute(
        select(
            func.coalesce(func.sum(Allocation.cpus), 0), func.coalesce(func.sum(Allocation.gpus), 0)
        )
        .join(Job, Job.id == Allocation.job_id)
        .where(Job.project == project, HELD)
    ).one()
    if quota.max_cpus is not None and used_cpus > quota.max_cpus + 1e-9:
        raise QuotaExceeded(
            f"waiting for project quota: {project!r} may hold {quota.max_cpus:g} CPUs"
        )
    if quota.max_gpus is not None and used_gpus > quota.max_gpus:
        raise QuotaExceeded(
            f"waiting for project quota: {project!r} may hold {quota.max_gpus} GPUs"
        )


def _check_capacity(session: Session, node_ids: list[str]) -> None:
    rows = session.execute(
        select(
            Node.id,
            Node.state,
            Node.cpus,
            Node.memory_bytes,
            Node.gpus,
            func.coalesce(func.sum(Allocation.cpus), 0),
            func.coalesce(func.sum(Allocation.memory_bytes), 0),
            func.coalesce(func.sum(Allocation.gpus), 0),
        )
        .outerjoin(Allocation, (Allocation.node_id == Node.id) & HELD)
        .where(Node.id.in_(node_ids))
        .group_by(Node.id, Node.state, Node.cpus, Node.memory_bytes, Node.gpus)
    ).all()
    if len(rows) != len(node_ids):
        raise Conflict("a placement names a node that does not exist")
    for node_id, state, cpus, mem, gpus, used_cpus, used_mem, used_gpus in rows:
        if state != NodeState.ONLINE.value:
            raise Conflict(f"node {node_id} is {state}, not ONLINE")
        if used_cpus > cpus + 1e-9 or used_mem > mem or used_gpus > gpus:
            raise Conflict(f"node {node_id} would be over-allocated")


def record_pending_reasons(
    session: Session,
    reasons: dict[str, str],
    stored: Mapping[str, str | None] | None = None,
) -> int:
    """Store why each job still waits, touching only rows whose reason changed.

    `stored` is what the rows hold now (as `load_snapshot(stored_reasons=...)` read
    them in this transaction); without it they are read here. Changed rows are
    written with one UPDATE per distinct reason (a handful), not one per row: a
    queue of thousands changing at once cost seconds per cycle on PostgreSQL.
    """
    if not reasons:
        return 0
    if stored is None:
        stored = dict(
            session.execute(
                select(Job.id, Job.pending_reason).where(Job.id.in_(list(reasons)))
            ).all()
        )
    by_reason: dict[str, list[str]] = defaultdict(list)
    for job_id, reason in reasons.items():
        reason = reason[:500]
        if job_id in stored and stored[job_id] != reason:
            by_reason[reason].append(job_id)
    for reason, job_ids in by_reason.items():
        for batch in id_batches(job_ids):
            session.execute(
                update(Job)
                .where(
                    Job.id.in_(batch),
                    Job.state == JobState.QUEUED.value,
                )
                .values(pending_reason=reason)
                .execution_options(synchronize_session=False)
            )
    return sum(len(ids) for ids in by_reason.values())


def record_carbon_baselines(
    session: Session, baselines: Mapping[str, float], recorded: set[str]
) -> int:
    """Keep each carbon-deferred job's *first* baseline intensity (`Plan.carbon_baselines`).

    A job deferred for hours is in every cycle's plan: `recorded` (owned by the caller,
    one per scheduler process) remembers the ids already written, so each is written
    once, and is trimmed to the jobs deferred now. A row that already has a baseline
    (written before a scheduler restart) is never overwritten.
    """
    new = [{"b_id": job_id, "b_g": g} for job_id, g in baselines.items() if job_id not in recorded]
    if new:
        jobs = Job.__table__
        session.execute(
            update(jobs)
            .where(jobs.c.id == bindparam("b_id"), jobs.c.carbon_baseline_g_per_kwh.is_(None))
            .values(carbon_baseline_g_per_kwh=bindparam("b_g")),
            new,
        )
    recorded.intersection_update(baselines)
    recorded.update(row["b_id"] for row in new)
    return len(new)
