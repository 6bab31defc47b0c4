"""Carbon in the simulator: regions, series, energy accounting, and what ``+carbon`` saves."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from commonpool.scheduler.policy import make_policy
from commonpool.scheduler.policy.throughput import ThroughputTable
from commonpool.scheduler.simulate import Simulator, parse_cluster, simulate
from commonpool.scheduler.simulate.carbon import (
    CarbonSetup,
    FlexibleJobs,
    RegionSeries,
    gpu_watts,
)
from commonpool.scheduler.simulate.cli import simulate_command
from commonpool.scheduler.simulate.run import carbon_setup
from commonpool.scheduler.simulate.trace import TraceJob

TRACES = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "traces"
SMALL = TRACES / "philly_msr_seed0_2869ce.trace"
H = 3600.0
SPLIT = "k80:12,p100:12,v100:12"


def test_cluster_spec_places_nodes_in_regions() -> None:
    nodes = parse_cluster("k80:8@gb,v100:4@DE")
    assert [(n.id, n.region, n.labels["region"]) for n in nodes] == [
        ("k80-gb-0", "GB", "GB"), ("k80-gb-1", "GB", "GB"), ("v100-de-0", "DE", "DE")]
    dealt = parse_cluster("k80:12", regions=["GB", "DE"])
    assert [n.region for n in dealt] == ["GB", "DE", "GB"]
    assert all(n.region is None for n in parse_cluster("k80:12"))  # unchanged without regions


def test_region_series_integrates_steps_and_repeats_after_its_end() -> None:
    s = RegionSeries([(0.0, 100.0), (H, 300.0)])  # period 2 h
    assert s.mean(0.0, 2 * H) == pytest.approx(200.0)
    assert s.value_at(2.5 * H) == 100.0 and s.value_at(3.5 * H) == 300.0
    assert s.integral(4 * H) == pytest.approx(2 * s.integral(2 * H))
    assert s.points(0.5 * H, 2.5 * H) == [(0.5 * H, 100.0), (H, 300.0), (2 * H, 100.0)]


def test_energy_and_carbon_of_a_job_follow_power_busy_time_and_intensity() -> None:
    table = ThroughputTable({"X": {1: {"v100": 1.0}}})
    job = TraceJob(0, "X", 2 * H, 0.0, 1, 1)
    setup = CarbonSetup({"GB": RegionSeries([(0.0, 100.0), (H, 300.0), (2 * H, 100.0)])})
    sim = Simulator([job], parse_cluster("v100:1@GB"), make_policy("fifo"), table, carbon=setup)
    (done,) = sim.run().jobs
    kwh = gpu_watts("v100") / 1000 * 2  # 300 W for 2 h
    assert done.energy_kwh == pytest.approx(kwh)
    assert done.co2e_g == pytest.approx(kwh * 200.0)


def test_flexible_jobs_are_seeded_and_their_deadlines_feasible_on_any_type() -> None:
    flex = FlexibleJobs(fraction=0.5, deadline_factor=3, min_slack_h=24, seed=1)
    picked = flex.pick(range(1000))
    assert picked == FlexibleJobs(0.5, seed=1).pick(range(1000)) and 400 < len(picked) < 600
    assert flex.deadline(0.0, 10 * H) == 34 * H and flex.deadline(0.0, 20 * H) == 60 * H


def synthetic_solar(days: int = 200) -> dict[str, RegionSeries]:
    """Two made-up grids unlike GB/DE: solar-heavy (clean at midday, dirty at night) at a
    different level, and a second one whose clean hours come eight hours later."""
    def shape(hour: int, shift: int, level: float) -> float:
        h = (hour + shift) % 24
        return level * (0.25 if 10 <= h < 16 else 1.0 + 0.3 * math.sin(h))

    return {
        "AA": RegionSeries([(h * H, shape(h, 0, 600.0)) for h in range(24 * days)]),
        "BB": RegionSeries([(h * H, shape(h, 8, 450.0)) for h in range(24 * days)]),
    }


def test_saves_carbon_on_a_synthetic_grid_with_another_daily_shape() -> None:
    setup = carbon_setup(["AA", "BB"], series=synthetic_solar(), flexible=0.5)
    report = simulate(SMALL, "fifo+carbon", SPLIT, regions=["AA", "BB"], carbon=setup,
                      max_jobs=120)
    assert report["completed"] == 120
    assert report["flexible_co2e_saved_pct"] >= 20
    assert report["new_deadline_misses"] == 0


def test_noisy_forecast_still_saves_carbon() -> None:
    setup = carbon_setup(["GB", "DE"], flexible=0.5, noise=0.2)
    report = simulate(SMALL, "fifo+carbon", SPLIT, regions=["GB", "DE"], carbon=setup,
                      max_jobs=120)
    assert report["flexible_co2e_saved_pct"] >= 10
    assert report["deadline_misses"] <= report["baseline_deadline_misses"]


def test_same_seed_same_carbon_result() -> None:
    def run() -> dict:
        setup = carbon_setup(["GB", "DE"], flexible=0.5, noise=0.2, seed=3)
        return simulate(SMALL, "las+carbon", SPLIT, regions=["GB", "DE"], carbon=setup,
                        max_jobs=40, compare=False)

    assert run() == run()


def test_cli_with_regions_reports_carbon_and_plots_intensity_against_load(
        tmp_path: Path) -> None:
    tiny = tmp_path / "tiny.trace"
    tiny.write_text("".join(f"A3C\tcmd\t-n\t1\t{steps}\t{arrival}\t1\n"
                            for steps, arrival in ((2e5, 0), (1e5, 3000), (3e5, 9000))))
    simulate_command(trace=tiny, policy="fifo+carbon", cluster="k80:4@GB,k80:4@DE",
                     churn=None, seed=0, out=tmp_path / "out", gpus_per_node=4, throughputs=None,
                     as_json=True, flexible=0.5)
    (html,) = (tmp_path / "out").glob("*.html")
    text = html.read_text()
    assert "Carbon intensity by region" in text and "Busy GPUs by region" in text


@pytest.mark.slow
def test_acceptance_on_the_small_trace_with_gb_and_de() -> None:
    """The issue's comparison on a whole shared trace (the table in docs/carbon-aware.md)."""
    setup = carbon_setup(["GB", "DE"], flexible=0.5, deadline_factor=3)
    report = simulate(SMALL, "fifo+carbon", SPLIT, regions=["GB", "DE"], carbon=setup)
    assert report["flexible_co2e_saved_pct"] >= 20
    assert report["deadline_misses"] <= report["baseline_deadline_misses"]
    assert report["inflexible_jct_change_pct"] <= 10
