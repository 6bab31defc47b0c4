"""Each policy's defining behaviour on hand-made snapshots."""

from collections import Counter

from commonpool.scheduler.policy import (
    JobView,
    Resources,
    RunningJobView,
    WorkerSlot,
    make_policy,
)
from commonpool.scheduler.policy.credits import accrue, effective_weights
from commonpool.scheduler.policy.throughput import ThroughputTable

from .builders import GIB, job, node, snapshot


def running(j: JobView, node_id: str, started_at: float = 0.0, end: float | None = None):
    slots = tuple(WorkerSlot(node_id, r, j.per_worker) for r in range(j.workers_max))
    return RunningJobView(j, slots, started_at, end)


def test_backfill_does_not_delay_the_reserved_job() -> None:
    busy = job("busy", 4)
    snap = snapshot(
        [node("a", 4), node("b", 4, free_gpus=0)],
        [job("head", 4, 2, submitted_at=1), job("small", 1, submitted_at=2),
         job("short", 1, submitted_at=3, estimated_runtime_s=50)],
        running=(running(busy, "b", end=100.0),),
    )
    plan = make_policy("backfill").plan(snap)
    assert [p.job_id for p in plan.placements] == ["short"]  # ends before the shadow time
    assert "reserved for job head" in plan.pending_reasons["small"]
    assert "head of queue" in plan.pending_reasons["head"]


def test_backfill_uses_capacity_the_head_does_not_need() -> None:
    snap = snapshot(
        [node("a", 4), node("b", 4, free_gpus=1), node("c", 2, gpu_type="k80")],
        [job("head", 8, 1, gpu_type="v100", submitted_at=1), job("small", 1, submitted_at=2)],
        running=(running(job("busy", 3), "b", end=100.0),),
    )
    plan = make_policy("backfill").plan(snap)
    assert [p.job_id for p in plan.placements] == ["small"]


def test_las_preempts_long_running_job_for_new_one() -> None:
    old = job("old", 4, attained_service_s=50 * 3600)
    snap = snapshot([node("a", 4, free_gpus=0)], [job("new", 4, submitted_at=10)],
                    running=(running(old, "a"),))
    plan = make_policy("las").plan(snap)
    assert [p.job_id for p in plan.placements] == ["new"]
    assert [p.job_id for p in plan.preemptions] == ["old"]


def test_no_policy_preempts_a_service() -> None:
    """A service holds its allocation until stopped: LAS would demote it (it never ends)
    and fair share would count it over-share, but stopping it takes its endpoint down."""
    nodes = [node("a", 4, free_gpus=0)]
    served = job("served", 4, project="a", attained_service_s=500 * 3600, preemptible=False)
    queued = [job("new", 4, project="b", submitted_at=10)]
    for name in ("las", "fair", "hetero", "srpt"):
        snap = snapshot(nodes, queued, running=(running(served, "a"),)).__class__(
            10_000.0, tuple(nodes), tuple(queued), (running(served, "a"),)
        )
        plan = make_policy(name, grace_s=0) if name == "fair" else make_policy(name)
        assert plan.plan(snap).preemptions == (), name


def test_las_does_not_preempt_within_one_queue() -> None:
    peer = job("peer", 4, attained_service_s=600)
    snap = snapshot([node("a", 4, free_gpus=0)], [job("new", 4, submitted_at=10)],
                    running=(running(peer, "a"),))
    plan = make_policy("las").plan(snap)
    assert plan.placements == () and plan.preemptions == ()
    assert "LAS queue 0" in plan.pending_reasons["new"]


def test_las_orders_by_attained_service_not_arrival() -> None:
    snap = snapshot([node("a", 4)], [job("served", 4, attained_service_s=7200),
                                     job("fresh", 4, submitted_at=99)])
    assert [p.job_id for p in make_policy("las").plan(snap).placements] == ["fresh"]


def _two_projects(n: int = 20) -> list[JobView]:
    return [job(f"{p}{i}", 1, project=p, submitted_at=i) for p in "ab" for i in range(n)]


