"""Builds the policy's `ClusterSnapshot` from the registry.

Four queries per cycle (schedulable nodes with their used resources, queued
jobs (of an array with a running limit, only as many tasks as the limit),
queued jobs' dependencies grouped by condition and state, running jobs with
allocations), never one per job or node.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, Select, String, bindparam, func, select, type_coerce
from sqlalchemy.orm import Session, aliased

from ..domain.states import ENDED_VALUES, JobState, NodeState
from ..policy import (
    ClusterSnapshot,
    DependencyView,
    JobView,
    NodeView,
    Resources,
    RunningJobView,
    WorkerSlot,
)
from .engine import id_batches
from .models import HELD, Allocation, Job, JobDependency, Node, Project


def _ts(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


# The columns a JobView needs: the queue is read as plain rows, not ORM objects (building
# 5,000 Job objects cost ~0.3 s a cycle), with the stored reason to write only changes.
_QUEUED_COLUMNS = (
    Job.id, Job.cpus_per_worker, Job.memory_bytes_per_worker, Job.gpus_per_worker,
    Job.workers_min, Job.workers_max, Job.gpu_type, Job.priority, Job.project, Job.owner,
    Job.submitted_at, Job.deadline_at, Job.label_selector, Job.max_runtime_s, Job.carbon,
    Job.carbon_suspensions, Job.array_id, Job.array_index, Job.array_limit, Job.pending_reason,
    Job.kind, Job.job_type, Job.attempt, Job.working_dir,
)


def job_view(
    job: Job | Row[Any],
    dependencies: tuple[DependencyView, ...] = (),
    attained_service_s: float = 0.0,
) -> JobView:
    return JobView(
        id=job.id,
        per_worker=Resources(job.cpus_per_worker, job.memory_bytes_per_worker, job.gpus_per_worker),
        workers_min=job.workers_min,
        workers_max=job.workers_max,
        gpu_type=job.gpu_type,
        priority=job.priority,
        project=job.project,
        owner=job.owner,
        submitted_at=job.submitted_at.timestamp(),
        deadline=_ts(job.deadline_at),
        label_selector=dict(job.label_selector or {}),
        estimated_runtime_s=float(job.max_runtime_s) if job.max_runtime_s else None,
        carbon_aware=job.carbon == "aware",
        carbon_suspensions=job.carbon_suspensions,
        array_id=job.array_id,
        array_index=job.array_index,
        array_limit=job.array_limit,
        dependencies=dependencies,
        preemptible=job.kind != "service",  # see JobView.preemptible
        job_type=job.job_type,
        attained_service_s=attained_service_s,
        chainable=job.kind == "command" and job.working_dir is None and job.workers_max == 1,
    )


def _worker_weight(gpus: int) -> int:
    """A worker's share of attained service per second: its GPUs, or 1 for a CPU worker
    (LAS counts GPU-seconds, worker-seconds for CPU jobs, as the simulator does)."""
    return gpus or 1


def served_before(session: Session, job_ids: Iterable[str]) -> dict[str, float]:
    """Attained service of the jobs' ended attempts, from their released allocations."""
    served: dict[str, float] = defaultdict(float)
    for batch in id_batches(list(job_ids)):
        rows = session.execute(
            select(
                Allocation.job_id, Allocation.created_at, Allocation.released_at, Allocation.gpus
            ).where(Allocation.job_id.in_(batch), Allocation.released_at.is_not(None))
        )
        for job_id, created_at, released_at, gpus in rows:
            seconds = max(0.0, (released_at - created_at).total_seconds())
            served[job_id] += _worker_weight(gpus) * seconds
    return served


# A row's version for the cache: `updated_at` as the driver returns it (SQLite: text),
# compared for equality only, so not parsed into a datetime per queued job per cycle.
_VERSION = type_coerce(Job.updated_at, String).label("version")


