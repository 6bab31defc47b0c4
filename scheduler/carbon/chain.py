"""Fallback chain: ask providers in order, end with the world average flagged as a fallback.

The first provider that answers wins and its name travels in
`IntensityReading.source`, so every job records where its carbon figure
came from. Only a region nobody knows gets `is_fallback=True`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from commonpool.scheduler.carbon.csv_series import DATA_DIR, CsvSeriesProvider
from commonpool.scheduler.carbon.live import LiveIntensityProvider
from commonpool.scheduler.carbon.reading import (
    IntensityPoint,
    IntensityProvider,
    IntensityReading,
    IntensitySeries,
    IntensityUnavailable,
    as_utc,
)
from commonpool.scheduler.carbon.yearly import YearlyAverageProvider

log = logging.getLogger(__name__)


class FallbackChain:
    def __init__(self, providers: Sequence[IntensityProvider], world: IntensityReading) -> None:
        self.providers = list(providers)
        self.world = world

    def intensity(self, region: str, at: datetime) -> IntensityReading:
        for provider in self.providers:
            try:
                return provider.intensity(region, at)
            except IntensityUnavailable as exc:
                log.debug("intensity: %s", exc)
        return self.world

    def series(self, region: str, start: datetime, end: datetime) -> IntensitySeries:
        for provider in self.providers:
            try:
                return provider.series(region, start, end)
            except IntensityUnavailable as exc:
                log.debug("series: %s", exc)
        point = IntensityPoint(as_utc(start), self.world.g_per_kwh)
        return IntensitySeries((point,), self.world.source, is_fallback=True)


def default_chain(
    *,
    live: LiveIntensityProvider | None = None,
    csv_dir: Path | None = DATA_DIR,
    replay: bool = True,
    yearly: YearlyAverageProvider | None = None,
) -> FallbackChain:
    """live (if configured) > CSV series > yearly country average > world average."""
    yearly = yearly or YearlyAverageProvider()
    providers: list[IntensityProvider] = [live] if live is not None else []
    if csv_dir is not None:
        providers.append(CsvSeriesProvider.from_directory(csv_dir, replay=replay))
    providers.append(yearly)
    return FallbackChain(providers, yearly.world_average())
