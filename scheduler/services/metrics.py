"""The registry figures Prometheus scrapes, read in one short read transaction.

Plain data out (no prometheus_client here): `api/metrics.py` turns it into
metric families. Reading the database on each scrape, rather than keeping
counters in the process, means every API replica reports the same truth
and nothing global leaks between apps or tests.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from ..domain.states import JobState, NodeState
from ..store.models import HELD, Allocation, Job, JobEnergyPart, Node, NodeEnergy, utcnow
from .energy_report import PoolEnergy, pool_energy

PRESENT = (NodeState.ONLINE, NodeState.DRAINING, NodeState.CORDONED)
ACTIVE_JOBS = tuple(s.value for s in JobState if not s.terminal)
JOB_ENERGY_RECENT = timedelta(hours=1)
NO_GPU_TYPE = "none"


@dataclass
class Capacity:
    """Allocated (on present nodes) and free (on ONLINE nodes) resources of one gpu type."""

    allocated_cpus: float = 0.0
    free_cpus: float = 0.0
    allocated_gpus: float = 0.0
    free_gpus: float = 0.0
    allocated_memory_bytes: float = 0.0
    free_memory_bytes: float = 0.0


@dataclass(frozen=True, slots=True)
class NodePower:
    node_id: str
    name: str
    power_w: float | None
    cpu_utilization: float | None


@dataclass(frozen=True, slots=True)
class JobEnergyTotal:
    job_id: str
    energy_j: float
    co2e_g: float


@dataclass
class MetricsSnapshot:
    jobs_by_state: dict[str, int]
    nodes_by_state: dict[str, int]
    wait_seconds: list[float]
    capacity: dict[str, Capacity]
    nodes: list[NodePower]
    jobs_energy: list[JobEnergyTotal]
    pool: PoolEnergy = field(default_factory=PoolEnergy)


def metrics_snapshot(session: Session, *, now: datetime | None = None) -> MetricsSnapshot:
    now = now or utcnow()
    jobs = dict(session.execute(select(Job.state, func.count()).group_by(Job.state)).all())
    nodes = dict(session.execute(select(Node.state, func.count()).group_by(Node.state)).all())
    return MetricsSnapshot(
        jobs_by_state={s.value: int(jobs.get(s.value, 0)) for s in JobState},
        nodes_by_state={s.value: int(nodes.get(s.value, 0)) for s in NodeState},
        wait_seconds=_wait_seconds(session),
        capacity=_capacity_by_gpu_type(session),
        nodes=_node_power(session),
        jobs_energy=_recent_job_energy(session, now - JOB_ENERGY_RECENT),
        pool=pool_energy(session),
    )


def _wait_seconds(session: Session) -> list[float]:
    """Queue wait (submitted -> started) of every job that started (current attempt)."""
    rows = session.execute(
        select(Job.submitted_at, Job.started_at).where(Job.started_at.is_not(None))
    ).all()
    return [max((started - submitted).total_seconds(), 0.0) for submitted, started in rows]


def _capacity_by_gpu_type(session: Session) -> dict[str, Capacity]:
    out: dict[str, Capacity] = defaultdict(Capacity)
    present = [s.value for s in PRESENT]
    for gpu_type, state, cpus, gpus, memory in session.execute(
        select(Node.gpu_type, Node.state, Node.cpus, Node.gpus, Node.memory_bytes).where(
            Node.state.in_(present)
        )
    ):
        if state == NodeState.ONLINE.value:
            cap = out[gpu_type or NO_GPU_TYPE]
            cap.free_cpus += cpus
            cap.free_gpus += gpus
            cap.free_memory_bytes += memory
    used = session.execute(
        select(
            Node.gpu_type,
            Node.state,
            func.sum(Allocation.cpus),
            func.sum(Allocation.gpus),
            func.sum(Allocation.memory_bytes),
        )
        .join(Node, Node.id == Allocation.node_id)
        .where(HELD, Node.state.in_(present))
        .group_by(Node.gpu_type, Node.state)
    )
    for gpu_type, state, cpus, gpus, memory in used:
        cap = out[gpu_type or NO_GPU_TYPE]
        cap.allocated_cpus += float(cpus or 0)
        cap.allocated_gpus += float(gpus or 0)
        cap.allocated_memory_bytes += float(memory or 0)
        if state == NodeState.ONLINE.value:
            cap.free_cpus -= float(cpus or 0)
            cap.free_gpus -= float(gpus or 0)
            cap.free_memory_bytes -= float(memory or 0)
    return dict(out)


def _node_power(session: Session) -> list[NodePower]:
    rows = session.execute(
        select(Node.id, Node.name, NodeEnergy.power_w, NodeEnergy.cpu_utilization)
        .join(NodeEnergy, NodeEnergy.node_id == Node.id)
        .where(Node.state.in_([s.value for s in PRESENT]))
        .order_by(Node.id)
    ).all()
    return [NodePower(*row) for row in rows]


def _recent_job_energy(session: Session, since: datetime) -> list[JobEnergyTotal]:
    """Energy of jobs still active or metered within `JOB_ENERGY_RECENT`: bounded cardinality."""
    recent = select(JobEnergyPart.job_id).where(JobEnergyPart.last_at >= since)
    rows = session.execute(
        select(
            JobEnergyPart.job_id, func.sum(JobEnergyPart.energy_j), func.sum(JobEnergyPart.co2e_g)
        )
        .join(Job, Job.id == JobEnergyPart.job_id)
        .where(or_(Job.state.in_(ACTIVE_JOBS), JobEnergyPart.job_id.in_(recent)))
        .group_by(JobEnergyPart.job_id)
        .order_by(JobEnergyPart.job_id)
    ).all()
    return [JobEnergyTotal(job_id, float(j), float(g)) for job_id, j, g in rows]
