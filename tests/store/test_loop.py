"""The live loop on a real database: snapshot -> policy -> guarded apply."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from commonpool.scheduler.loop import SchedulerLoop
from commonpool.scheduler.policy import ClusterSnapshot, Placement, Plan, Preemption, make_policy
from commonpool.scheduler.services.jobs import get_job, list_allocations, submit_job
from commonpool.scheduler.store.models import Allocation, Job, Node, utcnow
from commonpool.scheduler.store.snapshot_source import load_snapshot
from commonpool.scheduler.store.uow import Database
from tests.builders import job_spec, online_node


def _loop(db: Database) -> SchedulerLoop:
    return SchedulerLoop(db, make_policy("fifo"))


def test_places_gang_on_fitting_nodes_and_explains_the_rest(db: Database) -> None:
    with db.unit_of_work() as session:
        a = online_node(session, name="a", cpus=2)[0].id
        b = online_node(session, name="b", cpus=2)[0].id
        fits = submit_job(session, job_spec(workers=2, resources={"cpus": 2}), actor="t").id
        too_big = submit_job(session, job_spec(workers=3, resources={"cpus": 2}), actor="t").id
    report = _loop(db).step()
    assert report.placed == (fits,)
    with db.unit_of_work(write=False) as session:
        assert get_job(session, fits).state == "PLACED"
        allocations = list_allocations(session, fits)
        assert sorted(x.node_id for x in allocations) == sorted([a, b])
        assert [x.rank for x in allocations] == [0, 1]
        waiting = get_job(session, too_big)
        assert waiting.state == "QUEUED" and waiting.pending_reason
        # all-or-nothing: the job that does not fit holds nothing
        assert list_allocations(session, too_big) == []


def test_live_snapshot_and_policy_give_the_same_plan_twice(db: Database) -> None:
    with db.unit_of_work() as session:
        online_node(session, cpus=4)
        for _ in range(3):
            submit_job(session, job_spec(resources={"cpus": 2}), actor="t")
    loop = _loop(db)
    assert loop.plan() == loop.plan()
    with db.unit_of_work(write=False) as session:
        snapshot = load_snapshot(session, now=1000.0)
    assert make_policy("fifo").plan(snapshot) == make_policy("fifo").plan(snapshot)


def test_expired_lease_loses_node_and_requeues_its_job(db: Database) -> None:
    with db.unit_of_work() as session:
        node_id = online_node(session, cpus=2)[0].id
        job_id = submit_job(session, job_spec(resources={"cpus": 2}), actor="t").id
    _loop(db).step()
    with db.unit_of_work() as session:
        session.execute(update(Node).where(Node.id == node_id)
                        .values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    report = _loop(db).step()
    assert report.lost_nodes == (node_id,)
    with db.unit_of_work(write=False) as session:
        node = session.get(Node, node_id)
        assert (node.state, node.lease_epoch) == ("LOST", 2)
        job = get_job(session, job_id)
        assert (job.state, job.attempt) == ("QUEUED", 2)
        active = session.scalar(select(func.count()).select_from(Allocation)
                                .where(Allocation.released_at.is_(None)))
        assert active == 0


@pytest.mark.parametrize(
    ("reason", "counter"),
    [
        ("elastic: growing from 1 to 2 workers", "regrows"),
        ("preempted by job j2: more attained service (LAS queue > 0)", "policy_preemptions"),
        ("migrating from k80 to v100: it runs faster there", "policy_preemptions"),
    ],
)
def test_a_policy_preemption_is_voluntary_and_never_spends_an_attempt(
    db: Database, reason: str, counter: str
) -> None:
    from commonpool.scheduler.services.preemption import RequeueBackoff, preempt_job

    now = RequeueBackoff(0, 0)
    with db.unit_of_work() as session:
        online_node(session, cpus=2)
        job_id = submit_job(session, job_spec(max_attempts=2), actor="t").id
    _loop(db).step()
    with db.unit_of_work() as session:
        preempt_job(session, job_id, reason=reason, voluntary=True)
    _loop(db).step()
    with db.unit_of_work() as session:
        assert preempt_job(session, job_id, reason="node lost", backoff=now) == "QUEUED"
        job = get_job(session, job_id)
        assert (job.attempt, getattr(job, counter), job.carbon_suspensions) == (3, 1, 0)
    _loop(db).step()
    with db.unit_of_work() as session:
        assert preempt_job(session, job_id, reason="node lost", backoff=now) == "FAILED"


def test_requeued_job_waits_out_its_backoff_which_doubles_per_failure(db: Database) -> None:
    from commonpool.scheduler.services.preemption import RequeueBackoff, preempt_job

    backoff = RequeueBackoff(base_s=30, max_s=45)
    assert [backoff.delay(n).total_seconds() for n in (0, 1, 2, 3)] == [0, 30, 45, 45]
    with db.unit_of_work() as session:
        online_node(session, cpus=2)
        job_id = submit_job(session, job_spec(), actor="t").id
    _loop(db).step()
    with db.unit_of_work() as session:
        preempt_job(session, job_id, reason="node lost", backoff=backoff)
        job = get_job(session, job_id)
        assert job.state == "QUEUED" and job.pending_reason == "requeue backoff after: node lost"
    assert _loop(db).step().placed == ()  # waiting: the policy does not even see it
    later = SchedulerLoop(db, make_policy("fifo"), clock=lambda: time.time() + 31)
    assert later.step().placed == (job_id,)


class MoveEveryRunningJob:
    """A policy that moves each running job to the slots it holds (as `migrate` would)."""

    name = "move-all"

    def plan(self, snapshot: ClusterSnapshot) -> Plan:
        running = snapshot.running
        return Plan(
            placements=tuple(Placement(r.job.id, r.workers) for r in running),
            preemptions=tuple(Preemption(r.job.id, "migrating from a to b") for r in running),
        )


def test_a_moving_job_is_placed_again_only_after_its_old_run_is_released(db: Database) -> None:
    with db.unit_of_work() as session:
        online_node(session, cpus=2)
        job_id = submit_job(session, job_spec(), actor="t").id
    assert _loop(db).step().placed == (job_id,)
    report = SchedulerLoop(db, MoveEveryRunningJob()).step()
    assert report.preempted == (job_id,) and report.placed == ()
    with db.unit_of_work(write=False) as session:
        job = get_job(session, job_id)
        assert (job.state, job.attempt) == ("QUEUED", 2)
        assert list_allocations(session, job_id, active_only=True) == []
    assert _loop(db).step().placed == (job_id,)  # the next step places its new attempt


def _started_ago(db: Database, job_id: str, seconds: float) -> None:
    """Pretend the job's active allocations were taken `seconds` ago."""
    with db.unit_of_work() as session:
        session.execute(
            update(Allocation)
            .where(Allocation.job_id == job_id, Allocation.released_at.is_(None))
            .values(created_at=utcnow() - timedelta(seconds=seconds))
        )


