"""Elastic jobs grow back to workers_max when the pool has room and nobody waits."""

from __future__ import annotations

from dataclasses import replace

from commonpool.scheduler.policy import (
    ClusterSnapshot,
    JobView,
    NodeView,
    Resources,
    RunningJobView,
    WorkerSlot,
    make_policy,
)
from tests.policy.builders import GIB

CPU = Resources(1, GIB, 0)


def _node(node_id: str, free_cpus: float) -> NodeView:
    return NodeView(node_id, Resources(1, 8 * GIB, 0), Resources(free_cpus, 7 * GIB, 0))


def _elastic(job_id: str = "e") -> JobView:
    return JobView(job_id, CPU, workers_min=1, workers_max=2)


def _world(now: float, free_b: float, queued: tuple[JobView, ...] = ()) -> ClusterSnapshot:
    running = RunningJobView(_elastic(), (WorkerSlot("a", 0, CPU),), started_at=0.0)
    return ClusterSnapshot(now, (_node("a", 0), _node("b", free_b)), queued, (running,))


def test_job_below_its_size_regrows_once_room_returns() -> None:
    plan = make_policy("fifo", grow_after_s=60).plan(_world(now=120, free_b=1))
    assert [(p.job_id, p.reason.split(":")[0]) for p in plan.preemptions] == [("e", "elastic")]
    assert "from 1 to 2 workers" in plan.preemptions[0].reason


def test_no_regrow_without_room_too_early_or_with_work_waiting() -> None:
    fifo = make_policy("fifo", grow_after_s=60)
    assert fifo.plan(_world(now=120, free_b=0)).preemptions == ()
    assert fifo.plan(_world(now=30, free_b=1)).preemptions == ()
    waiting = JobView("w", replace(CPU, cpus=2), 1, 1)  # cannot fit: it waits, and wins
    plan = fifo.plan(_world(now=120, free_b=1, queued=(waiting,)))
    assert plan.preemptions == () and "w" in plan.pending_reasons


def test_full_size_job_and_disabled_layer_never_regrow() -> None:
    full = RunningJobView(JobView("f", CPU, 1, 1), (WorkerSlot("a", 0, CPU),), started_at=0.0)
    world = ClusterSnapshot(500, (_node("a", 0), _node("b", 1)), (), (full,))
    assert make_policy("fifo").plan(world).preemptions == ()
    assert make_policy("fifo", grow_after_s=None).plan(_world(120, 1)).preemptions == ()
