"""The simulator: trace parsing, determinism, churn accounting, and the shared policy code."""

from pathlib import Path

import pytest

from commonpool.scheduler.policy import make_policy
from commonpool.scheduler.policy.throughput import ThroughputTable
from commonpool.scheduler.simulate import ChurnModel, Simulator, parse_cluster, simulate
from commonpool.scheduler.simulate.cli import simulate_command
from commonpool.scheduler.simulate.engine import estimate_factors
from commonpool.scheduler.simulate.trace import read_trace

from .gavel_reference import strict_fifo_avg_jct_h

TRACES = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "traces"
SMALL = TRACES / "philly_msr_seed0_2869ce.trace"
LINE = "{jt}\tcmd\t-step\t1\t{steps}\t{arrival}\t{sf}\n"


def write_trace(tmp_path: Path, rows: list[tuple[str, float, float, int]]) -> Path:
    path = tmp_path / "tiny.trace"
    path.write_text("".join(LINE.format(jt=jt, steps=s, arrival=a, sf=sf) for jt, s, a, sf in rows))
    return path


def test_gavel_conversion_caps_scale_and_single_gpu_families(tmp_path: Path) -> None:
    path = write_trace(tmp_path, [("LM (batch size 5)", 10, 5, 32), ("A3C", 10, 0, 4)])
    jobs = read_trace(path)
    assert [(j.job_type, j.gpus, j.requested_gpus) for j in jobs] == [
        ("A3C", 1, 4), ("LM (batch size 5)", 8, 32)]


def test_single_job_runs_at_its_table_rate(tmp_path: Path) -> None:
    table = ThroughputTable({"X": {1: {"v100": 2.0}}})
    path = write_trace(tmp_path, [("X", 7200.0, 0.0, 1)])
    sim = Simulator(read_trace(path), parse_cluster("v100:1"), make_policy("fifo"), table)
    (job,) = sim.run().jobs
    assert job.finish == pytest.approx(3600.0)  # 7200 steps at 2 steps/s


def test_arrivals_wait_for_the_next_round(tmp_path: Path) -> None:
    table = ThroughputTable({"X": {1: {"v100": 1.0}}})
    path = write_trace(tmp_path, [("X", 100.0, 10.0, 1)])
    sim = Simulator(read_trace(path), parse_cluster("v100:1"), make_policy("fifo"), table)
    (job,) = sim.run().jobs
    assert job.first_start == 360.0 and job.finish == pytest.approx(460.0)


def test_churn_loses_work_since_last_checkpoint_and_is_seeded(tmp_path: Path) -> None:
    table = ThroughputTable({"X": {1: {"v100": 1.0}}})
    path = write_trace(tmp_path, [("X", 50 * 3600.0, 0.0, 1), ("X", 50 * 3600.0, 0.0, 1)])
    churn = ChurnModel(up_h=5, down_h=1, checkpoint_s=1800)

    def run(seed: int):
        sim = Simulator(read_trace(path), parse_cluster("v100:2", 1), make_policy("fifo"),
                        table, churn=churn, seed=seed)
        return sim.run()

    a, b = run(1), run(1)
    assert a.churn_preemptions > 0 and a.lost_gpu_s > 0
    assert a.lost_gpu_s <= a.churn_preemptions * 1800 + 1e-6
    assert [j.finish for j in a.jobs] == [j.finish for j in b.jobs]
    assert all(j.finish > 50 * 3600 for j in a.jobs)


def test_small_trace_prefix_all_policies_complete_and_repeat() -> None:
    for name in ("fifo", "backfill", "las", "fair", "srpt", "hetero", "fifo+hetero"):
        first = simulate(SMALL, name, max_jobs=60)
        assert first["completed"] == 60
        assert first == simulate(SMALL, name, max_jobs=60)


