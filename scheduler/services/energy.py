"""Recording what agents measured: per-job energy and carbon, node totals, a bounded series.

Called from the heartbeat route with the batch an agent sends (see
`workers/agent/energy.py`). Decisions made here, once, at write time:

* **PUE** is the node's registered `pue`, applied here: agents send
  metered joules, so a donor cannot change the factor without re-enrolling.
* **Carbon** = kWh x the mean intensity of the node's region over each
  interval (`carbon_for` over the provider chain), so an evening peak is
  charged at evening intensity even for a long job. The answering source
  is stored per job and node.
* **Only jobs that were allocated to this node** get energy: anything an
  agent reports for other job ids goes to the node's "other" bucket.
* Totals (`job_energy`, `node_energy`) are kept for ever; the per-job
  series (`job_energy_buckets`) is rolled into fixed buckets and pruned
  after the retention, so storage stays bounded.

Writes are `UPDATE ... SET x = x + :d` with an INSERT when no row exists,
so replays of the same statement never lose an earlier increment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from ..carbon import IntensityProvider, carbon_for
from ..store.models import Allocation, Base, JobEnergyBucket, JobEnergyPart, Node, NodeEnergy
from ..store.models import utcnow as _utcnow

J_PER_KWH = 3.6e6


class JobPartIn(Protocol):
    """One job's share of an interval, as metered (before PUE)."""

    @property
    def joules(self) -> float: ...

    @property
    def estimated_j(self) -> float: ...


class IntervalIn(Protocol):
    """A node's energy over one interval: total = jobs + idle + other (before PUE)."""

    @property
    def start(self) -> datetime: ...

    @property
    def end(self) -> datetime: ...

    @property
    def total_j(self) -> float: ...

    @property
    def idle_j(self) -> float: ...

    @property
    def other_j(self) -> float: ...

    @property
    def estimated_j(self) -> float: ...

    @property
    def cpu_utilization(self) -> float | None: ...

    @property
    def jobs(self) -> Mapping[str, JobPartIn]: ...


class EnergyBatchIn(Protocol):
    """What one heartbeat carries: how the node measures, and the intervals since last time."""

    @property
    def methods(self) -> Mapping[str, str]: ...

    @property
    def is_estimated(self) -> bool: ...

    @property
    def note(self) -> str | None: ...

    @property
    def intervals(self) -> Sequence[IntervalIn]: ...


@dataclass(frozen=True, slots=True)
class SeriesPolicy:
    """Bucket width and retention of the per-job series (from Settings)."""

    bucket_s: int = 60
    retention_s: int = 7 * 86400


def record_energy(
    session: Session,
    node: Node,
    batch: EnergyBatchIn,
    *,
    carbon: IntensityProvider,
    series: SeriesPolicy = SeriesPolicy(),
    now: datetime | None = None,
) -> None:
    """Fold one heartbeat's energy batch into the registry (same transaction as the heartbeat)."""
    now = now or _utcnow()
    reported = {job_id for interval in batch.intervals for job_id in interval.jobs}
    allowed = _jobs_allocated_here(session, node.id, reported)
    region = node.region or ""
    methods = dict(batch.methods)
    note = batch.note[:1000] if batch.note else None
    for interval in batch.intervals:
        if interval.end <= interval.start:
            continue
        estimate = carbon_for(1.0, region, interval.start, interval.end, provider=carbon)
        g_per_j = estimate.g_per_kwh / J_PER_KWH
        bucket_at = _bucket(interval.start, interval.end, series.bucket_s)
        jobs_j = stray_j = 0.0
        for job_id, part in interval.jobs.items():
            if job_id not in allowed:
                stray_j += part.joules
                continue
            joules, estimated = part.joules * node.pue, part.estimated_j * node.pue
            jobs_j += joules
            _accumulate(
                session,
                JobEnergyPart,
                {"job_id": job_id, "node_id": node.id},
                add={"energy_j": joules, "estimated_j": estimated, "co2e_g": joules * g_per_j},
                assign={
                    "last_at": interval.end,
                    "pue": node.pue,
                    "region": node.region,
                    "intensity_source": estimate.source[:200],
                    "intensity_fallback": estimate.is_fallback,
                    "methods": methods,
                    "method_note": note,
                },
                on_insert={"first_at": interval.start},
            )
            _accumulate(
                session,
                JobEnergyBucket,
                {"job_id": job_id, "node_id": node.id, "bucket_at": bucket_at},
                add={"energy_j": joules, "co2e_g": joules * g_per_j},
            )
        idle_j = interval.idle_j * node.pue
        other_j = (interval.other_j + stray_j) * node.pue
        seconds = (interval.end - interval.start).total_seconds()
        _accumulate(
            session,
            NodeEnergy,
            {"node_id": node.id},
            add={
                "jobs_j": jobs_j,
                "idle_j": idle_j,
                "other_j": other_j,
                "estimated_j": interval.estimated_j * node.pue,
                "jobs_co2e_g": jobs_j * g_per_j,
                "idle_co2e_g": idle_j * g_per_j,
                "other_co2e_g": other_j * g_per_j,
            },
            assign={
                "power_w": interval.total_j * node.pue / seconds,
                "cpu_utilization": interval.cpu_utilization,
                "methods": methods,
                "is_estimated": batch.is_estimated,
                "method_note": note,
                "intensity_source": estimate.source[:200],
                "updated_at": now,
            },
        )
    session.execute(
        delete(JobEnergyBucket)
        .where(
            JobEnergyBucket.node_id == node.id,
            JobEnergyBucket.bucket_at < now - timedelta(seconds=series.retention_s),
        )
        .execution_options(synchronize_session=False)
    )


def _jobs_allocated_here(session: Session, node_id: str, job_ids: set[str]) -> set[str]:
    """The reported jobs that ever held an allocation on this node (any attempt).

    Released allocations count: the last interval of a job arrives after the
    scheduler has released it.
    """
    if not job_ids:
        return set()
    return set(
        session.scalars(
            select(Allocation.job_id)
            .where(Allocation.node_id == node_id, Allocation.job_id.in_(sorted(job_ids)))
            .distinct()
        )
    )


def _bucket(start: datetime, end: datetime, width_s: int) -> datetime:
    """Start of the fixed bucket holding the interval's midpoint (UTC, epoch-aligned)."""
    mid = start.timestamp() + (end - start).total_seconds() / 2
    return datetime.fromtimestamp(mid - mid % width_s, UTC)


def _accumulate(
    session: Session,
    model: type[Base],
    key: dict[str, Any],
    *,
    add: dict[str, float],
    assign: dict[str, Any] | None = None,
    on_insert: dict[str, Any] | None = None,
) -> None:
    """`col = col + value` for `add`, `col = value` for `assign`; insert the row if missing."""
    assign = assign or {}
    values: dict[str, Any] = {name: getattr(model, name) + value for name, value in add.items()}
    stmt = (
        update(model)
        .where(*(getattr(model, name) == value for name, value in key.items()))
        .values(**values, **assign)
        .execution_options(synchronize_session=False)
    )
    if session.execute(stmt).rowcount == 0:  # type: ignore[attr-defined]
        session.add(model(**key, **add, **assign, **(on_insert or {})))
        session.flush()