def test_fair_share_converges_to_weights() -> None:
    snap = snapshot([node(f"n{i}", 4) for i in range(4)], _two_projects(),
                    project_weights={"a": 3.0, "b": 1.0})
    plan = make_policy("fair").plan(snap)
    assert Counter(p.job_id[0] for p in plan.placements) == {"a": 12, "b": 4}
    assert "project a over fair share" in plan.pending_reasons["a12"]


def test_donor_credits_raise_a_donor_projects_share() -> None:
    nodes = [node(f"n{i}", 4) for i in range(4)]
    equal = make_policy("fair").plan(snapshot(nodes, _two_projects()))
    donor = make_policy("fair").plan(snapshot(nodes, _two_projects(), donor_credits={"b": 10.0}))
    assert Counter(p.job_id[0] for p in equal.placements)["b"] == 8
    assert Counter(p.job_id[0] for p in donor.placements)["b"] == 12


def test_fair_preempts_over_share_project_only_after_grace() -> None:
    hogs = [job(f"a{i}", 4, project="a") for i in range(2)]
    runs = tuple(running(h, f"n{i}", started_at=0.0) for i, h in enumerate(hogs))
    nodes = [node("n0", 4, free_gpus=0), node("n1", 4, free_gpus=0)]
    queued = [job("b0", 4, project="b"), job("a9", 4, project="a")]
    early = make_policy("fair", grace_s=600).plan(snapshot(nodes, queued, running=runs))
    assert early.preemptions == ()
    late = make_policy("fair", grace_s=600).plan(
        snapshot(nodes, queued, running=runs).__class__(1000.0, tuple(nodes), tuple(queued), runs)
    )
    assert [p.job_id for p in late.placements] == ["b0"]
    assert len(late.preemptions) == 1 and late.preemptions[0].job_id.startswith("a")


def test_credit_decay_and_weight_bonus() -> None:
    credits = accrue({"a": 10.0}, {"b": 3600.0}, dt_s=3600, half_life_s=3600)
    assert credits == {"a": 5.0, "b": 1.0}
    w = effective_weights(["a", "b", "c"], {}, {"a": 3.0, "b": 1.0})
    assert w["a"] > w["b"] > w["c"] == 1.0
    assert abs(sum(w.values()) - 6.0) < 1e-9


TABLE = ThroughputTable({
    "fast-on-v100": {1: {"k80": 1.0, "v100": 10.0}},
    "indifferent": {1: {"k80": 4.0, "v100": 5.0}},
})


def test_hetero_gives_v100_to_the_biggest_speedup() -> None:
    snap = snapshot(
        [node("k", 1, "k80"), node("v", 1, "v100")],
        [job("meh", 1, job_type="indifferent", submitted_at=0),
         job("speedy", 1, job_type="fast-on-v100", submitted_at=1)],
    )
    for name in ("hetero", "fifo+hetero", "fair+hetero", "backfill+hetero"):
        plan = make_policy(name, throughputs=TABLE).plan(snap)
        where = {p.job_id: p.workers[0].node_id for p in plan.placements}
        assert where == {"speedy": "v", "meh": "k"}, name


def test_hetero_falls_back_for_unknown_job_types() -> None:
    snap = snapshot([node("k", 1, "k80")], [job("x", 1, job_type="never-measured")])
    assert len(make_policy("hetero", throughputs=TABLE).plan(snap).placements) == 1


def test_hetero_never_offers_a_type_where_the_job_cannot_run() -> None:
    table = ThroughputTable({"big": {1: {"k80": 0.0, "v100": 2.0}}})
    snap = snapshot([node("k", 1, "k80")], [job("x", 1, job_type="big")])
    assert make_policy("fifo+hetero", throughputs=table).plan(snap).placements == ()


def test_bundled_table_has_gavel_rates() -> None:
    table = ThroughputTable.bundled()
    assert table.rate("ResNet-50 (batch size 128)", 2, "k80") == 0.0
    assert table.rate("A3C", 1, "v100") > table.rate("A3C", 1, "k80")


def test_cpu_only_job_prefers_cpu_nodes() -> None:
    cpu = node("c", gpus=0, cpus=16)
    snap = snapshot([node("g", 4), cpu], [JobView("j", Resources(8, GIB, 0))])
    (placement,) = make_policy("fifo").plan(snap).placements
    assert placement.node_ids == ("c",)


