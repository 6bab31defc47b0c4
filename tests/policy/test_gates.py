"""The gates layer on hand-made snapshots: array limits, dependencies, cancellations."""

from __future__ import annotations

import random

import pytest

from commonpool.scheduler.policy import (
    POLICY_NAMES,
    Cancellation,
    DependencyView,
    JobView,
    RunningJobView,
    WorkerSlot,
    make_policy,
)
from commonpool.scheduler.policy.elastic import ElasticGrowth
from commonpool.scheduler.policy.gates import decide_dependencies, decide_gates
from commonpool.scheduler.policy.registry import make_unlayered
from tests.policy.builders import job, node, snapshot

ALL_NAMES = [*POLICY_NAMES, "fifo+carbon", "fair+hetero+carbon"]


def task(array_id: str, index: int, limit: int | None = 5) -> JobView:
    return job(f"{array_id}-t{index}", array_id=array_id, array_index=index, array_limit=limit)


def running(view: JobView, node_id: str = "n0") -> RunningJobView:
    return RunningJobView(view, (WorkerSlot(node_id, 0, view.per_worker),), started_at=0.0)


def big_pool() -> list:
    return [node(f"n{i}", gpus=8) for i in range(8)]  # 64 GPUs: room for every test queue


def test_an_array_never_gets_past_its_limit_and_lowest_indices_go_first() -> None:
    queued = [task("a", i) for i in range(3, 20)]
    random.Random(7).shuffle(queued)
    snap = snapshot(big_pool(), queued, running=tuple(running(task("a", i)) for i in range(3)))
    plan = make_policy("fifo").plan(snap)
    assert sorted(p.job_id for p in plan.placements) == ["a-t3", "a-t4"]
    assert plan.pending_reasons["a-t5"] == (
        "array limit: 3 of 5 tasks running, the 2 lowest-index waiting tasks go first"
    )
    assert set(plan.pending_reasons) == {f"a-t{i}" for i in range(5, 20)}


def test_a_full_array_waits_with_its_reason_and_other_jobs_are_not_held() -> None:
    snap = snapshot(
        big_pool(),
        [task("a", 9), task("b", 0, limit=1), job("plain")],
        running=tuple(running(task("a", i)) for i in range(5)),
    )
    plan = make_policy("fifo").plan(snap)
    assert sorted(p.job_id for p in plan.placements) == ["b-t0", "plain"]
    assert plan.pending_reasons == {"a-t9": "array limit: 5 of 5 tasks running"}


def test_an_array_without_limit_is_not_held() -> None:
    snap = snapshot(big_pool(), [task("a", i, limit=None) for i in range(10)])
    assert len(make_policy("fifo").plan(snap).placements) == 10


@pytest.mark.parametrize(
    ("condition", "state", "outcome"),
    [
        ("ok", "SUCCEEDED", "start"),
        ("ok", "RUNNING", "wait"),
        ("ok", "QUEUED", "wait"),
        ("ok", "PREEMPTED", "wait"),
        ("ok", "FAILED", "cancel"),
        ("ok", "CANCELLED", "cancel"),
        ("any", "SUCCEEDED", "start"),
        ("any", "FAILED", "start"),
        ("any", "CANCELLED", "start"),
        ("any", "STARTING", "wait"),
        ("fail", "FAILED", "start"),
        ("fail", "RUNNING", "wait"),
        ("fail", "SUCCEEDED", "cancel"),
        ("fail", "CANCELLED", "cancel"),
    ],
)
def test_dependency_semantics(condition: str, state: str, outcome: str) -> None:
    verdict = decide_dependencies("j", [DependencyView(condition, state, "job_d")])
    if outcome == "start":
        assert verdict is None
    elif outcome == "wait":
        assert isinstance(verdict, str) and verdict.startswith("waiting for job job_d to ")
    else:
        assert verdict == Cancellation("j", f"dependency job_d ended {state} (after{condition})")


def test_waiting_reason_names_one_dependency_and_counts_the_rest() -> None:
    deps = [
        DependencyView("ok", "SUCCEEDED", "job_a", 40),
        DependencyView("ok", "RUNNING", "job_b", 3),
        DependencyView("any", "QUEUED", "job_c", 2),
    ]
    assert decide_dependencies("j", deps) == (
        "waiting for job job_c to end (and 4 more dependencies)"
    )
    assert decide_dependencies("j", deps[1:2]) == (
        "waiting for job job_b to succeed (and 2 more dependencies)"
    )
    assert decide_dependencies("j", [DependencyView("fail", "RUNNING", "job_x")]) == (
        "waiting for job job_x to fail"
    )


def test_one_impossible_dependency_cancels_even_if_others_still_run() -> None:
    deps = [DependencyView("ok", "RUNNING", "job_a"), DependencyView("ok", "FAILED", "job_b")]
    assert decide_dependencies("j", deps) == Cancellation(
        "j", "dependency job_b ended FAILED (afterok)"
    )


def test_plan_cancels_the_impossible_holds_the_waiting_and_places_the_ready() -> None:
    snap = snapshot(
        big_pool(),
        [
            job("doomed", dependencies=(DependencyView("ok", "FAILED", "job_f"),)),
            job("waits", dependencies=(DependencyView("ok", "RUNNING", "job_r"),)),
            job("ready", dependencies=(DependencyView("ok", "SUCCEEDED", "job_s"),)),
        ],
    )
    plan = make_policy("fifo").plan(snap)
    assert [p.job_id for p in plan.placements] == ["ready"]
    assert plan.pending_reasons == {"waits": "waiting for job job_r to succeed"}
    assert plan.cancellations == (
        Cancellation("doomed", "dependency job_f ended FAILED (afterok)"),
    )


def test_a_task_waiting_on_a_dependency_does_not_use_its_arrays_room() -> None:
    waiting = (DependencyView("ok", "RUNNING", "job_r"),)
    queued = [
        job("a-t0", array_id="a", array_index=0, array_limit=1, dependencies=waiting),
        task("a", 1, limit=1),
    ]
    decision = decide_gates(snapshot(big_pool(), queued))
    assert [j.id for j in decision.admitted] == ["a-t1"]
    assert decision.held == {"a-t0": "waiting for job job_r to succeed"}


@pytest.mark.parametrize("name", ALL_NAMES)
def test_every_policy_made_by_the_registry_is_gated(name: str) -> None:
    snap = snapshot(
        big_pool(),
        [
            job("waits", dependencies=(DependencyView("any", "RUNNING", "job_r"),)),
            job("doomed", dependencies=(DependencyView("fail", "SUCCEEDED", "job_s"),)),
            *(task("a", i, limit=2) for i in range(4)),
        ],
    )
    plan = make_policy(name).plan(snap)
    assert sorted(p.job_id for p in plan.placements) == ["a-t0", "a-t1"]
    assert [c.job_id for c in plan.cancellations] == ["doomed"]
    assert set(plan.pending_reasons) == {"waits", "a-t2", "a-t3"}


@pytest.mark.parametrize("name", ALL_NAMES)
def test_gates_change_nothing_when_no_job_is_gated(name: str) -> None:
    snap = snapshot(
        [node("n0", gpus=4), node("n1", gpus=2)],
        [job(f"j{i}", gpus=2, submitted_at=float(i)) for i in range(5)],
        running=(running(job("r", gpus=1), "n1"),),
    )
    assert make_policy(name).plan(snap) == ElasticGrowth(make_unlayered(name)).plan(snap)