def test_live_snapshot_counts_attained_service_across_attempts(db: Database) -> None:
    from commonpool.scheduler.services.preemption import preempt_job

    with db.unit_of_work() as session:
        online_node(session, cpus=4, gpus=2, gpu_type="v100")
        gpu = submit_job(session, job_spec(workers=2, resources={"cpus": 1, "gpus": 1}),
                         actor="t").id
    _loop(db).step()
    _started_ago(db, gpu, 600)
    with db.unit_of_work() as session:  # attempt 1 ran 10 min on 2 GPUs
        preempt_job(session, gpu, reason="preempted by job x", voluntary=True)
    with db.unit_of_work(write=False) as session:
        (queued,) = load_snapshot(session, now=time.time()).queued
    assert queued.attained_service_s == pytest.approx(2 * 600, abs=5)
    _loop(db).step()
    _started_ago(db, gpu, 300)
    with db.unit_of_work(write=False) as session:
        (running,) = load_snapshot(session, now=time.time()).running
    assert running.job.attained_service_s == pytest.approx(2 * 600 + 2 * 300, abs=5)


def test_live_las_preempts_a_long_served_job_for_a_new_one(db: Database) -> None:
    with db.unit_of_work() as session:
        online_node(session, cpus=2)
        long_job = submit_job(session, job_spec(resources={"cpus": 2}), actor="t").id
    las = SchedulerLoop(db, make_policy("las"))
    assert las.step().placed == (long_job,)
    _started_ago(db, long_job, 2 * 3600)  # past LAS's first threshold (1 worker-hour)
    with db.unit_of_work() as session:
        new_job = submit_job(session, job_spec(resources={"cpus": 2}), actor="t").id
    report = las.step()
    assert report.preempted == (long_job,) and report.placed == (new_job,)
    with db.unit_of_work(write=False) as session:
        assert get_job(session, long_job).policy_preemptions == 1


