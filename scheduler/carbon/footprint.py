"""gCO2e of a job: kWh x the region's intensity over the job's time span."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from commonpool.scheduler.carbon.reading import IntensityProvider


@dataclass(frozen=True)
class CarbonEstimate:
    g_co2e: float
    g_per_kwh: float
    """Time-weighted mean intensity used."""
    source: str
    is_fallback: bool


def carbon_for(
    kwh: float, region: str, start: datetime, end: datetime, *, provider: IntensityProvider
) -> CarbonEstimate:
    """Carbon of `kwh` used evenly over [start, end) in `region`.

    A job spanning several intensity steps gets the time-weighted mean, not
    the value at its start: a 6 h job crossing the evening peak differs.
    Callers with a per-interval energy series should call this per interval
    (uneven load) and sum.
    """
    series = provider.series(region, start, end)
    mean = series.mean_between(start, end)
    return CarbonEstimate(kwh * mean, mean, series.source, series.is_fallback)
