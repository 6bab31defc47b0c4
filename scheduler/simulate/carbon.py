"""Carbon in the simulator: regional intensity series, forecasts, flexible jobs, energy.

- ``RegionSeries``: one region's intensity on the simulation clock (seconds from the trace
  start, which maps to a calendar start), read once from a ``scheduler.carbon`` provider;
  repeated periodically past the end of the data (a year of data covers every shipped
  trace, so this only matters for synthetic or short series).
- ``forecast()``: the points a snapshot carries (``ClusterSnapshot.carbon_forecast``):
  the true series over a horizon (a perfect forecast) or multiplied per point by a seeded
  ``1 + U(-noise, +noise)`` error, drawn afresh at every plan. Accounting always uses the
  true series.
- ``FlexibleJobs``: which trace jobs are carbon-aware and their deadlines (seeded):
  ``deadline = arrival + max(k x T, T + min_slack)``, ``T`` = the job's isolated runtime on
  the slowest GPU type of the pool it can run on (so a deadline is feasible on any type).
- Energy: ``GPU_WATTS`` per GPU type (the TDP values of ``workers/telemetry/data/tdp.csv``,
  copied because the scheduler must not import ``workers``) x busy time; idle GPUs are not
  charged to jobs (as in ``docs/energy.md``). ``gCO2e = kWh x g/kWh`` integrated over each
  worker's run in its node's region.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ..carbon.csv_series import DATA_DIR, CsvSeriesProvider
from ..carbon.reading import IntensityProvider

HOUR = 3600.0
# Per-GPU board power (W) from workers/telemetry/data/tdp.csv (vendor data sheets).
GPU_WATTS: dict[str, float] = {
    "k80": 150.0, "p100": 300.0, "v100": 300.0, "t4": 70.0, "a10": 150.0, "l4": 72.0,
    "a100": 400.0, "h100": 700.0,
}
DEFAULT_GPU_WATTS = 300.0  # unknown type: the telemetry model's own default
DEFAULT_START = datetime(2020, 1, 1, tzinfo=UTC)


def gpu_watts(gpu_type: str | None) -> float:
    return GPU_WATTS.get((gpu_type or "").lower(), DEFAULT_GPU_WATTS)


class RegionSeries:
    """A step function on the simulation clock, periodic after its last step."""

    def __init__(self, points: Sequence[tuple[float, float]]) -> None:
        pts = sorted((float(t), float(v)) for t, v in points)
        if not pts:
            raise ValueError("empty intensity series")
        t0 = pts[0][0]
        self.t = [t - t0 for t in (p[0] for p in pts)]
        self.v = [p[1] for p in pts]
        steps = sorted(b - a for a, b in zip(self.t, self.t[1:], strict=False))
        self.step = steps[len(steps) // 2] if steps else HOUR
        self.period = self.t[-1] + self.step
        self.cum = [0.0]
        for i, v in enumerate(self.v):
            nxt = self.t[i + 1] if i + 1 < len(self.t) else self.period
            self.cum.append(self.cum[-1] + v * (nxt - self.t[i]))

    @classmethod
    def from_provider(cls, provider: IntensityProvider, region: str, start: datetime,
                      span: timedelta = timedelta(days=400)) -> RegionSeries:
        """Points of ``provider.series(region, start, start + span)`` relative to ``start``."""
        series = provider.series(region, start, start + span)
        return cls([(max(0.0, (p.at - start).total_seconds()), p.g_per_kwh)
                    for p in series.points])

    def _index(self, t: float) -> int:
        return max(bisect.bisect_right(self.t, t) - 1, 0)

    def value_at(self, t: float) -> float:
        return self.v[self._index(t % self.period)]

    def integral(self, t: float) -> float:
        """Integral of g/kWh over [0, t) in g/kWh x seconds."""
        laps, x = divmod(max(t, 0.0), self.period)
        i = self._index(x)
        return laps * self.cum[-1] + self.cum[i] + self.v[i] * (x - self.t[i])

    def mean(self, a: float, b: float) -> float:
        return self.value_at(a) if b <= a else (self.integral(b) - self.integral(a)) / (b - a)

    def points(self, start: float, end: float) -> list[tuple[float, float]]:
        """The steps covering ``[start, end)`` on the simulation clock."""
        out = [(start, self.value_at(start))]
        lap = math.floor(start / self.period)
        while True:
            base = lap * self.period
            i = bisect.bisect_right(self.t, start - base)
            while i < len(self.t):
                t = base + self.t[i]
                if t >= end:
                    return out
                out.append((t, self.v[i]))
                i += 1
            lap += 1


def load_series(regions: Sequence[str], *, directory: Path | None = None,
                provider: IntensityProvider | None = None,
                start: datetime = DEFAULT_START) -> dict[str, RegionSeries]:
    """Series for each region from ``provider`` (default: the CSV files in ``directory``,
    the shipped GB/DE data when None)."""
    source = provider or CsvSeriesProvider.from_directory(directory or DATA_DIR, replay=True)
    return {r: RegionSeries.from_provider(source, r, start) for r in regions}


@dataclass(frozen=True, slots=True)
class FlexibleJobs:
    """Mark ``fraction`` of trace jobs carbon-aware with ``deadline = arrival + max(k x T,
    T + min_slack_h)`` (seeded; the same jobs in a run with and without ``+carbon``)."""

    fraction: float = 0.0
    deadline_factor: float = 3.0
    min_slack_h: float = 24.0
    seed: int = 0

    def pick(self, indices: Sequence[int]) -> set[int]:
        rng = random.Random(f"flexible:{self.seed}")
        return {i for i in indices if rng.random() < self.fraction}

    def deadline(self, arrival_s: float, isolated_s: float) -> float:
        return arrival_s + max(self.deadline_factor * isolated_s,
                               isolated_s + self.min_slack_h * HOUR)


@dataclass(slots=True)
class CarbonSetup:
    """Everything carbon a simulation needs; ``series`` keys are the nodes' regions."""

    series: Mapping[str, RegionSeries]
    start: datetime = DEFAULT_START
    horizon_h: float = 72.0
    noise: float = 0.0
    seed: int = 0
    flexible: FlexibleJobs = field(default_factory=FlexibleJobs)

    def forecast(self, now: float) -> dict[str, tuple[tuple[float, float], ...]]:
        end = now + self.horizon_h * HOUR
        rng = random.Random(f"forecast:{self.seed}:{now:.0f}") if self.noise else None
        out = {}
        for region, s in sorted(self.series.items()):
            pts = s.points(now, end)
            if rng is not None:
                pts = [(t, v * (1.0 + rng.uniform(-self.noise, self.noise))) for t, v in pts]
            out[region] = tuple(pts)
        return out

    @property
    def epoch_offset_s(self) -> float:
        return self.start.timestamp()


def parse_regions(spec: str) -> list[str]:
    """``"GB,DE"`` -> ``["GB", "DE"]`` (upper case, order kept)."""
    return [r.strip().upper() for r in spec.split(",") if r.strip()]
