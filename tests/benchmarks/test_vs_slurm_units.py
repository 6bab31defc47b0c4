"""The pure parts of `benchmarks.vs_slurm`: reading the Slurm peer's report, ratios, goals.

The benchmark itself (a Slurm peer and several pools, ~20 min) is not a test; these
check that its figures are read and judged as its docstring says.
"""

from __future__ import annotations

import argparse

import pytest

from benchmarks.vs_slurm import Run, compare, count_final, judge, parse_variants, slurm_figures

PEER_REPORT = {
    "results": [
        {"variant": "loop", "N": 1000, "submit_s": {"median": 6.0},
         "submit_per_s": {"median": 166.7}, "done_per_s": {"median": 45.0},
         "submit_fail": [0], "capped_runs": 0},
        {"variant": "array", "N": 1000, "submit_s": {"median": 0.01},
         "submit_per_s": {"median": 100000.0}, "done_per_s": {"median": 50.0},
         "submit_fail": [0], "capped_runs": 1},
    ],
    "latency": [{"median_ms": 560.0}],
}  # fmt: skip


def test_the_peers_medians_are_read_by_variant_and_size() -> None:
    runs, latency = slurm_figures(PEER_REPORT)
    assert runs[("loop", 1000)]["done_per_s"] == 45.0
    assert runs[("array", 1000)]["mark"] == " (capped)"
    assert latency == pytest.approx(0.56)


def test_rows_pair_each_variant_with_its_slurm_twin() -> None:
    slurm, _ = slurm_figures(PEER_REPORT)
    api = Run("api", 1000, 1000, 10.0, 20.0, 1000, 1000, 0, False)
    array = Run("array", 1000, 1000, 0.05, 25.0, 1000, 999, 0, False)
    rows = {(r["variant"], r["figure"]): r for r in compare([api, array], slurm)}
    assert rows[("api", "done_per_s")]["ratio"] == pytest.approx(50.0 / 45.0, rel=1e-3)
    assert rows[("api", "submit_per_s")]["slurm"] == 166.7
    assert rows[("array", "submit_s")]["commonpool"] == 0.05
    assert rows[("array", "done_per_s")]["cp_mark"] == " (1 FAILED)"


def test_goals_are_judged_on_the_api_loop_and_the_array_only() -> None:
    slurm, _ = slurm_figures(PEER_REPORT)
    runs = [
        Run("cli", 1000, 1000, 100.0, 200.0, 1000, 1000, 0, False),  # 5/s: not judged
        Run("api", 1000, 1000, 5.0, 7.0, 1000, 1000, 0, False),
        Run("array", 5000, 5000, 0.5, 30.0, 5000, 5000, 0, False),
    ]
    goals = {g["goal"]: g for g in judge(compare(runs, slurm), runs, latency_s=0.05)}
    throughput, latency, array = goals.values()
    assert throughput["value"] == pytest.approx(1000 / 7.0 / 45.0, rel=1e-3)
    assert throughput["met"] is True
    assert latency["met"] is True
    assert array["value"] == 0.5 and array["met"] is True


def test_unmeasured_goals_say_so() -> None:
    goals = judge([], [], latency_s=None)
    assert [g["met"] for g in goals] == [None, None, None]


def test_final_states_are_counted() -> None:
    assert count_final({"SUCCEEDED": 3, "FAILED": 1, "RUNNING": 2, "CANCELLED": 1}) == (5, 3)


def test_variants_are_checked() -> None:
    assert parse_variants("api, array") == ["api", "array"]
    with pytest.raises(argparse.ArgumentTypeError):
        parse_variants("api,srun")