def test_estimates_are_off_by_a_seeded_per_job_factor() -> None:
    jobs = read_trace(SMALL)[:200]
    factors = estimate_factors(jobs, 4.0, seed=0)
    assert factors == estimate_factors(jobs, 4.0, seed=0) != estimate_factors(jobs, 4.0, 1)
    assert all(0.25 <= f <= 4.0 for f in factors.values())
    assert min(factors.values()) < 0.5 and max(factors.values()) > 2.0  # spread, not bias
    assert estimate_factors(jobs, 1.0, seed=0) == {}
    with pytest.raises(ValueError, match="estimate_error"):
        Simulator(jobs, parse_cluster("v100:4"), make_policy("srpt"),
                  ThroughputTable.bundled(), estimate_error=0.5)


def test_srpt_beats_fifo_even_with_estimates_four_times_off() -> None:
    fifo = simulate(SMALL, "fifo", max_jobs=200)["avg_jct_h"]
    exact = simulate(SMALL, "srpt", max_jobs=200)["avg_jct_h"]
    rough = simulate(SMALL, "srpt", max_jobs=200, estimate_error=4.0)["avg_jct_h"]
    # Philly's runtimes span orders of magnitude: a factor of 4 rarely swaps two jobs' ranks
    assert exact < 0.8 * fifo and rough < 0.8 * fifo


def test_cli_writes_json_and_html(tmp_path: Path) -> None:
    tiny = write_trace(tmp_path, [("A3C", 1000.0, 0.0, 1), ("LM (batch size 5)", 1e4, 5.0, 2)])
    simulate_command(trace=tiny, policy="las", cluster="k80:4,v100:4", churn=None, seed=0,
                     out=tmp_path / "out", gpus_per_node=4, throughputs=None, as_json=True)
    files = sorted(p.suffix for p in (tmp_path / "out").iterdir())
    assert files == [".html", ".json"]
    assert "<svg" in next((tmp_path / "out").glob("*.html")).read_text()


# Gavel's published fifo JCTs; on 11cb48 Gavel's fifo.py is not strict FIFO (it hands a
# finished job's GPU type to the queue head and, in base mode, picks the type from a stale
# loop variable), so there we compare with strict FIFO under Gavel's own simulator loop
# (tests/simulate/gavel_reference.py): see docs/simulator.md, "fifo on 11cb48".
GAVEL_FIFO = {"philly_msr_seed0_0e4a51": 1516.3, "philly_msr_seed0_2869ce": 28.9}


@pytest.mark.slow
@pytest.mark.parametrize("trace", sorted(TRACES.glob("philly_*.trace")), ids=lambda p: p.stem)
def test_fifo_within_15_percent_of_gavel(trace: Path) -> None:
    ours = simulate(trace, "fifo")["avg_jct_h"]
    if trace.stem in GAVEL_FIFO:
        assert ours == pytest.approx(GAVEL_FIFO[trace.stem], rel=0.15)
        return
    reference = strict_fifo_avg_jct_h(read_trace(trace), ThroughputTable.bundled())
    assert reference > 1.15 * 88.0  # strict FIFO itself is > 15% above Gavel's 88.0 h here
    assert ours == pytest.approx(reference, rel=0.15)


# Gavel's best (max_min_fairness_perf) average JCT, hours, on the 12+12+12 cluster; the
# 0e4a51 row (674.5 h; srpt+hetero 367 h) takes ~30 s and is reported in docs/simulator.md.
GAVEL_BEST = {"philly_msr_seed0_11cb48": 24.9, "philly_msr_seed0_2869ce": 15.7}


@pytest.mark.slow
@pytest.mark.parametrize("stem", sorted(GAVEL_BEST))
def test_srpt_hetero_beats_gavels_best_even_with_estimates_four_times_off(stem: str) -> None:
    trace = TRACES / f"{stem}.trace"
    for error in (1.0, 4.0):
        assert simulate(trace, "srpt+hetero", estimate_error=error)["avg_jct_h"] < GAVEL_BEST[stem]


@pytest.mark.slow
def test_fairs_starving_rule_cuts_the_worst_finish_time_fairness() -> None:
    """An 8-GPU job with minutes of work waited 134 h under plain progressive filling."""
    without = simulate(SMALL, "fair", starve_s=None)
    served = simulate(SMALL, "fair")
    assert without["rho_max"] > 100 and served["rho_max"] < 0.5 * without["rho_max"]
    assert served["avg_jct_h"] <= without["avg_jct_h"]