def test_srpt_runs_the_least_remaining_work_first() -> None:
    """Work is GPU-seconds: 10 h on 1 GPU (10 GPU-h) goes before 3 h on 4 GPUs (12)."""
    snap = snapshot([node("a", 4)], [
        job("wide", 4, submitted_at=1, estimated_runtime_s=3 * 3600),
        job("narrow", 1, submitted_at=2, estimated_runtime_s=10 * 3600),
        job("long", 4, submitted_at=0, estimated_runtime_s=100 * 3600)])
    plan = make_policy("srpt").plan(snap)
    assert [p.job_id for p in plan.placements] == ["narrow"]
    assert "SRPT: ~12.0 GPU-h left" in plan.pending_reasons["wide"]


def test_srpt_preempts_only_a_job_with_far_more_work_left() -> None:
    new = job("new", 4, submitted_at=10, estimated_runtime_s=3600)
    for left_h, preempted in ((1.5, False), (2.0, False), (2.5, True), (50.0, True)):
        old = job("old", 4, estimated_runtime_s=left_h * 3600)
        snap = snapshot([node("a", 4, free_gpus=0)], [new], running=(running(old, "a"),))
        plan = make_policy("srpt").plan(snap)
        assert [p.job_id for p in plan.preemptions] == (["old"] if preempted else []), left_h
        assert [p.job_id for p in plan.placements] == (["new"] if preempted else []), left_h


def test_srpt_ranks_jobs_without_an_estimate_by_attained_service() -> None:
    snap = snapshot([node("a", 4)], [job("served", 4, attained_service_s=7200),
                                     job("fresh", 4, submitted_at=99)])
    assert [p.job_id for p in make_policy("srpt").plan(snap).placements] == ["fresh"]


def _full_pool(owners: dict[str, str], left_h: float) -> tuple:
    """Two 4-GPU nodes full of 1-GPU jobs, node -> project, each with `left_h` to go."""
    nodes = [node(n, 4, free_gpus=0) for n in owners]
    runs = tuple(
        running(job(f"{n}{i}", 1, project=p, estimated_runtime_s=left_h * 3600), n)
        for n, p in owners.items() for i in range(4)
    )
    return nodes, runs


def test_fair_serves_a_starving_gang_before_its_projects_younger_jobs() -> None:
    """Progressive filling skips a gang that does not fit; after `starve_s` the gang
    checkpoints its own project's jobs that have far more work left."""
    nodes, runs = _full_pool({"a": "p", "b": "q"}, left_h=100)
    gang = job("gang", 1, 4, project="p", submitted_at=0, estimated_runtime_s=1800)
    for now, served in ((1800.0, False), (7200.0, True)):
        snap = snapshot(nodes, [gang], running=runs).__class__(now, tuple(nodes), (gang,), runs)
        plan = make_policy("fair").plan(snap)
        assert [p.job_id for p in plan.placements] == (["gang"] if served else []), now
        assert sorted(p.job_id for p in plan.preemptions) == (
            ["a0", "a1", "a2", "a3"] if served else []), now
    assert all("starving for 2.0 h" in p.reason for p in plan.preemptions)


def test_a_starving_gang_never_takes_from_a_project_within_its_share() -> None:
    """Project q holds its share (half the pool): the starving gang of p may not preempt
    it, and p's own jobs have about as much work left as the gang: it gets a reservation."""
    nodes, runs = _full_pool({"a": "p", "b": "q"}, left_h=1)
    runs = tuple(r if r.job.project == "p" else running(
        job(r.job.id, 1, project="q", estimated_runtime_s=500 * 3600), "b") for r in runs)
    gang = job("gang", 1, 4, project="p", submitted_at=0, estimated_runtime_s=1800)
    snap = snapshot(nodes, [gang], running=runs).__class__(7200.0, tuple(nodes), (gang,), runs)
    plan = make_policy("fair").plan(snap)
    assert plan.placements == () and plan.preemptions == ()
    assert plan.pending_reasons["gang"].startswith("starving for 2.0 h; reserved for job gang")
