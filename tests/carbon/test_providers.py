"""CSV series, yearly table, fallback chain and carbon_for, checked by hand against the CSV rows."""

from __future__ import annotations

import filecmp
from datetime import UTC, datetime
from pathlib import Path

import pytest

from commonpool.scheduler.carbon import (
    CsvSeriesProvider,
    IntensityUnavailable,
    YearlyAverageProvider,
    carbon_for,
    default_chain,
)
from commonpool.scheduler.carbon.csv_series import DATA_DIR

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "carbon"

# Rows copied by hand from ../shared/data/carbon/*.csv (line numbers in the files):
GB_2019_12_20_0000 = 120.99546661944396  # gb_2020_ci.csv:2
GB_2019_12_20_0030 = 135.08869637679902  # gb_2020_ci.csv:3
GB_2019_12_20_0100 = 141.3570581257414  # gb_2020_ci.csv:4
GB_2020_02_28_2330 = 146.63480305702527  # gb_2020_ci.csv:3409
GB_2020_06_01_1200 = 184.93534980374048  # gb_2020_ci.csv:7898
DE_2020_06_01_1200 = 136.59620097031495  # de_2020_ci.csv:15794


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture(scope="module")
def csv_provider() -> CsvSeriesProvider:
    return CsvSeriesProvider.from_directory()


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared data not beside the repository")
def test_shipped_csvs_are_unchanged_copies() -> None:
    for name in ("gb_2020_ci.csv", "de_2020_ci.csv"):
        assert filecmp.cmp(DATA_DIR / name, SHARED / name, shallow=False)


def test_csv_lookup_takes_the_row_covering_the_time(csv_provider) -> None:
    assert csv_provider.regions == ["DE", "GB"]
    reading = csv_provider.intensity("gb", utc(2019, 12, 20, 0, 40))
    assert reading.g_per_kwh == GB_2019_12_20_0030
    assert reading.source == "csv:gb_2020_ci.csv" and not reading.is_fallback
    assert csv_provider.intensity("DE", utc(2020, 6, 1, 12, 5)).g_per_kwh == DE_2020_06_01_1200
    naive = datetime(2020, 6, 1, 12, 0)  # taken as UTC
    assert csv_provider.intensity("GB", naive).g_per_kwh == GB_2020_06_01_1200


def test_csv_outside_span_is_unavailable_unless_replayed(csv_provider) -> None:
    with pytest.raises(IntensityUnavailable):
        csv_provider.intensity("GB", utc(2025, 6, 1, 12, 10))
    with pytest.raises(IntensityUnavailable):
        csv_provider.intensity("FR", utc(2020, 6, 1))
    replay = CsvSeriesProvider.from_directory(replay=True)
    reading = replay.intensity("GB", utc(2025, 6, 1, 12, 10))
    assert reading.g_per_kwh == GB_2020_06_01_1200
    assert reading.source == "csv:gb_2020_ci.csv replayed from 2020"
    assert replay.intensity("GB", utc(2023, 2, 28, 23, 45)).g_per_kwh == GB_2020_02_28_2330


def test_carbon_for_integrates_over_the_rows_a_job_spans(csv_provider) -> None:
    # 00:15-01:15: 15 min of the 00:00 row, 30 min of 00:30, 15 min of 01:00
    mean = (GB_2019_12_20_0000 * 15 + GB_2019_12_20_0030 * 30 + GB_2019_12_20_0100 * 15) / 60
    result = carbon_for(
        2.0, "GB", utc(2019, 12, 20, 0, 15), utc(2019, 12, 20, 1, 15), provider=csv_provider
    )
    assert result.g_per_kwh == pytest.approx(mean)
    assert result.g_co2e == pytest.approx(2.0 * mean)
    assert result.source == "csv:gb_2020_ci.csv"


def test_carbon_for_replayed_series_keeps_request_dates() -> None:
    chain = default_chain()
    start, end = utc(2025, 6, 1, 12, 0), utc(2025, 6, 1, 12, 30)
    series = chain.series("DE", start, end)
    assert series.points[0].at == start
    result = carbon_for(1.0, "DE", start, end, provider=chain)
    assert result.g_per_kwh == pytest.approx((136.59620097031495 + 138.02014613865677) / 2)


def test_yearly_table_and_country_prefix() -> None:
    yearly = YearlyAverageProvider()
    assert yearly.intensity("FR", utc(2024, 1, 1)).g_per_kwh == 56
    de_by = yearly.intensity("de-by", utc(2024, 1, 1))
    assert de_by.g_per_kwh == 381 and de_by.source.startswith("yearly:DE 2023")
    world = yearly.world_average()
    assert world.g_per_kwh == 481 and world.is_fallback


def test_chain_records_which_source_answered() -> None:
    chain = default_chain(replay=False)
    assert chain.intensity("GB", utc(2020, 6, 1, 12)).source == "csv:gb_2020_ci.csv"
    outside_series = chain.intensity("DE", utc(2025, 1, 1))
    assert (outside_series.g_per_kwh, outside_series.is_fallback) == (381, False)
    assert outside_series.source.startswith("yearly:DE")


def test_unknown_region_gets_world_average_flagged() -> None:
    chain = default_chain()
    reading = chain.intensity("XX", utc(2025, 1, 1))
    assert reading.g_per_kwh == 481 and reading.is_fallback
    assert reading.source.startswith("world-average")
    result = carbon_for(0.5, "XX", utc(2025, 1, 1), utc(2025, 1, 2), provider=chain)
    assert result.g_co2e == pytest.approx(0.5 * 481) and result.is_fallback
