"""What the pool uses now: resources by type, per-node holdings, power, and job energy since T.

* **Resources by type**: CPUs, and GPUs per `gpu_type` ("untyped" when a
  node names none), total / used / free. Total and used count present nodes
  (ONLINE, DRAINING, CORDONED); free only ONLINE ones, as `pool_summary`.
* **Power now**: the sum of the latest `node_energy.power_w` of present
  nodes whose reading is fresher than `fresh_s` (the API passes the node
  lease: an older reading belongs to a node that stopped reporting). It is
  estimated when any summed node's energy comes from the utilisation model.
* **Energy since T** (the dashboard's "today"): the jobs' energy and carbon
  from the per-job series buckets (default bucket 60 s, filed by midpoint).
  Idle energy has no series (only lifetime totals, see `pool_energy`), so
  this figure is the jobs' part only, and the API says so.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..domain.states import NodeState
from ..store.models import HELD, Allocation, JobEnergyBucket, Node, NodeEnergy, utcnow

PRESENT = frozenset({NodeState.ONLINE, NodeState.DRAINING, NodeState.CORDONED})
UNTYPED = "untyped"


@dataclass(frozen=True, slots=True)
class ResourceByType:
    kind: str  # "cpu" or "gpu"
    type: str  # "cpu", or the GPU type
    total: float
    used: float
    free: float


@dataclass(frozen=True, slots=True)
class NodeUsage:
    node_id: str
    name: str
    state: str
    cpus_used: float
    memory_bytes_used: int
    gpus_used: int
    jobs: int
    power_w: float | None
    power_at: datetime | None
    power_fresh: bool
    cpu_utilization: float | None
    is_estimated: bool


@dataclass(frozen=True, slots=True)
class PoolUsage:
    at: datetime
    by_type: list[ResourceByType]
    nodes: list[NodeUsage]
    power_w: float
    power_nodes: int
    power_estimated: bool
    since: datetime
    jobs_energy_j: float
    jobs_co2e_g: float


def start_of_day(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def pool_usage(
    session: Session,
    *,
    fresh_s: float,
    since: datetime | None = None,
    now: datetime | None = None,
) -> PoolUsage:
    """The pool's use now; `since` defaults to the start of today (UTC)."""
    now = now or utcnow()
    since = since or start_of_day(now)
    held = _held(session)
    rows = session.execute(
        select(Node, NodeEnergy).outerjoin(NodeEnergy, NodeEnergy.node_id == Node.id)
        .order_by(Node.name, Node.id)
    ).all()
    fresh_after = now - timedelta(seconds=fresh_s)
    nodes = []
    for node, energy in rows:
        cpus, memory, gpus, jobs = held.get(node.id, (0.0, 0, 0, 0))
        fresh = (
            energy is not None
            and energy.power_w is not None
            and NodeState(node.state) in PRESENT
            and energy.updated_at >= fresh_after
        )
        nodes.append(
            NodeUsage(
                node_id=node.id,
                name=node.name,
                state=node.state,
                cpus_used=cpus,
                memory_bytes_used=memory,
                gpus_used=gpus,
                jobs=jobs,
                power_w=energy.power_w if energy is not None else None,
                power_at=energy.updated_at if energy is not None else None,
                power_fresh=fresh,
                cpu_utilization=energy.cpu_utilization if energy is not None else None,
                is_estimated=bool(energy is not None and energy.is_estimated),
            )
        )
    powered = [n for n in nodes if n.power_fresh]
    joules, grams = session.execute(
        select(
            func.coalesce(func.sum(JobEnergyBucket.energy_j), 0.0),
            func.coalesce(func.sum(JobEnergyBucket.co2e_g), 0.0),
        ).where(JobEnergyBucket.bucket_at >= since)
    ).one()
    return PoolUsage(
        at=now,
        by_type=_by_type([node for node, _ in rows], held),
        nodes=nodes,
        power_w=sum(n.power_w or 0.0 for n in powered),
        power_nodes=len(powered),
        power_estimated=any(n.is_estimated for n in powered),
        since=since,
        jobs_energy_j=float(joules),
        jobs_co2e_g=float(grams),
    )


def _held(session: Session) -> dict[str, tuple[float, int, int, int]]:
    """Per node: CPUs, memory and GPUs held by active allocations, and how many jobs."""
    rows = session.execute(
        select(
            Allocation.node_id,
            func.sum(Allocation.cpus),
            func.sum(Allocation.memory_bytes),
            func.sum(Allocation.gpus),
            func.count(func.distinct(Allocation.job_id)),
        )
        .where(HELD)
        .group_by(Allocation.node_id)
    ).all()
    return {n: (float(c or 0), int(m or 0), int(g or 0), int(j)) for n, c, m, g, j in rows}


def _by_type(
    nodes: list[Node], held: dict[str, tuple[float, int, int, int]]
) -> list[ResourceByType]:
    total: defaultdict[tuple[str, str], float] = defaultdict(float)
    used: defaultdict[tuple[str, str], float] = defaultdict(float)
    free: defaultdict[tuple[str, str], float] = defaultdict(float)
    for node in nodes:
        state = NodeState(node.state)
        if state not in PRESENT:
            continue
        cpus, _, gpus, _ = held.get(node.id, (0.0, 0, 0, 0))
        keys = [(("cpu", "cpu"), node.cpus, cpus)]
        if node.gpus:
            keys.append((("gpu", node.gpu_type or UNTYPED), float(node.gpus), float(gpus)))
        for key, capacity, in_use in keys:
            total[key] += capacity
            used[key] += in_use
            if state is NodeState.ONLINE:
                free[key] += max(0.0, capacity - in_use)
    return [
        ResourceByType(kind, kind_type, total[(kind, kind_type)], used[(kind, kind_type)],
                       free[(kind, kind_type)])
        for kind, kind_type in sorted(total)
    ]
