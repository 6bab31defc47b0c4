"""/api/v1/jobs/{id}/energy: a job's energy, carbon and how they were obtained.

Kept out of `routes/jobs.py` so that energy accounting is one module to read.
"""

from __future__ import annotations

from fastapi import APIRouter

from commonpool.scheduler.services.energy_report import job_energy

from ..authz import JOB_READ, authorize
from ..deps import ReadSession
from ..schemas import JobEnergyRead

router = APIRouter(tags=["energy"])


@router.get(
    "/jobs/{job_id}/energy", response_model=JobEnergyRead, dependencies=[authorize(JOB_READ)]
)
def get_job_energy(job_id: str, session: ReadSession) -> JobEnergyRead:
    """Total J, kWh, gCO2e, % estimated, method(s), per-node parts, series and J/sample."""
    return JobEnergyRead.model_validate(job_energy(session, job_id))
