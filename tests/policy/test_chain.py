"""Chained placements on hand-made snapshots, for every policy: who waits behind whom, how
deep, and when the waiting jobs are taken back (`policy.chain`)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from commonpool.scheduler.policy import (
    POLICY_NAMES,
    ClusterSnapshot,
    JobView,
    Resources,
    RunningJobView,
    WorkerSlot,
    make_policy,
)
from commonpool.scheduler.policy.chain import chain, withdrawals
from tests.policy.builders import job, node, snapshot

NOW = 100.0


def command(job_id: str, submitted_at: float = 0.0, **kw: object) -> JobView:
    return job(job_id, gpus=0, submitted_at=submitted_at, chainable=True, **kw)


def run(view: JobView, started_at: float = NOW, after: str | None = None) -> RunningJobView:
    return RunningJobView(view, (WorkerSlot("n0", 0, view.per_worker),), started_at, after=after)


def full_pool(queued: list[JobView], running: tuple[RunningJobView, ...]) -> ClusterSnapshot:
    """One 2-CPU node whose CPUs the running jobs hold, at NOW."""
    busy = replace(node("n0", gpus=0, cpus=2), free=Resources(0, 0, 0))
    return replace(snapshot([busy], queued, running=running), now=NOW)


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_queued_commands_line_up_behind_young_runs_up_to_the_depth(name: str) -> None:
    queued = [command(f"q{i}", submitted_at=i) for i in range(6)]
    seen = full_pool(queued, (run(command("a")), run(command("b"))))
    policy = make_policy(name)
    after = {p.job_id: p.after for p in chain(policy, seen, policy.plan(seen), window_s=1, depth=2)}
    assert len(after) == 4  # two behind each run, q4 and q5 wait
    first = {job_id for job_id, ahead in after.items() if ahead in ("a", "b")}
    assert sorted(after[job_id] for job_id in first) == ["a", "b"]
    assert {ahead for job_id, ahead in after.items() if job_id not in first} == first


def test_no_line_behind_an_old_run_or_another_projects_run() -> None:
    seen = full_pool(
        [command("q0")],
        (run(command("old"), started_at=NOW - 5), run(command("other", project="elsewhere"))),
    )
    policy = make_policy("fifo")
    assert chain(policy, seen, policy.plan(seen), window_s=1.0, depth=3) == ()


def test_no_line_behind_a_run_whose_slot_is_too_small() -> None:
    small = replace(command("small"), per_worker=Resources(0.5, 0, 0))
    seen = full_pool([command("q0")], (run(small),))
    policy = make_policy("fifo")
    assert chain(policy, seen, policy.plan(seen), window_s=1.0, depth=3) == ()


def test_chaining_is_off_at_window_or_depth_zero() -> None:
    seen = full_pool([command("q")], (run(command("a")),))
    policy = make_policy("fifo")
    plan = policy.plan(seen)
    assert [p.after for p in chain(policy, seen, plan, window_s=1.0, depth=1)] == ["a"]
    assert chain(policy, seen, plan, window_s=0.0, depth=1) == ()
    assert chain(policy, seen, plan, window_s=1.0, depth=0) == ()


def test_the_jobs_behind_a_run_seen_running_past_the_window_are_taken_back() -> None:
    head = run(command("a"), started_at=NOW - 2)
    first, second = run(command("b"), after="a"), run(command("c"), after="b")
    seen = full_pool([], (head, first, second))
    assert {w.job_id for w in withdrawals(seen, window_s=1.0)} == {"b", "c"}
    assert withdrawals(seen, window_s=5.0) == ()
    unseen = replace(seen, running=(replace(head, running=False), first, second))
    assert withdrawals(unseen, window_s=1.0) == ()  # its start is not known yet: wait
