"""Immutable views of the pool that every policy reads.

A policy sees the world only through a :class:`ClusterSnapshot`; the live loop builds one
from SQL rows and the simulator builds one from its in-memory world. Keeping the views frozen
and free of clocks, sessions and Ray handles is what lets both callers share one decision code.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace


@dataclass(frozen=True, slots=True)
class Resources:
    """An amount of cpus, memory and GPUs (a demand or a capacity)."""

    cpus: float = 0.0
    memory_bytes: int = 0
    gpus: int = 0

    def fits(self, other: Resources) -> bool:
        """True if ``other`` (a demand) fits inside ``self`` (a capacity)."""
        return (
            other.cpus <= self.cpus + 1e-9
            and other.memory_bytes <= self.memory_bytes
            and other.gpus <= self.gpus
        )

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            self.cpus + other.cpus,
            self.memory_bytes + other.memory_bytes,
            self.gpus + other.gpus,
        )

    def __sub__(self, other: Resources) -> Resources:
        return Resources(
            self.cpus - other.cpus,
            self.memory_bytes - other.memory_bytes,
            self.gpus - other.gpus,
        )

    def scaled(self, n: int) -> Resources:
        """The demand of ``n`` identical workers."""
        return Resources(self.cpus * n, self.memory_bytes * n, self.gpus * n)

    def copies_in(self, capacity: Resources) -> int:
        """How many copies of this demand fit in ``capacity`` (large if the demand is zero)."""
        counts = [1 << 30]
        if self.gpus > 0:
            counts.append(capacity.gpus // self.gpus)
        if self.cpus > 0:
            counts.append(math.floor(capacity.cpus / self.cpus + 1e-9))
        if self.memory_bytes > 0:
            counts.append(capacity.memory_bytes // self.memory_bytes)
        return max(0, min(counts))

    def __str__(self) -> str:
        gib = self.memory_bytes / 2**30
        return f"{self.gpus} gpus, {self.cpus:g} cpus, {gib:.1f} GiB"


@dataclass(frozen=True, slots=True)
class NodeView:
    """A schedulable (ONLINE) node; ``free`` already excludes running allocations."""

    id: str
    total: Resources
    free: Resources
    gpu_type: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    region: str | None = None
    donor_project: str | None = None
    carbon_intensity: float | None = None


@dataclass(frozen=True, slots=True)
class DependencyView:
    """Some of a job's dependencies: those with one `condition` whose job is now in `state`.

    `condition` is `ok`, `any` or `fail` (see `spec.Dependency`), `state` a `JobState`
    value, `count` how many dependencies share both, `job_id` one of them (named in
    reasons). Grouped, so a task waiting on a 5,000-task array is a few views, not 5,000.
    """

    condition: str
    state: str
    job_id: str
    count: int = 1


@dataclass(frozen=True, slots=True)
class JobView:
    """A job as the policy needs it: a gang of identical workers plus ordering facts."""

    id: str
    per_worker: Resources
    workers_min: int = 1
    workers_max: int = 1
    gpu_type: str | None = None
    priority: int = 0
    project: str = "default"
    owner: str = "anonymous"
    submitted_at: float = 0.0
    attained_service_s: float = 0.0
    deadline: float | None = None
    job_type: str | None = None
    label_selector: Mapping[str, str] = field(default_factory=dict)
    # Optional user/oracle estimate of the time the job still needs (for a running job: from
    # now); backfill, srpt and the carbon layer use it. Live: what is left of max_runtime_s.
    estimated_runtime_s: float | None = None
    # GPU types the job cannot run on (e.g. too little memory); a softer form of gpu_type.
    excluded_gpu_types: frozenset[str] = frozenset()
    # Carbon-aware scheduling (``+carbon``): the job may be shifted in time/space to cleaner
    # power as long as ``deadline`` holds; jobs with carbon ``ignore`` leave this False.
    carbon_aware: bool = False
    # Times the ``carbon`` layer has already suspended this job at a checkpoint.
    carbon_suspensions: int = 0
    # A task of a job array or sweep: the array's id, the task's index, and how many tasks
    # of the array may hold resources at once (None: no limit). Read by the ``gates`` layer.
    array_id: str | None = None
    array_index: int | None = None
    array_limit: int | None = None
    # What the job must wait for before it may start (``gates``); () for most jobs.
    dependencies: tuple[DependencyView, ...] = ()
    # False for a job that cannot be stopped and resumed without harm (a service: stopping
    # it takes its endpoint down). Policies never pick it as a preemption victim, nor
    # suspend or regrow it; it runs until it ends or is cancelled.
    preemptible: bool = True
    # A single-node command job that ships nothing: its node's executor can run it the
    # moment the run ahead of it in its slot ends (`chain`).
    chainable: bool = False

    @property
    def min_demand(self) -> Resources:
        """The smallest total demand the gang can start with."""
        return self.per_worker.scaled(self.workers_min)


@dataclass(frozen=True, slots=True)
class WorkerSlot:
    """One worker of a job on one node."""

    node_id: str
    rank: int
    resources: Resources


@dataclass(frozen=True, slots=True)
class RunningJobView:
    """A job holding resources now; ``expected_end`` is optional (backfill's shadow time)."""

    job: JobView
    workers: tuple[WorkerSlot, ...]
    started_at: float
    expected_end: float | None = None
    # A chained job (`chain`) waiting behind running job `after`: its slot is that job's,
    # so its workers hold nothing of their own (not in any node's used resources) yet.
    after: str | None = None
    # False while its run has not been seen started (live: PLACED or STARTING), so
    # `started_at` is only when it was placed.
    running: bool = True

    @property
    def gpus(self) -> int:
        return sum(w.resources.gpus for w in self.workers)


@dataclass(frozen=True, slots=True)
class ClusterSnapshot:
    """Everything one scheduling cycle may look at, frozen at ``now``."""

    now: float
    nodes: tuple[NodeView, ...]
    queued: tuple[JobView, ...]
    running: tuple[RunningJobView, ...] = ()
    project_weights: Mapping[str, float] = field(default_factory=dict)
    donor_credits: Mapping[str, float] = field(default_factory=dict)
    # Carbon-intensity forecast per region: ``((t, g_per_kwh), ...)`` on this snapshot's
    # clock, each value holding until the next point (read only by the ``carbon`` layer).
    carbon_forecast: Mapping[str, tuple[tuple[float, float], ...]] = field(default_factory=dict)
    # Unix time of ``now == 0`` (0 live, where ``now`` is epoch seconds; the simulator's
    # calendar start): only used to print human times such as "expected start 03:00".
    epoch_offset_s: float = 0.0

    def without(self, job_ids: Iterable[str]) -> ClusterSnapshot:
        """A what-if copy with these queued jobs removed and these running jobs stopped.

        Stopped jobs give their slots back to the nodes' free resources, so a caller can ask
        "would J fit if K were preempted?" without touching the real state.
        """
        drop = set(job_ids)
        freed: dict[str, Resources] = {}
        for run in self.running:
            if run.job.id in drop and run.after is None:  # a chained run holds nothing
                for slot in run.workers:
                    freed[slot.node_id] = freed.get(slot.node_id, Resources()) + slot.resources
        nodes = tuple(
            replace(n, free=n.free + freed[n.id]) if n.id in freed else n for n in self.nodes
        )
        return replace(
            self,
            nodes=nodes,
            queued=tuple(j for j in self.queued if j.id not in drop),
            running=tuple(r for r in self.running if r.job.id not in drop),
        )
