"""Per-project fairness as the dashboard shows it: entitled share vs usage, and donor credits.

For every project (a `projects` row, or a name that jobs or donated nodes carry):

* **weight share**: its weight over the sum of all projects' weights, what
  it would get if every project wanted the whole pool;
* **entitled share**: the `fair` policy's own water-fill (weighted max-min
  of dominant share, capped by demand) over the projects that run or queue
  work now, so a project alone in the pool is entitled to what it asks;
* **usage share**: the dominant share (largest fraction of CPUs, GPUs or
  memory) its active allocations hold of the pool's capacity (nodes
  ONLINE, DRAINING or CORDONED, as `pool_summary`'s total);
* **donor credits**: what nodes whose `donor_project` is the project give
  the pool: present nodes and their CPUs/GPUs, and the lifetime energy
  those machines spent on pool jobs (PUE applied).

Read-only, a handful of grouped queries, none per project.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from ..domain.states import JobState, NodeState
from ..policy.fair import dominant_share, water_fill
from ..policy.snapshot import Resources
from ..store.models import HELD, Allocation, Job, JobEnergyPart, Node, NodeEnergy, Project

PRESENT = (NodeState.ONLINE, NodeState.DRAINING, NodeState.CORDONED)
DEFAULT_WEIGHT = 1.0  # a project without a row weighs what `effective_weights` gives it


@dataclass(frozen=True, slots=True)
class ProjectFairness:
    project: str
    weight: float
    weight_share: float
    entitled_share: float
    usage_share: float
    cpus_used: float
    gpus_used: int
    memory_bytes_used: int
    running_jobs: int
    queued_jobs: int
    energy_j: float
    co2e_g: float
    donated_nodes: int
    donated_cpus: float
    donated_gpus: int
    donated_energy_j: float


@dataclass(frozen=True, slots=True)
class PoolFairness:
    capacity: Resources
    projects: list[ProjectFairness]


def pool_fairness(session: Session) -> PoolFairness:
    """Every project's shares, usage and donations, by name."""
    weights = {name: float(w) for name, w in session.execute(select(Project.name, Project.weight))}
    capacity = _capacity(session)
    usage, running = _usage(session)
    queued, queued_demand = _queued(session)
    energy = _energy_used(session)
    donated, donated_energy = _donated(session)
    names = sorted(set(weights) | set(usage) | set(queued) | set(donated) | set(donated_energy))
    weight = {p: weights.get(p, DEFAULT_WEIGHT) for p in names}
    total_weight = sum(weight.values())
    active = [p for p in names if running.get(p) or queued.get(p)]
    demand = {
        p: min(1.0, dominant_share(usage.get(p, Resources()) + queued_demand[p], capacity))
        for p in active
    }
    entitled = water_fill(demand, {p: weight[p] for p in active}) if active else {}
    projects = []
    for p in names:
        used = usage.get(p, Resources())
        nodes, cpus, gpus = donated.get(p, (0, 0.0, 0))
        joules, grams = energy.get(p, (0.0, 0.0))
        projects.append(
            ProjectFairness(
                project=p,
                weight=weight[p],
                weight_share=weight[p] / total_weight if total_weight > 0 else 0.0,
                entitled_share=entitled.get(p, 0.0),
                usage_share=dominant_share(used, capacity),
                cpus_used=used.cpus,
                gpus_used=used.gpus,
                memory_bytes_used=used.memory_bytes,
                running_jobs=running.get(p, 0),
                queued_jobs=queued.get(p, 0),
                energy_j=joules,
                co2e_g=grams,
                donated_nodes=nodes,
                donated_cpus=cpus,
                donated_gpus=gpus,
                donated_energy_j=donated_energy.get(p, 0.0),
            )
        )
    return PoolFairness(capacity=capacity, projects=projects)


def _capacity(session: Session) -> Resources:
    cpus, memory, gpus = session.execute(
        select(
            func.coalesce(func.sum(Node.cpus), 0),
            func.coalesce(func.sum(Node.memory_bytes), 0),
            func.coalesce(func.sum(Node.gpus), 0),
        ).where(Node.state.in_([s.value for s in PRESENT]))
    ).one()
    return Resources(float(cpus), int(memory), int(gpus))


def _usage(session: Session) -> tuple[dict[str, Resources], dict[str, int]]:
    """Resources held by active allocations, and jobs holding any, per project."""
    rows = session.execute(
        select(
            Job.project,
            func.sum(Allocation.cpus),
            func.sum(Allocation.memory_bytes),
            func.sum(Allocation.gpus),
            func.count(distinct(Job.id)),
        )
        .join(Job, Job.id == Allocation.job_id)
        .where(HELD)
        .group_by(Job.project)
    ).all()
    usage = {p: Resources(float(c or 0), int(m or 0), int(g or 0)) for p, c, m, g, _ in rows}
    return usage, {p: int(n) for p, *_, n in rows}


def _queued(session: Session) -> tuple[dict[str, int], defaultdict[str, Resources]]:
    """Queued jobs per project, and what their smallest gangs ask for (the policy's demand)."""
    rows = session.execute(
        select(
            Job.project,
            func.count(),
            func.sum(Job.cpus_per_worker * Job.workers_min),
            func.sum(Job.memory_bytes_per_worker * Job.workers_min),
            func.sum(Job.gpus_per_worker * Job.workers_min),
        )
        .where(Job.state == JobState.QUEUED.value)
        .group_by(Job.project)
    ).all()
    demand: defaultdict[str, Resources] = defaultdict(Resources)
    for p, _, cpus, memory, gpus in rows:
        demand[p] = Resources(float(cpus or 0), int(memory or 0), int(gpus or 0))
    return {p: int(n) for p, n, *_ in rows}, demand


def _energy_used(session: Session) -> dict[str, tuple[float, float]]:
    """Lifetime energy and carbon of each project's jobs (PUE applied)."""
    rows = session.execute(
        select(Job.project, func.sum(JobEnergyPart.energy_j), func.sum(JobEnergyPart.co2e_g))
        .join(Job, Job.id == JobEnergyPart.job_id)
        .group_by(Job.project)
    ).all()
    return {p: (float(j or 0), float(g or 0)) for p, j, g in rows}


def _donated(session: Session) -> tuple[dict[str, tuple[int, float, int]], dict[str, float]]:
    """Present donated nodes (count, CPUs, GPUs), and every donated node's energy on jobs."""
    present = session.execute(
        select(Node.donor_project, func.count(), func.sum(Node.cpus), func.sum(Node.gpus))
        .where(Node.donor_project.is_not(None), Node.state.in_([s.value for s in PRESENT]))
        .group_by(Node.donor_project)
    ).all()
    energy = session.execute(
        select(Node.donor_project, func.sum(NodeEnergy.jobs_j))
        .join(NodeEnergy, NodeEnergy.node_id == Node.id)
        .where(Node.donor_project.is_not(None))
        .group_by(Node.donor_project)
    ).all()
    return (
        {p: (int(n), float(c or 0), int(g or 0)) for p, n, c, g in present},
        {p: float(j or 0) for p, j in energy},
    )
