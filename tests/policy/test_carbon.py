"""The ``+carbon`` layer on hand-made snapshots, plus the invariants on random ones."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commonpool.scheduler.policy import (
    POLICY_NAMES,
    ClusterSnapshot,
    RunningJobView,
    WorkerSlot,
    make_policy,
)
from commonpool.scheduler.policy.carbon import CarbonPolicy
from commonpool.scheduler.policy.forecast import IntensityForecast
from tests.policy.test_properties import snapshots

from .builders import job, node, snapshot

H = 3600.0
# GB is dirty for 6 h, then clean for 6 h, then dirty again; DE is flat and dirty.
DIP = tuple((h * H, 400.0 if h < 6 or h >= 12 else 100.0) for h in range(48))
FLAT = tuple((h * H, 400.0) for h in range(48))


def flexible(job_id: str, runtime_h: float = 2.0, deadline_h: float = 30.0, **kw: object):
    return job(job_id, carbon_aware=True, deadline=deadline_h * H,
               estimated_runtime_s=runtime_h * H, **kw)


def carbon_snapshot(queued, nodes=None, running=(), now=0.0, forecast=None) -> ClusterSnapshot:
    nodes = nodes or [node("gb", gpus=4, region="GB"), node("de", gpus=4, region="DE")]
    return replace(snapshot(nodes, queued), now=now, running=tuple(running),
                   carbon_forecast=forecast or {"GB": DIP, "DE": FLAT})


def test_flexible_job_waits_for_the_clean_window_with_a_human_reason() -> None:
    plan = make_policy("fifo+carbon").plan(carbon_snapshot([flexible("f")]))
    assert plan.placements == ()
    reason = plan.pending_reasons["f"]
    assert re.fullmatch(r"waiting for cleaner power, expected start 06:00 UTC in GB, "
                        r"saves ~(\d+)% \(deadline .*\)", reason), reason
    assert int(re.search(r"saves ~(\d+)%", reason).group(1)) >= 40  # type: ignore[union-attr]
    assert plan.review_at == 6 * H  # the simulator wakes up when the window opens
    later = make_policy("fifo+carbon").plan(carbon_snapshot([flexible("f")], now=6 * H))
    assert [p.job_id for p in later.placements] == ["f"]
    assert later.placements[0].node_ids == ("gb",)


@pytest.mark.parametrize("base", ["fifo", "las", "fair", "backfill", "fair+hetero"])
def test_carbon_ignore_job_is_never_deferred(base: str) -> None:
    ignore = job("i", carbon_aware=False, deadline=30 * H, estimated_runtime_s=2 * H)
    no_deadline = job("n", carbon_aware=True, estimated_runtime_s=2 * H)
    snap = carbon_snapshot([ignore, no_deadline])
    with_carbon = make_policy(f"{base}+carbon").plan(snap)
    assert {p.job_id for p in with_carbon.placements} == {"i", "n"}
    assert with_carbon.pending_reasons == {}


def test_inflexible_jobs_see_exactly_the_base_plan_without_a_forecast() -> None:
    snap = snapshot([node("a"), node("b")], [job("x", gpus=2), flexible("f")])
    for base in ("fifo", "las", "fair+hetero"):
        assert make_policy(f"{base}+carbon").plan(snap) == make_policy(base).plan(snap)


def test_prefers_the_cleaner_region_for_the_same_gpu_type() -> None:
    nodes = [node("de", region="DE"), node("gb", region="GB")]  # base order: DE first
    snap = carbon_snapshot([job("x")], nodes=nodes, now=7 * H)  # GB 100 vs DE 400 now
    assert make_policy("fifo").plan(snap).placements[0].node_ids == ("de",)
    assert make_policy("fifo+carbon").plan(snap).placements[0].node_ids == ("gb",)


def test_job_past_its_latest_start_runs_now_even_if_dirty() -> None:
    # 2 h of work, deadline in 4 h: safety (10%) + guard (2 h) leave no room to wait, so it
    # goes first - ahead of an earlier gang that would take the whole pool under FIFO.
    urgent = flexible("u", runtime_h=2.0, deadline_h=4.0, submitted_at=1.0)
    snap = carbon_snapshot([job("blocker", gpus=4, workers=2), urgent])
    assert [p.job_id for p in make_policy("fifo").plan(snap).placements] == ["blocker"]
    assert [p.job_id for p in make_policy("fifo+carbon").plan(snap).placements] == ["u"]


def test_a_full_pool_of_inflexible_work_yields_to_a_job_at_its_latest_start() -> None:
    """Waiting must not cost the deadline: the youngest inflexible job is checkpointed."""
    old, young = job("old", gpus=4), job("young", gpus=4)
    running = [RunningJobView(old, (WorkerSlot("gb", 0, old.per_worker),), started_at=-5 * H),
               RunningJobView(young, (WorkerSlot("de", 0, young.per_worker),), started_at=-H)]
    nodes = [node("gb", free_gpus=0, region="GB"), node("de", free_gpus=0, region="DE")]
    urgent = flexible("u", gpus=4, runtime_h=2.0, deadline_h=4.0)
    plan = make_policy("fifo+carbon").plan(
        carbon_snapshot([urgent], nodes=nodes, running=running))
    assert [p.job_id for p in plan.placements] == ["u"]
    (pre,) = plan.preemptions
    assert pre.job_id == "young" and "deadline-critical job u" in pre.reason
    assert make_policy("fifo").plan(carbon_snapshot([urgent], nodes=nodes, running=running)) \
        .preemptions == ()  # the base alone never preempts


def test_a_running_flexible_job_without_slack_is_not_the_bases_to_preempt() -> None:
    """LAS would demote it (10 GPU-hours attained) for a newcomer; its deadline forbids."""
    served = dict(attained_service_s=20 * H)
    tight = RunningJobView(flexible("t", gpus=4, runtime_h=2.0, deadline_h=4.0, **served),
                           (WorkerSlot("gb", 0, job("x", gpus=4).per_worker),), started_at=-H)
    loose = replace(tight, job=flexible("t", gpus=4, runtime_h=2.0, deadline_h=40.0, **served))
    nodes = [node("gb", free_gpus=0, region="GB")]
    newcomer = job("new", gpus=4)
    for run, preempted in ((tight, []), (loose, ["t"])):
        plan = make_policy("las+carbon").plan(
            carbon_snapshot([newcomer], nodes=nodes, running=[run], now=0.0))
        assert [p.job_id for p in plan.preemptions] == preempted


def test_a_released_job_the_base_leaves_waiting_is_reviewed_at_its_latest_start() -> None:
    # Clean now (GB dips 6-12 h), so the layer releases f to FIFO, whose head blocks it.
    f = flexible("f", runtime_h=1.0, deadline_h=20.0, submitted_at=2.0)
    busy = job("busy", gpus=4)
    running = [RunningJobView(busy, (WorkerSlot("de", 0, busy.per_worker),), started_at=0.0)]
    nodes = [node("gb", region="GB"), node("de", free_gpus=0, region="DE")]
    snap = carbon_snapshot([job("head", gpus=4, workers=2, submitted_at=1.0), f], nodes=nodes,
                           running=running, now=7 * H)
    policy = CarbonPolicy("fifo")
    plan = policy.plan(snap)
    assert plan.placements == () and "strict FIFO" in plan.pending_reasons["f"]
    assert plan.review_at == policy.latest_start(f)
    later = policy.plan(replace(snap, now=policy.latest_start(f)))
    assert [p.job_id for p in later.placements] == ["f"]


@settings(max_examples=60, deadline=None)
@given(
    runtime_h=st.floats(0.2, 20.0), slack_h=st.floats(0.0, 40.0), start_h=st.integers(0, 40),
    values=st.lists(st.floats(20.0, 800.0), min_size=48, max_size=48),
)
def test_never_misses_a_feasible_deadline_in_the_forecast(
    runtime_h: float, slack_h: float, start_h: int, values: list[float],
) -> None:
    """Step the policy hour by hour on an empty node: the job starts in time to finish."""
    policy = CarbonPolicy("fifo")
    deadline_h = start_h + runtime_h * (1 + policy.safety) + policy.guard_s / H + slack_h
    f = flexible("f", runtime_h=runtime_h, deadline_h=deadline_h)
    forecast = {"GB": tuple((h * H, v) for h, v in enumerate(values + values)), "DE": FLAT}
    now = float(start_h) * H
    while True:
        plan = policy.plan(carbon_snapshot([f], now=now, forecast=forecast))
        if plan.placements:
            break
        assert plan.review_at is not None and plan.review_at > now
        now = plan.review_at  # the review time alone must bring the job in time
    assert now + runtime_h * H <= f.deadline


def test_long_job_is_suspended_at_a_spike_and_only_a_bounded_number_of_times() -> None:
    long = flexible("L", runtime_h=3.0, deadline_h=40.0)
    spike = {"GB": tuple((h * H, 900.0 if h < 4 else 100.0) for h in range(48)), "DE": FLAT}
    running = [RunningJobView(long, (WorkerSlot("gb", 0, long.per_worker),), started_at=-2 * H)]
    nodes = [node("gb", free_gpus=3, region="GB"), node("de", region="DE")]
    plan = make_policy("las+carbon").plan(
        carbon_snapshot([], nodes=nodes, running=running, forecast=spike))
    (pre,) = plan.preemptions
    assert pre.job_id == "L" and pre.reason.startswith("carbon: suspended at checkpoint")
    assert "interruption 1/6" in pre.reason
    spent = [replace(running[0], job=replace(long, carbon_suspensions=6))]
    again = make_policy("las+carbon").plan(
        carbon_snapshot([], nodes=nodes, running=spent, forecast=spike))
    assert again.preemptions == ()


def test_forecast_window_means_are_exact_for_a_step_function() -> None:
    fc = IntensityForecast(((0.0, 100.0), (H, 300.0), (2 * H, 100.0)))
    assert fc.mean(0.0, 2 * H) == pytest.approx(200.0)
    assert fc.mean(0.5 * H, H) == pytest.approx(200.0)
    assert fc.value_at(1.5 * H) == 300.0
    assert fc.mean(2 * H, 2 * H) == pytest.approx((100.0 + fc.mean_value) / 2)  # past horizon


@settings(max_examples=80, deadline=None)
@given(snap=snapshots(), base=st.sampled_from(POLICY_NAMES), data=st.data())
def test_carbon_layer_keeps_the_policy_invariants(snap: ClusterSnapshot, base: str,
                                                  data: st.DataObject) -> None:
    regions = ("GB", "DE")
    nodes = tuple(replace(n, region=data.draw(st.sampled_from(regions))) for n in snap.nodes)
    queued = tuple(
        replace(j, carbon_aware=data.draw(st.booleans()),
                deadline=data.draw(st.sampled_from((None, 2 * H, 50 * H))),
                estimated_runtime_s=data.draw(st.sampled_from((None, 0.5 * H, 5 * H))))
        for j in snap.queued)
    running = tuple(replace(r, job=replace(r.job, carbon_aware=True, deadline=80 * H,
                                           estimated_runtime_s=10 * H)) for r in snap.running)
    values = data.draw(st.lists(st.floats(10, 900), min_size=24, max_size=24))
    forecast = {"GB": tuple((snap.now + h * H, v) for h, v in enumerate(values)), "DE": FLAT}
    snap = replace(snap, nodes=nodes, queued=queued, running=running, carbon_forecast=forecast)
    policy = make_policy(f"{base}+carbon")
    plan = policy.plan(snap)
    assert plan == policy.plan(snap)
    free = {n.id: n.free for n in snap.nodes}
    running_ids = {r.job.id for r in snap.running}
    for pre in plan.preemptions:
        assert pre.job_id in running_ids and pre.reason
        for slot in next(r for r in snap.running if r.job.id == pre.job_id).workers:
            free[slot.node_id] += slot.resources
    placed = {p.job_id for p in plan.placements}
    moving = {pre.job_id for pre in plan.preemptions}  # hetero's migration re-places them
    assert len(placed) == len(plan.placements) and placed <= {j.id for j in snap.queued} | moving
    for p in plan.placements:
        for w in p.workers:
            free[w.node_id] -= w.resources
    assert all(r.gpus >= 0 and r.cpus >= -1e-9 for r in free.values())
    assert set(plan.pending_reasons) == {j.id for j in snap.queued} - placed
    assert all(plan.pending_reasons.values())
    for j in snap.queued:  # inflexible jobs are never held back by the carbon layer
        if j.id in plan.pending_reasons and not (j.carbon_aware and j.deadline):
            assert not plan.pending_reasons[j.id].startswith("waiting for cleaner power")
