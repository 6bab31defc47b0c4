"""Pool-wide figures: counts by state, resources total/used/free, energy busy/idle, carbon
saved by carbon-aware timing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..domain.states import JobState, NodeState
from ..store.models import HELD, Allocation, Job, Node
from .carbon_saved import CarbonSaved, carbon_saved
from .energy_report import PoolEnergy, pool_energy


@dataclass(frozen=True, slots=True)
class ResourceTotals:
    cpus: float = 0.0
    memory_bytes: int = 0
    gpus: int = 0


@dataclass(frozen=True, slots=True)
class PoolSummary:
    jobs_by_state: dict[str, int]
    nodes_by_state: dict[str, int]
    total: ResourceTotals
    used: ResourceTotals
    free: ResourceTotals
    energy: PoolEnergy
    carbon_saved: CarbonSaved


def pool_summary(session: Session) -> PoolSummary:
    """Capacity counts ONLINE/DRAINING/CORDONED nodes; free counts only ONLINE ones."""
    jobs = dict(session.execute(select(Job.state, func.count()).group_by(Job.state)).all())
    nodes = dict(session.execute(select(Node.state, func.count()).group_by(Node.state)).all())
    present = (NodeState.ONLINE, NodeState.DRAINING, NodeState.CORDONED)
    online = (NodeState.ONLINE,)
    online_cap, online_used = _capacity(session, online), _used(session, online)
    return PoolSummary(
        jobs_by_state={s.value: int(jobs.get(s.value, 0)) for s in JobState},
        nodes_by_state={s.value: int(nodes.get(s.value, 0)) for s in NodeState},
        total=_capacity(session, present),
        used=_used(session, present),
        free=ResourceTotals(
            online_cap.cpus - online_used.cpus,
            online_cap.memory_bytes - online_used.memory_bytes,
            online_cap.gpus - online_used.gpus,
        ),
        energy=pool_energy(session),
        carbon_saved=carbon_saved(session),
    )


def _capacity(session: Session, states: tuple[NodeState, ...]) -> ResourceTotals:
    row = session.execute(
        select(
            func.coalesce(func.sum(Node.cpus), 0),
            func.coalesce(func.sum(Node.memory_bytes), 0),
            func.coalesce(func.sum(Node.gpus), 0),
        ).where(Node.state.in_([s.value for s in states]))
    ).one()
    return _totals(row)


def _used(session: Session, states: tuple[NodeState, ...]) -> ResourceTotals:
    row = session.execute(
        select(
            func.coalesce(func.sum(Allocation.cpus), 0),
            func.coalesce(func.sum(Allocation.memory_bytes), 0),
            func.coalesce(func.sum(Allocation.gpus), 0),
        )
        .join(Node, Node.id == Allocation.node_id)
        .where(HELD, Node.state.in_([s.value for s in states]))
    ).one()
    return _totals(row)


def _totals(row: Any) -> ResourceTotals:
    return ResourceTotals(float(row[0]), int(row[1]), int(row[2]))
