"""Reading energy back: a job's energy report and the pool's busy/idle totals.

A job's energy is the sum of its per-node parts (that is the invariant the
API promises and the integration test checks). Energy per training sample
is derived here, from what the job itself reported:

* a cumulative `samples` metric, if the job reports one (exact), else
* the mean of its `samples_per_s` reports (current attempt) x the seconds
  the job drew energy (first to last metered interval): joules per sample at
  the job's average throughput.

Jobs reporting neither get no J/sample (None), rather than a made-up one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..store.models import Job, JobEnergyBucket, JobEnergyPart, JobMetric, Node, NodeEnergy
from .carbon_saved import job_baseline_co2e_g
from .energy import J_PER_KWH
from .jobs import get_job

ESTIMATED_NOTE = "estimated from utilisation: no power counter on this node"
MAX_SERIES_POINTS = 1440


@dataclass(frozen=True, slots=True)
class EnergyPoint:
    at: datetime
    energy_j: float
    co2e_g: float


@dataclass(frozen=True, slots=True)
class JobEnergyNode:
    """A job's energy on one node (PUE applied)."""

    node_id: str
    node_name: str | None
    region: str | None
    pue: float
    energy_j: float
    estimated_j: float
    co2e_g: float
    methods: dict[str, str]
    method_note: str | None
    intensity_source: str | None
    intensity_fallback: bool
    first_at: datetime
    last_at: datetime

    @property
    def kwh(self) -> float:
        return self.energy_j / J_PER_KWH

    @property
    def is_estimated(self) -> bool:
        return self.estimated_j > 0


@dataclass(frozen=True, slots=True)
class JobEnergyReport:
    job_id: str
    nodes: list[JobEnergyNode] = field(default_factory=list)
    series: list[EnergyPoint] = field(default_factory=list)
    samples: float | None = None
    samples_basis: str | None = None
    # The g/kWh it would have run at when the carbon policy deferred it (carbon_saved.py).
    baseline_g_per_kwh: float | None = None

    @property
    def baseline_co2e_g(self) -> float | None:
        return job_baseline_co2e_g(self.baseline_g_per_kwh, self.energy_j)

    @property
    def co2e_saved_g(self) -> float | None:
        baseline = self.baseline_co2e_g
        return None if baseline is None else baseline - self.co2e_g

    @property
    def energy_j(self) -> float:
        return sum(n.energy_j for n in self.nodes)

    @property
    def kwh(self) -> float:
        return self.energy_j / J_PER_KWH

    @property
    def co2e_g(self) -> float:
        return sum(n.co2e_g for n in self.nodes)

    @property
    def estimated_percent(self) -> float:
        total = self.energy_j
        return 100.0 * sum(n.estimated_j for n in self.nodes) / total if total > 0 else 0.0

    @property
    def is_estimated(self) -> bool:
        return any(n.is_estimated for n in self.nodes)

    @property
    def methods(self) -> list[str]:
        """`device=method` pairs over all nodes, e.g. `cpu=model`, `gpu0=nvml_energy`."""
        return sorted({f"{d}={m}" for n in self.nodes for d, m in n.methods.items()})

    @property
    def method_summary(self) -> str:
        """One line for humans: the method and, when estimated, why."""
        if not self.nodes:
            return "no energy reported yet"
        if self.is_estimated:
            return f"{ESTIMATED_NOTE} ({', '.join(self.methods)})"
        return "measured: " + ", ".join(self.methods)

    @property
    def intensity_sources(self) -> list[str]:
        return sorted({n.intensity_source for n in self.nodes if n.intensity_source})

    @property
    def intensity_fallback(self) -> bool:
        return any(n.intensity_fallback for n in self.nodes)

    @property
    def g_per_kwh(self) -> float | None:
        """Effective intensity: carbon over energy."""
        return self.co2e_g / self.kwh if self.kwh > 0 else None

    @property
    def first_at(self) -> datetime | None:
        return min((n.first_at for n in self.nodes), default=None)

    @property
    def last_at(self) -> datetime | None:
        return max((n.last_at for n in self.nodes), default=None)

    @property
    def j_per_sample(self) -> float | None:
        return self.energy_j / self.samples if self.samples else None