class QueueCache:
    """Queued jobs' views, kept between cycles by the row's `updated_at` (which every write
    to a job row sets), so a cycle reads the queue's order and versions and full rows only
    for jobs new or changed since the previous cycle: reading and converting thousands of
    unchanged rows was most of a cycle while a long queue drained.

    It also keeps which of them wait on dependencies (stored with the job at submit and
    never changed), so a cycle reads dependency states for those jobs only, not by a
    join over the whole queue."""

    def __init__(self) -> None:
        self._views: dict[str, tuple[Any, JobView]] = {}
        self._dependent: set[str] = set()

    def views(self, session: Session, queue: list[tuple[str, Any]]) -> list[JobView]:
        """The views of `queue` ((id, version) in queue order), in that order."""
        stale = [job_id for job_id, version in queue
                 if self._views.get(job_id, (None,))[0] != version]
        for batch in id_batches(stale):
            rows = session.execute(
                select(*_QUEUED_COLUMNS, _VERSION).where(Job.id.in_(batch))
            ).all()
            # A requeued job keeps the service its earlier attempts attained (LAS).
            served = served_before(session, [row.id for row in rows if row.attempt > 1])
            for row in rows:
                view = job_view(row, attained_service_s=served.get(row.id, 0.0))
                self._views[row.id] = (row.version, view)
            self._dependent.update(session.scalars(
                select(JobDependency.job_id).where(JobDependency.job_id.in_(batch)).distinct()
            ))  # fmt: skip
        self._views = {job_id: self._views[job_id] for job_id, _ in queue
                       if job_id in self._views}
        self._dependent &= self._views.keys()
        return [entry[1] for entry in self._views.values()]

    def dependent(self) -> list[str]:
        """The jobs of the last `views` call that wait on dependencies."""
        return sorted(self._dependent)


Forecasts = Callable[[Iterable[str], float], Mapping[str, tuple[tuple[float, float], ...]]]


def _online_nodes() -> Select[Any]:
    """Online nodes with what their open allocations use."""
    used = (
        select(
            Allocation.node_id,
            func.sum(Allocation.cpus).label("cpus"),
            func.sum(Allocation.memory_bytes).label("mem"),
            func.sum(Allocation.gpus).label("gpus"),
        )
        .where(HELD)
        .group_by(Allocation.node_id)
        .subquery()
    )
    return (
        select(Node, used.c.cpus, used.c.mem, used.c.gpus)
        .outerjoin(used, used.c.node_id == Node.id)
        .where(Node.state == NodeState.ONLINE.value)
        .order_by(Node.id)
    )


def _queue_window() -> Select[Any]:
    """The queued jobs a cycle loads, in order (binds `eligible`: now, `queue_limit`)."""
    waiting = (Job.state == JobState.QUEUED.value) & (
        # after a failed attempt a job waits out its requeue backoff (unseen by policies)
        Job.eligible_at.is_(None) | (Job.eligible_at <= bindparam("eligible"))
    )
    # The gates admit at most `array_limit` tasks of an array a cycle, lowest index first:
    # loading no more of them keeps a 10,000-task `%5` array from filling the queue window
    # and hiding every job submitted after it.
    rank = (
        select(
            Job.id,
            func.row_number()
            .over(partition_by=Job.array_id, order_by=(Job.array_index, Job.id))
            .label("rank"),
        )
        .where(waiting, Job.array_limit.is_not(None))
        .subquery()
    )
    # A job with a dependency that has not ended cannot start whatever its condition (the
    # gates would hold it): leaving it out keeps thousands of held jobs from filling the
    # window ahead of runnable ones. Its reason stays the one written at submit.
    dependency = aliased(Job)
    held = (
        select(JobDependency.job_id)
        .join(dependency, dependency.id == JobDependency.depends_on)
        .where(JobDependency.job_id == Job.id, dependency.state.not_in(ENDED_VALUES))
        .exists()
    )
    return (
        select(Job.id, _VERSION, Job.pending_reason)
        .outerjoin(rank, rank.c.id == Job.id)
        .where(
            waiting,
            Job.array_limit.is_(None) | (rank.c.rank <= Job.array_limit),
            ~held,
        )
        .order_by(Job.priority.desc(), Job.submitted_at, Job.id)
        .limit(bindparam("queue_limit"))
    )


QUEUE_LIMIT = 10_000  # queued jobs a (full) cycle loads: the rest wait their turn

# Built once: a statement object keeps its cache key, so a cycle only binds its values
# (building these two per cycle was about a third of an idle cycle's CPU).
_ONLINE_NODES = _online_nodes()
_QUEUE_WINDOW = _queue_window()


