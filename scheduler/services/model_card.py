"""An artifact's model card: what a reader needs to trust and reuse it.

Assembled from the registry on every read (never stored), so it cannot go
stale: training facts come from the job that produced the artifact, its
energy and carbon from the energy records with their method, compression
results from the compression jobs run on that job's checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..domain.artifacts import InputRole
from ..domain.states import JobState
from ..store.models import Allocation, Artifact, Job, JobInput
from .artifacts import job_inputs
from .energy_report import job_energy

# The compression pipeline's entry point (commonpool.workers.compress.job), named here
# because the scheduler does not import workers; its `source_job` arg names the model's job.
COMPRESSION_ENTRYPOINT = "commonpool.workers.compress.job:run"
COMPRESSION_JOBS_SCANNED = 200


def model_card(session: Session, artifact: Artifact) -> dict[str, Any]:
    """What a reader needs to trust and reuse it, assembled from the registry on each read.

    Training facts (metrics, time, nodes, energy and carbon with their
    method) come from the job that produced it, so a card is never stale;
    reuse counts the jobs that started from it, and "energy saved by
    reuse" is its training energy once per such job (each would otherwise
    have trained it again).
    """
    card: dict[str, Any] = {
        "artifact": f"{artifact.name}@{artifact.version}",
        "kind": artifact.kind,
        "format": artifact.format,
        "sha256": artifact.sha256,
        "size_bytes": artifact.size_bytes,
        "owner": artifact.owner,
        "project": artifact.project,
        "visibility": artifact.visibility,
        "licence": artifact.licence,
        "description": artifact.description,
        "lineage": _lineage(session, artifact),
    }
    training_kwh = None
    job = session.get(Job, artifact.produced_by_job) if artifact.produced_by_job else None
    if job is not None:
        energy = job_energy(session, job.id)
        training_kwh = energy.kwh
        card["training"] = {
            "job": job.id,
            "job_name": job.name,
            "entrypoint": job.entrypoint,
            "args": job.args,
            "metrics": job.metrics,
            "attempts": job.attempt,
            "training_time_s": (
                (job.ended_at - job.started_at).total_seconds()
                if job.started_at and job.ended_at
                else None
            ),
            "nodes": _nodes_of(session, job.id),
            "energy": {
                "kwh": energy.kwh,
                "co2e_g": energy.co2e_g,
                "estimated_percent": energy.estimated_percent,
                "method": energy.method_summary,
                "intensity_sources": energy.intensity_sources,
            },
        }
        compression = _compression_results(session, job)
        if compression:
            card["compression"] = compression
    reused_by = session.scalar(
        select(func.count())
        .select_from(JobInput)
        .where(JobInput.artifact_id == artifact.id, JobInput.role == InputRole.INIT.value)
    ) or 0
    card["reuse"] = {
        "jobs_started_from_it": reused_by,
        "downloads": artifact.downloads,
        "energy_saved_kwh": training_kwh * reused_by if training_kwh is not None else None,
    }
    return card


def _lineage(session: Session, artifact: Artifact) -> dict[str, Any]:
    lineage: dict[str, Any] = {"produced_by_job": artifact.produced_by_job}
    if artifact.produced_by_job is None:
        return lineage
    inputs = job_inputs(session, artifact.produced_by_job)
    lineage["datasets"] = _refs(a for a, role in inputs if role is InputRole.DATASET)
    base = _refs(a for a, role in inputs if role is InputRole.INIT)
    lineage["base_model"] = base[0] if base else None
    return lineage


def _refs(artifacts: Iterable[Artifact]) -> list[str]:
    return [f"{a.name}@{a.version}" for a in artifacts]


def _compression_results(session: Session, job: Job) -> list[dict[str, Any]]:
    """Metrics of the successful compression jobs run on this job's checkpoint, newest first."""
    rows = session.execute(
        select(Job.id, Job.args, Job.metrics)
        .where(
            Job.entrypoint == COMPRESSION_ENTRYPOINT,
            Job.project == job.project,
            Job.state == JobState.SUCCEEDED.value,
        )
        .order_by(Job.id.desc())
        .limit(COMPRESSION_JOBS_SCANNED)
    )
    return [
        {"job": job_id, "metrics": metrics}
        for job_id, args, metrics in rows
        if (args or {}).get("source_job") == job.id
    ]


def _nodes_of(session: Session, job_id: str) -> list[str]:
    return list(
        session.scalars(
            select(Allocation.node_id).where(Allocation.job_id == job_id).distinct()
        )
    )