def job_energy(session: Session, job_id: str) -> JobEnergyReport:
    """The job's energy, carbon, per-node parts and series (404 for an unknown job)."""
    job = get_job(session, job_id)
    rows = session.execute(
        select(JobEnergyPart, Node.name)
        .join(Node, Node.id == JobEnergyPart.node_id)
        .where(JobEnergyPart.job_id == job_id)
        .order_by(JobEnergyPart.node_id)
    ).all()
    nodes = [
        JobEnergyNode(
            node_id=part.node_id,
            node_name=name,
            region=part.region,
            pue=part.pue,
            energy_j=part.energy_j,
            estimated_j=part.estimated_j,
            co2e_g=part.co2e_g,
            methods=dict(part.methods or {}),
            method_note=part.method_note,
            intensity_source=part.intensity_source,
            intensity_fallback=part.intensity_fallback,
            first_at=part.first_at,
            last_at=part.last_at,
        )
        for part, name in rows
    ]
    report = JobEnergyReport(job_id=job_id, nodes=nodes, series=_series(session, job_id))
    samples, basis = _samples(session, job, report)
    return JobEnergyReport(
        job_id, nodes, report.series, samples, basis, job.carbon_baseline_g_per_kwh
    )


def _series(session: Session, job_id: str) -> list[EnergyPoint]:
    """The job's buckets summed over nodes, newest `MAX_SERIES_POINTS`, oldest first."""
    rows = session.execute(
        select(
            JobEnergyBucket.bucket_at,
            func.sum(JobEnergyBucket.energy_j),
            func.sum(JobEnergyBucket.co2e_g),
        )
        .where(JobEnergyBucket.job_id == job_id)
        .group_by(JobEnergyBucket.bucket_at)
        .order_by(JobEnergyBucket.bucket_at.desc())
        .limit(MAX_SERIES_POINTS)
    ).all()
    return [EnergyPoint(at, float(j), float(g)) for at, j, g in reversed(rows)]


def _samples(
    session: Session, job: Job, report: JobEnergyReport
) -> tuple[float | None, str | None]:
    reported = (job.metrics or {}).get("samples")
    if isinstance(reported, int | float) and reported > 0:
        return float(reported), "reported samples"
    if report.first_at is None or report.last_at is None:
        return None, None
    rates = [
        float(values["samples_per_s"])
        for values in session.scalars(
            select(JobMetric.values).where(
                JobMetric.job_id == job.id, JobMetric.attempt == job.attempt
            )
        )
        if isinstance(values.get("samples_per_s"), int | float)
    ]
    seconds = (report.last_at - report.first_at).total_seconds()
    if not rates or seconds <= 0:
        return None, None
    return sum(rates) / len(rates) * seconds, "mean samples_per_s x metered seconds"


@dataclass(frozen=True, slots=True)
class PoolEnergy:
    """Lifetime energy of the pool's nodes: jobs (busy), idle, and non-pool activity."""

    busy_j: float = 0.0
    idle_j: float = 0.0
    other_j: float = 0.0
    estimated_j: float = 0.0
    busy_co2e_g: float = 0.0
    idle_co2e_g: float = 0.0
    other_co2e_g: float = 0.0

    @property
    def total_j(self) -> float:
        return self.busy_j + self.idle_j + self.other_j

    @property
    def total_kwh(self) -> float:
        return self.total_j / J_PER_KWH

    @property
    def co2e_g(self) -> float:
        return self.busy_co2e_g + self.idle_co2e_g + self.other_co2e_g

    @property
    def estimated_percent(self) -> float:
        return 100.0 * self.estimated_j / self.total_j if self.total_j > 0 else 0.0


def pool_energy(session: Session) -> PoolEnergy:
    sums = [
        func.coalesce(func.sum(column), 0.0)
        for column in (
            NodeEnergy.jobs_j,
            NodeEnergy.idle_j,
            NodeEnergy.other_j,
            NodeEnergy.estimated_j,
            NodeEnergy.jobs_co2e_g,
            NodeEnergy.idle_co2e_g,
            NodeEnergy.other_co2e_g,
        )
    ]
    row = session.execute(select(*sums)).one()
    return PoolEnergy(*(float(v) for v in row))
