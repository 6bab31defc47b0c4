"""Hetero's migration: running jobs move to the GPU type where they progress fastest."""

from dataclasses import replace

from commonpool.scheduler.policy import (
    JobView,
    RunningJobView,
    WorkerSlot,
    make_policy,
)
from commonpool.scheduler.policy.throughput import ThroughputTable

from .builders import job, node, snapshot

TABLE = ThroughputTable(
    {
        "fast-on-v100": {1: {"k80": 1.0, "v100": 10.0}},
        "indifferent": {1: {"k80": 4.0, "v100": 5.0}},
    }
)
HOUR = 3600.0


def on(j: JobView, node_id: str, started_at: float = 0.0) -> RunningJobView:
    return RunningJobView(j, (WorkerSlot(node_id, 0, j.per_worker),), started_at)


def swap_snapshot(now: float = HOUR, **node_kw: object):
    """The v100 held by a job that hardly cares, the k80 by one 10x faster on a v100."""
    speedy = job("speedy", 1, job_type="fast-on-v100")
    meh = job("meh", 1, job_type="indifferent")
    snap = snapshot(
        [node("k", 1, "k80", free_gpus=0, **node_kw), node("v", 1, "v100", free_gpus=0)],
        [],
        running=(on(speedy, "k"), on(meh, "v")),
    )
    return replace(snap, now=now)


def where(plan) -> dict[str, str]:
    return {p.job_id: p.workers[0].node_id for p in plan.placements}


def test_jobs_swap_types_when_the_pair_gains() -> None:
    for name in ("hetero", "fifo+hetero", "fair+hetero", "backfill+hetero"):
        plan = make_policy(name, throughputs=TABLE).plan(swap_snapshot())
        assert where(plan) == {"speedy": "v", "meh": "k"}, name
        reasons = {p.job_id: p.reason for p in plan.preemptions}
        assert reasons["speedy"] == "migrating from k80 to v100: it runs faster there"
        assert reasons["meh"] == "migrating from v100 to k80: it runs faster there"


def test_a_job_moves_to_free_capacity_of_a_faster_type() -> None:
    speedy = job("speedy", 1, job_type="fast-on-v100")
    snap = snapshot(
        [node("k", 1, "k80", free_gpus=0), node("v", 1, "v100")], [], running=(on(speedy, "k"),)
    )
    plan = make_policy("hetero", throughputs=TABLE).plan(replace(snap, now=HOUR))
    assert where(plan) == {"speedy": "v"}
    assert [p.job_id for p in plan.preemptions] == ["speedy"]


def test_no_move_before_min_run_or_when_disabled_or_unknown() -> None:
    assert make_policy("hetero", throughputs=TABLE).plan(swap_snapshot(now=60.0)).placements == ()
    off = make_policy("hetero", throughputs=TABLE, migrate_min_gain=None)
    assert off.plan(swap_snapshot()).placements == ()
    table = ThroughputTable({"indifferent": {1: {"k80": 4.0, "v100": 5.0}}})
    # speedy's type is unknown to this table: it has no preference, so nothing moves
    assert make_policy("hetero", throughputs=table).plan(swap_snapshot()).placements == ()


def test_a_swap_respects_label_selectors() -> None:
    snap = swap_snapshot(labels={"zone": "a"})
    meh = replace(snap.running[1].job, label_selector={"zone": "b"})
    snap = replace(snap, running=(snap.running[0], replace(snap.running[1], job=meh)))
    assert make_policy("hetero", throughputs=TABLE).plan(snap).placements == ()


def test_a_small_gain_is_not_worth_a_restart() -> None:
    table = ThroughputTable(
        {
            "fast-on-v100": {1: {"k80": 9.5, "v100": 10.0}},
            "indifferent": {1: {"k80": 4.9, "v100": 5.0}},
        }
    )
    assert make_policy("hetero", throughputs=table).plan(swap_snapshot()).placements == ()
