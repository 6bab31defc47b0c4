"""Grid intensity read straight from the shared CSV, independent of `scheduler.carbon`.

Tests compare the server's carbon figures against this: rows are
`Time,Carbon Intensity` (UTC, each value holds until the next row); a time
outside the file is moved to the same moment of the latest covered year,
which is what the pool documents as "replayed".
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

SHARED_GB = Path("/work/shared/data/carbon/gb_2020_ci.csv")
PACKAGED_GB = Path(__file__).resolve().parents[1] / "scheduler/carbon/data/gb_2020_ci.csv"


@cache
def _rows() -> list[tuple[datetime, float]]:
    path = SHARED_GB if SHARED_GB.exists() else PACKAGED_GB
    with path.open(newline="") as handle:
        return [
            (datetime.strptime(r["Time"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC),
             float(r["Carbon Intensity"]))
            for r in csv.DictReader(handle)
        ]


def replayed(at: datetime) -> datetime:
    rows = _rows()
    first, last = rows[0][0], rows[-1][0]
    for year in range(last.year, first.year - 1, -1):
        candidate = at.replace(year=year)
        if first <= candidate <= last:
            return candidate
    raise ValueError(f"{at} has no covered counterpart in the CSV")


def gb_intensity(at: datetime) -> float:
    """g/kWh of the GB row covering `at` (replayed into the file's span)."""
    when = replayed(at)
    value = None
    for time, g in _rows():
        if time > when:
            break
        value = g
    assert value is not None
    return value


def gb_slot(at: datetime) -> datetime:
    """Start of the CSV row (30 min step) covering `at`, in replayed time."""
    when = replayed(at)
    return when.replace(minute=30 * (when.minute // 30), second=0, microsecond=0)
