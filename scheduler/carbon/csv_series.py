"""Intensity time series from CSV files in the lets-wait-awhile format (`Time,Carbon Intensity`).

One file per region, named `<region>_<anything>_ci.csv` (e.g. `gb_2020_ci.csv`).
Timestamps are UTC. A row's value holds until the next row.

`replay=True` answers for times outside the file's span with the same
moment of a covered year (2025-06-01 12:00 -> 2020-06-01 12:00), so a demo
running today gets a realistic daily/seasonal profile. The reading's
`source` then says "replayed from <year>": it is not today's grid.
"""

from __future__ import annotations

import csv
from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path

from commonpool.scheduler.carbon.reading import (
    IntensityPoint,
    IntensityReading,
    IntensitySeries,
    IntensityUnavailable,
    as_utc,
    normalize_region,
)

DATA_DIR = Path(__file__).parent / "data"


class _Series:
    """One file, parsed lazily on first use (the DE file has ~37k rows)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @cached_property
    def rows(self) -> tuple[list[datetime], list[float]]:
        times: list[datetime] = []
        values: list[float] = []
        with self.path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                times.append(datetime.fromisoformat(row["Time"]).replace(tzinfo=UTC))
                values.append(float(row["Carbon Intensity"]))
        return times, values

    def offset_for(self, at: datetime, replay: bool) -> timedelta:
        """Shift that moves `at` into the file's span (zero if already inside)."""
        times = self.rows[0]
        if times[0] <= at <= times[-1]:
            return timedelta(0)
        if replay:
            for year in range(times[-1].year, times[0].year - 1, -1):
                day = 28 if (at.month, at.day) == (2, 29) else at.day
                candidate = at.replace(year=year, day=day)
                if times[0] <= candidate <= times[-1]:
                    return at - candidate
        raise IntensityUnavailable(f"{at.isoformat()} outside {self.path.name}")


class CsvSeriesProvider:
    """An `IntensityProvider` over per-region CSV files."""

    def __init__(self, files: Mapping[str, Path], *, replay: bool = False) -> None:
        self._series = {normalize_region(region): _Series(Path(p)) for region, p in files.items()}
        self.replay = replay

    @classmethod
    def from_directory(
        cls, directory: Path = DATA_DIR, *, replay: bool = False
    ) -> CsvSeriesProvider:
        """Every `<region>_*_ci.csv` in `directory` (the lets-wait-awhile file names)."""
        files = {p.name.split("_")[0]: p for p in sorted(Path(directory).glob("*_ci.csv"))}
        return cls(files, replay=replay)

    @property
    def regions(self) -> list[str]:
        return sorted(self._series)

    def _lookup(self, region: str, at: datetime) -> tuple[_Series, timedelta, str]:
        series = self._series.get(normalize_region(region))
        if series is None:
            raise IntensityUnavailable(f"no CSV series for region {region!r}")
        offset = series.offset_for(as_utc(at), self.replay)
        source = f"csv:{series.path.name}"
        if offset:
            source += f" replayed from {(as_utc(at) - offset).year}"
        return series, offset, source

    def intensity(self, region: str, at: datetime) -> IntensityReading:
        series, offset, source = self._lookup(region, at)
        times, values = series.rows
        index = bisect_right(times, as_utc(at) - offset) - 1
        return IntensityReading(values[index], source)

    def series(self, region: str, start: datetime, end: datetime) -> IntensitySeries:
        """Points covering [start, end], shifted back to the requested dates when replayed."""
        series, offset, source = self._lookup(region, start)
        times, values = series.rows
        first = max(bisect_right(times, as_utc(start) - offset) - 1, 0)
        last = max(bisect_left(times, as_utc(end) - offset), first + 1)
        points = tuple(
            IntensityPoint(times[i] + offset, values[i]) for i in range(first, last)
        )
        return IntensitySeries(points, source)
