"""Yearly average intensity per country from a shipped table (sources in the CSV header).

Coarse (no daily or seasonal shape) but covers regions with no series, and
holds the world average that the fallback chain uses for unknown regions.
A region such as `DE-BY` or `US-CAL` is looked up by its country prefix.
"""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

from commonpool.scheduler.carbon.reading import (
    IntensityPoint,
    IntensityReading,
    IntensitySeries,
    IntensityUnavailable,
    as_utc,
    normalize_region,
)

COUNTRY_CSV = Path(__file__).parent / "data" / "country_intensity.csv"
WORLD = "WORLD"


class YearlyAverageProvider:
    def __init__(self, path: Path = COUNTRY_CSV) -> None:
        lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
        self._table = {
            row["iso2"]: (float(row["g_per_kwh"]), row["year"]) for row in csv.DictReader(lines)
        }
        if WORLD not in self._table:
            raise ValueError(f"{path} has no {WORLD} row")

    def _reading(self, code: str, is_fallback: bool = False) -> IntensityReading:
        value, year = self._table[code]
        label = "world-average" if code == WORLD else f"yearly:{code}"
        return IntensityReading(value, f"{label} {year} (Ember via OWID)", is_fallback)

    def intensity(self, region: str, at: datetime) -> IntensityReading:
        code = normalize_region(region).split("-")[0]
        if code == WORLD or code not in self._table:
            raise IntensityUnavailable(f"no yearly average for region {region!r}")
        return self._reading(code)

    def series(self, region: str, start: datetime, end: datetime) -> IntensitySeries:
        reading = self.intensity(region, start)
        return IntensitySeries((IntensityPoint(as_utc(start), reading.g_per_kwh),), reading.source)

    def world_average(self) -> IntensityReading:
        """The last resort, flagged `is_fallback=True`."""
        return self._reading(WORLD, is_fallback=True)
