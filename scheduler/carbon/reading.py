"""The provider interface: one intensity reading, a step-function series, and the protocol.

A reading always says which source answered (`source`) and whether it is
the world-average fallback (`is_fallback`), so a job's carbon figure can
be traced to its data.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol


class IntensityUnavailable(Exception):
    """This provider cannot answer for that region/time; the chain tries the next one."""


def as_utc(at: datetime) -> datetime:
    """Aware UTC datetime; naive values are taken as UTC (what SQLite hands back)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def normalize_region(region: str) -> str:
    return region.strip().upper()


@dataclass(frozen=True)
class IntensityReading:
    g_per_kwh: float
    source: str
    is_fallback: bool = False


@dataclass(frozen=True)
class IntensityPoint:
    """Intensity from `at` until the next point (a step function, like the CSV rows)."""

    at: datetime
    g_per_kwh: float


@dataclass(frozen=True)
class IntensitySeries:
    points: tuple[IntensityPoint, ...]
    source: str
    is_fallback: bool = False

    def value_at(self, at: datetime) -> float:
        """Value of the step covering `at`; before the first point, the first value."""
        times = [p.at for p in self.points]
        return self.points[max(bisect_right(times, as_utc(at)) - 1, 0)].g_per_kwh

    def mean_between(self, start: datetime, end: datetime) -> float:
        """Time-weighted mean over [start, end): the intensity a constant load would see."""
        start, end = as_utc(start), as_utc(end)
        if end <= start:
            return self.value_at(start)
        total = 0.0
        for i, point in enumerate(self.points):
            seg_start = start if i == 0 else max(point.at, start)
            nxt = self.points[i + 1].at if i + 1 < len(self.points) else end
            seg_end = min(nxt, end)
            if seg_end > seg_start:
                total += point.g_per_kwh * (seg_end - seg_start).total_seconds()
        return total / (end - start).total_seconds()


class IntensityProvider(Protocol):
    """Grid carbon intensity for a region (ISO 3166 alpha-2, e.g. `GB`, `DE`, or a zone)."""

    def intensity(self, region: str, at: datetime) -> IntensityReading: ...

    def series(self, region: str, start: datetime, end: datetime) -> IntensitySeries: ...
