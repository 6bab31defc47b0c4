"""Carbon saved by carbon-aware timing: what the pool shows as its "carbon saved".

A carbon-aware job that the carbon policy deferred although it had room gets
a baseline the first time (`jobs.carbon_baseline_g_per_kwh`, recorded by the
loop from `Plan.carbon_baselines`): the g/kWh it would have run at had it
started then (the forecast mean over its estimated runtime, in the cleanest
region with room). Its baseline carbon is its metered energy at that
intensity; what it saved is that minus the carbon it actually emitted (the
same heartbeats' energy at each node's grid intensity while it ran). The
comparison is with the forecast at deferral, not with a replay of the grid;
jobs the policy never deferred (they ran when they could anyway) count
neither way, and a job that ran dirtier than its baseline counts negative.
Only ended jobs count, so a running job's partial energy does not.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..domain.states import ENDED_VALUES
from ..store.models import Job, JobEnergyPart
from .energy import J_PER_KWH


@dataclass(frozen=True, slots=True)
class CarbonSaved:
    """Ended carbon-deferred jobs: their carbon, their baseline's, and the difference."""

    jobs: int = 0
    co2e_g: float = 0.0
    baseline_co2e_g: float = 0.0

    @property
    def saved_g(self) -> float:
        return self.baseline_co2e_g - self.co2e_g

    @property
    def saved_percent(self) -> float | None:
        return 100.0 * self.saved_g / self.baseline_co2e_g if self.baseline_co2e_g > 0 else None


def job_baseline_co2e_g(baseline_g_per_kwh: float | None, energy_j: float) -> float | None:
    """A job's carbon had it run at its baseline intensity (None without a baseline)."""
    return None if baseline_g_per_kwh is None else energy_j / J_PER_KWH * baseline_g_per_kwh


def carbon_saved(session: Session) -> CarbonSaved:
    """The pool's total over ended jobs with a carbon baseline (one aggregate query)."""
    row = session.execute(
        select(
            func.count(func.distinct(Job.id)),
            func.coalesce(func.sum(JobEnergyPart.co2e_g), 0.0),
            func.coalesce(
                func.sum(JobEnergyPart.energy_j * Job.carbon_baseline_g_per_kwh), 0.0
            ),
        )
        .join(JobEnergyPart, JobEnergyPart.job_id == Job.id)
        .where(Job.carbon_baseline_g_per_kwh.is_not(None), Job.state.in_(ENDED_VALUES))
    ).one()
    return CarbonSaved(int(row[0]), float(row[1]), float(row[2]) / J_PER_KWH)