def load_snapshot(
    session: Session,
    *,
    now: float,
    queue_limit: int = QUEUE_LIMIT,
    forecasts: Forecasts | None = None,
    stored_reasons: dict[str, str | None] | None = None,
    queue_cache: QueueCache | None = None,
) -> ClusterSnapshot:
    """The pool as a policy sees it at `now` (epoch seconds).

    `forecasts(regions, now)` fills the carbon forecast of the regions that
    have nodes (see `scheduler.carbon.forecast_cache`); without it the
    snapshot has none and carbon-aware layers leave the plan unchanged.
    `stored_reasons`, if given, receives each loaded queued job's stored
    pending reason (for `placements.record_pending_reasons`). `queue_cache`,
    kept by the caller from one cycle to the next, spares re-reading queued
    jobs that have not changed.
    """
    node_rows = session.execute(_ONLINE_NODES).all()
    nodes = []
    for node, cpus, mem, gpus in node_rows:
        total = Resources(node.cpus, node.memory_bytes, node.gpus)
        nodes.append(
            NodeView(
                id=node.id,
                total=total,
                free=total - Resources(float(cpus or 0), int(mem or 0), int(gpus or 0)),
                gpu_type=node.gpu_type,
                labels=dict(node.labels or {}),
                region=node.region,
                donor_project=node.donor_project,
            )
        )
    queue = session.execute(
        _QUEUE_WINDOW,
        {"eligible": datetime.fromtimestamp(now, UTC), "queue_limit": queue_limit},
    ).all()
    queue_cache = queue_cache or QueueCache()
    views = queue_cache.views(session, [(r.id, r.version) for r in queue])
    dependencies = _dependencies(session, queue_cache.dependent())
    if stored_reasons is not None:
        stored_reasons.update((row.id, row.pending_reason) for row in queue)
    return ClusterSnapshot(
        now=now,
        nodes=tuple(nodes),
        queued=tuple(
            replace(view, dependencies=dependencies[view.id]) if view.id in dependencies else view
            for view in views
        ),
        running=_running(session, now),
        carbon_forecast=dict(forecasts({n.region for n in nodes if n.region}, now))
        if forecasts
        else {},
        project_weights=dict(session.execute(select(Project.name, Project.weight)).all()),
    )


def _dependencies(
    session: Session, job_ids: list[str]
) -> dict[str, tuple[DependencyView, ...]]:
    """The dependencies of `job_ids`, one view per (job, condition, state of the dependency).

    Grouped in SQL, so a task that waits on a whole array costs a few rows, not one per
    task of that array; the `gates` policy layer decides what the states mean.
    """
    views: dict[str, list[DependencyView]] = defaultdict(list)
    for batch in id_batches(job_ids):
        rows = session.execute(
            select(
                JobDependency.job_id,
                JobDependency.condition,
                Job.state,
                func.min(JobDependency.depends_on),
                func.count(),
            )
            .join(Job, Job.id == JobDependency.depends_on)
            .where(JobDependency.job_id.in_(batch))
            .group_by(JobDependency.job_id, JobDependency.condition, Job.state)
            .order_by(JobDependency.job_id, JobDependency.condition, Job.state)
        ).all()
        for job_id, condition, state, example, count in rows:
            views[job_id].append(DependencyView(condition, state, example, count))
    return {job_id: tuple(v) for job_id, v in views.items()}


def _running(session: Session, now: float) -> tuple[RunningJobView, ...]:
    ahead = aliased(Allocation)  # a chained allocation's: whose run its job waits behind
    rows = session.execute(
        select(Job, Allocation, ahead.job_id)
        .join(Allocation, (Allocation.job_id == Job.id) & Allocation.released_at.is_(None))
        .outerjoin(ahead, (ahead.id == Allocation.after_id) & Allocation.standby.is_(True))
        .where(Job.state.in_([s.value for s in JobState if s.holds_allocation]))
        .order_by(Job.id, Allocation.rank)
    ).all()
    slots: dict[str, list[WorkerSlot]] = defaultdict(list)
    jobs: dict[str, Job] = {}
    behind: dict[str, str] = {}
    served = served_before(session, {job.id for job, _, _ in rows if job.attempt > 1})
    for job, alloc, ahead_job in rows:
        jobs[job.id] = job
        if ahead_job is not None:  # waits behind another run: holds nothing, serves nothing
            behind[job.id] = ahead_job
        else:
            running_s = max(0.0, now - alloc.created_at.timestamp())
            served[job.id] += _worker_weight(alloc.gpus) * running_s
        slots[job.id].append(
            WorkerSlot(
                alloc.node_id, alloc.rank, Resources(alloc.cpus, alloc.memory_bytes, alloc.gpus)
            )
        )
    views = []
    for job_id, job in jobs.items():
        started_at = (job.started_at or job.placed_at or job.submitted_at).timestamp()
        view = job_view(job, attained_service_s=served[job_id])
        end = None
        if job.max_runtime_s:  # the limit holds per attempt: this run ends by then
            end = started_at + job.max_runtime_s
            view = replace(view, estimated_runtime_s=max(0.0, end - now))
        after = behind.get(job_id)
        if after is not None:  # not started: no victim (stopping it would free nothing)
            view = replace(view, preemptible=False)
        running = job.state == JobState.RUNNING.value
        views.append(RunningJobView(view, tuple(slots[job_id]), started_at, end, after, running))
    return tuple(views)
