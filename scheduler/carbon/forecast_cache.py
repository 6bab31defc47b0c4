"""Carbon forecasts for the live scheduler, per region, cached for a few minutes.

The carbon policy layer is pure: it reads forecasts from the snapshot. This
cache is what the live loop uses to put them there (the simulator builds
them from its own series), so one provider lookup serves many cycles.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from .reading import IntensityProvider

Forecast = tuple[tuple[float, float], ...]  # (epoch seconds, gCO2/kWh) steps


class ForecastCache:
    def __init__(
        self,
        provider: IntensityProvider,
        *,
        horizon_s: float = 72 * 3600,
        ttl_s: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.provider = provider
        self.horizon_s = horizon_s
        self.ttl_s = ttl_s
        self.clock = clock
        self._cache: dict[str, tuple[float, Forecast]] = {}

    def forecasts(self, regions: Iterable[str], now: float) -> dict[str, Forecast]:
        """Each region's forecast from `now` over the horizon (regions with no data omitted)."""
        out: dict[str, Forecast] = {}
        for region in sorted(set(regions)):
            cached = self._cache.get(region)
            if cached is None or self.clock() - cached[0] > self.ttl_s:
                cached = (self.clock(), self._load(region, now))
                self._cache[region] = cached
            if cached[1]:
                out[region] = cached[1]
        return out

    def _load(self, region: str, now: float) -> Forecast:
        start = datetime.fromtimestamp(now, UTC)
        end = datetime.fromtimestamp(now + self.horizon_s, UTC)
        series = self.provider.series(region, start, end)
        return tuple((p.at.timestamp(), p.g_per_kwh) for p in series.points)


def forecasts_for_policy(
    policy: str,
) -> Callable[[Iterable[str], float], dict[str, Forecast]] | None:
    """The live forecast source when the policy has a carbon layer, else None (no lookups)."""
    if "carbon" not in policy.split("+"):
        return None
    from .chain import default_chain

    return ForecastCache(default_chain()).forecasts