def test_live_srpt_sees_a_running_jobs_time_left_and_preempts_for_a_short_job(
    db: Database,
) -> None:
    """A running job's estimate is what is left of its time limit (this attempt's), not the
    whole limit: SRPT compares it with a newcomer's, and backfill gets its expected end."""
    with db.unit_of_work() as session:
        online_node(session, cpus=2)
        long_job = submit_job(
            session, job_spec(resources={"cpus": 2}, max_runtime_s=10 * 3600), actor="t"
        ).id
    srpt = SchedulerLoop(db, make_policy("srpt"))
    assert srpt.step().placed == (long_job,)
    placed_at = utcnow() - timedelta(hours=2)
    with db.unit_of_work() as session:
        session.execute(update(Job).where(Job.id == long_job).values(placed_at=placed_at))
        short = submit_job(
            session, job_spec(resources={"cpus": 2}, max_runtime_s=3600), actor="t"
        ).id
    with db.unit_of_work(write=False) as session:
        (running,) = load_snapshot(session, now=time.time()).running
    assert running.job.estimated_runtime_s == pytest.approx(8 * 3600, abs=5)
    assert running.expected_end == pytest.approx(placed_at.timestamp() + 10 * 3600)
    report = srpt.step()
    assert report.preempted == (long_job,) and report.placed == (short,)


def test_a_quick_step_sees_only_the_head_of_the_queue_and_a_full_step_all(
    db: Database,
) -> None:
    with db.unit_of_work() as session:
        online_node(session, cpus=4)
        jobs = [submit_job(session, job_spec(resources={"cpus": 1}), actor="t").id
                for _ in range(4)]
    loop = SchedulerLoop(db, make_policy("fifo"), quick_depth=1)
    quick = loop.step(quick=True)
    assert quick.quick and quick.placed == (jobs[0],) and quick.pending == 0
    full = loop.step()
    assert not full.quick and full.placed == tuple(jobs[1:])


def test_a_quick_step_never_preempts_and_the_next_full_step_does(db: Database) -> None:
    with db.unit_of_work() as session:
        online_node(session, cpus=2)
        long_job = submit_job(session, job_spec(resources={"cpus": 2}), actor="t").id
    las = SchedulerLoop(db, make_policy("las"))
    assert las.step().placed == (long_job,)
    _started_ago(db, long_job, 2 * 3600)
    with db.unit_of_work() as session:
        new_job = submit_job(session, job_spec(resources={"cpus": 2}), actor="t").id
    quick = las.step(quick=True)
    assert quick.preempted == () and quick.placed == ()
    full = las.step()
    assert full.preempted == (long_job,) and full.placed == (new_job,)


def test_woken_steps_are_quick_until_a_full_one_is_due(db: Database) -> None:
    reports: list[bool] = []
    loop = SchedulerLoop(db, make_policy("fifo"), interval_s=0.3,
                         after_step=lambda report: reports.append(report.quick))

    def wake_often() -> None:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            loop.wake()
            time.sleep(0.01)
        loop.stop()

    threading.Thread(target=wake_often, daemon=True).start()
    loop.run_forever()
    assert reports[0] is False  # the first step, woken by nothing, is full
    assert reports.count(True) > reports.count(False) >= 2  # a full one at least every 0.3 s
