"""Grid carbon intensity: providers behind one interface, a fallback chain, and job carbon.

Sources, best first: an optional live API, CSV time series (shipped: GB and
DE), a yearly country table, then the world average (flagged). See
docs/energy.md.
"""

from commonpool.scheduler.carbon.chain import FallbackChain, default_chain
from commonpool.scheduler.carbon.csv_series import CsvSeriesProvider
from commonpool.scheduler.carbon.footprint import CarbonEstimate, carbon_for
from commonpool.scheduler.carbon.live import LiveIntensityProvider
from commonpool.scheduler.carbon.reading import (
    IntensityPoint,
    IntensityProvider,
    IntensityReading,
    IntensitySeries,
    IntensityUnavailable,
)
from commonpool.scheduler.carbon.yearly import YearlyAverageProvider

__all__ = [
    "CarbonEstimate",
    "CsvSeriesProvider",
    "FallbackChain",
    "IntensityPoint",
    "IntensityProvider",
    "IntensityReading",
    "IntensitySeries",
    "IntensityUnavailable",
    "LiveIntensityProvider",
    "YearlyAverageProvider",
    "carbon_for",
    "default_chain",
]
