"""Arrays and dependencies through the live loop: snapshot -> gated policy -> apply -> launch.

The loop runs with the real `Launcher` over a scripted runner (no Ray, no processes): a
launch is recorded, and a run ends when the test says so, exactly as a real run's end is
polled and recorded. Every check reads the registry after a loop step.
"""

from __future__ import annotations

import random
from typing import Any

from sqlalchemy import func, select

from commonpool.scheduler.launcher import Launcher
from commonpool.scheduler.loop import SchedulerLoop
from commonpool.scheduler.policy import Cancellation, make_policy
from commonpool.scheduler.ports import RunStatus
from commonpool.scheduler.services.arrays import submit_array
from commonpool.scheduler.services.jobs import (
    apply_cancellations,
    cancel_job,
    get_job,
    list_events,
    submit_job,
)
from commonpool.scheduler.store.models import Job
from commonpool.scheduler.store.snapshot_source import load_snapshot
from commonpool.scheduler.store.uow import Database
from tests.builders import job_spec, online_node
from tests.store.scripted_runner import ScriptedRunner

ACTIVE = ("PLACED", "STARTING", "RUNNING")


def pool(db: Database, runner: ScriptedRunner) -> SchedulerLoop:
    launcher = Launcher(db, runner, server_url="http://127.0.0.1:1", poll_interval_s=0)
    return SchedulerLoop(db, make_policy("fifo"), launcher=launcher)


def command(**overrides: Any) -> Any:
    return job_spec(kind="command", entrypoint=None, command=["true"], **overrides)


def states(db: Database, *job_ids: str) -> list[str]:
    with db.unit_of_work(write=False) as session:
        return [get_job(session, j).state for j in job_ids]


def test_array_of_50_with_limit_5_never_has_more_than_5_active_tasks(db: Database) -> None:
    with db.unit_of_work() as session:
        for i in range(4):
            online_node(session, name=f"n{i}", cpus=8)  # room for 32 tasks at once
        array_id = submit_array(session, command(array="0-49%5"), actor="t").id
    runner = ScriptedRunner()
    loop = pool(db, runner)
    rng = random.Random(3)
    peak, starts = 0, []
    for _ in range(200):
        report = loop.step()
        starts += report.placed
        with db.unit_of_work(write=False) as session:
            by_state = dict(
                session.execute(
                    select(Job.state, func.count())
                    .where(Job.array_id == array_id)
                    .group_by(Job.state)
                ).all()
            )
            active = [j for j, s in session.execute(
                select(Job.id, Job.state).where(Job.array_id == array_id)) if s in ACTIVE]
        assert len(active) <= 5, by_state  # the invariant, after every step
        peak = max(peak, len(active))
        if by_state == {"SUCCEEDED": 50}:
            break
        for job_id in active:  # some runs end before the next step, in any order
            if rng.random() < 0.4:
                runner.end(job_id)
    assert by_state == {"SUCCEEDED": 50}
    assert peak == 5  # the limit was reached, so the test was not trivially true
    with db.unit_of_work(write=False) as session:
        index = {j.id: j.array_index for j in session.scalars(
            select(Job).where(Job.array_id == array_id))}
    assert [index[j] for j in starts] == sorted(index[j] for j in starts)  # lowest first


def test_sweep_parameters_reach_each_launch_as_args_and_env(db: Database) -> None:
    with db.unit_of_work() as session:
        online_node(session, cpus=8)
        submit_array(
            session,
            command(args={"lr": 1.0, "seed": 0}, sweep={"lr": [0.1, 0.2], "opt": ["sgd", "adam"]}),
            actor="t",
        )
    runner = ScriptedRunner()
    pool(db, runner).step()
    launched = sorted(runner.launched.values(), key=lambda r: int(r.env["COMMONPOOL_ARRAY_INDEX"]))
    assert [(r.args["lr"], r.args["opt"], r.args["seed"]) for r in launched] == [
        (0.1, "sgd", 0), (0.1, "adam", 0), (0.2, "sgd", 0), (0.2, "adam", 0)
    ]
    for request in launched:
        assert request.env["COMMONPOOL_PARAM_LR"] == str(request.args["lr"])
        assert request.env["COMMONPOOL_PARAM_OPT"] == request.args["opt"]  # a string: as is
        assert request.kind == "command" and request.command == ("true",)


def test_afterok_starts_only_after_the_dependency_succeeded(db: Database) -> None:
    with db.unit_of_work() as session:
        online_node(session, cpus=8)
        first = submit_job(session, command(name="prep"), actor="t").id
        then = submit_job(session, command(after=[{"job": first}]), actor="t").id
    runner = ScriptedRunner()
    loop = pool(db, runner)
    for _ in range(3):
        assert then not in loop.step().placed
        with db.unit_of_work(write=False) as session:
            assert get_job(session, then).pending_reason == f"waiting for job {first} to succeed"
    runner.end(first)
    # The step records the success before it places: the dependant starts in the same step.
    assert loop.step().placed == (then,)
    assert states(db, first, then) == ["SUCCEEDED", "STARTING"]


def test_a_failed_dependency_cancels_its_dependants_transitively(db: Database) -> None:
    with db.unit_of_work() as session:
        online_node(session, cpus=8)
        first = submit_job(session, command(name="prep"), actor="t").id
        second = submit_job(session, command(after=[{"job": first}]), actor="t").id
        tasks = submit_array(session, command(array="0-2", after=[{"job": second}]), actor="t")
        cleanup = submit_job(session, command(after=[{"job": tasks.id, "type": "any"}]),
                             actor="t").id
    with db.unit_of_work(write=False) as session:
        task_ids = list(session.scalars(select(Job.id).where(Job.array_id == tasks.id)))
    runner = ScriptedRunner()
    loop = pool(db, runner)
    loop.step()
    runner.end(first, RunStatus.FAILED)
    # The step records the failure before it plans: the dependant is cancelled at once.
    assert loop.step().cancelled == (second,)
    assert states(db, first, second) == ["FAILED", "CANCELLED"]
    with db.unit_of_work(write=False) as session:
        job = get_job(session, second)
        assert job.exit_reason == f"dependency {first} ended FAILED (afterok)"
        assert list_events(session, second)[-1].actor == "scheduler"
    assert sorted(loop.step().cancelled) == sorted(task_ids)  # the next level, one step later
    assert set(states(db, *task_ids)) == {"CANCELLED"}
    # `any` is met by cancelled tasks: the cleanup job runs.
    assert loop.step().placed == (cleanup,)


def test_afterany_and_afterfail(db: Database) -> None:
    with db.unit_of_work() as session:
        online_node(session, cpus=8)
        ok, bad = (submit_job(session, command(name=n), actor="t").id for n in ("ok", "bad"))
        any_ok = submit_job(session, command(after=[{"job": ok, "type": "any"}]), actor="t").id
        any_bad = submit_job(session, command(after=[{"job": bad, "type": "any"}]), actor="t").id
        fail_ok = submit_job(session, command(after=[{"job": ok, "type": "fail"}]), actor="t").id
        fail_bad = submit_job(session, command(after=[{"job": bad, "type": "fail"}]),
                              actor="t").id
    runner = ScriptedRunner()
    loop = pool(db, runner)
    loop.step()
    with db.unit_of_work(write=False) as session:
        assert get_job(session, fail_bad).pending_reason == f"waiting for job {bad} to fail"
        assert get_job(session, any_ok).pending_reason == f"waiting for job {ok} to end"
    runner.end(ok)
    runner.end(bad, RunStatus.FAILED)
    report = loop.step()  # records both ends, then plans with them
    assert sorted(report.placed) == sorted([any_ok, any_bad, fail_bad])
    assert report.cancelled == (fail_ok,)
    with db.unit_of_work(write=False) as session:
        assert get_job(session, fail_ok).exit_reason == (
            f"dependency {ok} ended SUCCEEDED (afterfail)"
        )


def test_a_dependant_cancelled_by_its_user_meanwhile_is_skipped_not_an_error(
    db: Database,
) -> None:
    with db.unit_of_work() as session:
        job_id = submit_job(session, command(), actor="t").id
        cancel_job(session, job_id, actor="ada")
        assert apply_cancellations(session, [Cancellation(job_id, "dependency x ended")]) == []
        assert get_job(session, job_id).exit_reason == "cancelled by user"


def test_a_big_throttled_array_does_not_hide_later_jobs_from_the_policy(db: Database) -> None:
    with db.unit_of_work() as session:
        array_id = submit_array(session, command(array="0-99%3"), actor="t").id
        later = submit_job(session, command(name="later"), actor="t").id
    with db.unit_of_work(write=False) as session:
        snapshot = load_snapshot(session, now=2e9, queue_limit=10)
        reason = session.scalar(select(Job.pending_reason).where(Job.array_id == array_id))
    assert [j.array_index for j in snapshot.queued if j.array_id] == [0, 1, 2]
    assert later in {j.id for j in snapshot.queued}
    assert reason == "array limit: at most 3 at once"  # what the unloaded tasks show


def test_jobs_held_by_a_running_dependency_do_not_hide_later_jobs(db: Database) -> None:
    with db.unit_of_work() as session:
        online_node(session, cpus=1)
        first = submit_job(session, command(name="prep"), actor="t").id
        array_id = submit_array(
            session, command(array="0-49", after=[{"job": first}]), actor="t"
        ).id
        single = submit_job(session, command(after=[{"job": first, "type": "any"}]), actor="t").id
        later = submit_job(session, command(name="later"), actor="t").id
    runner = ScriptedRunner()
    loop = pool(db, runner)
    assert loop.step().placed == (first,)  # running: its dependants are not loaded
    with db.unit_of_work(write=False) as session:
        snapshot = load_snapshot(session, now=2e9, queue_limit=10)
        reasons = set(session.scalars(select(Job.pending_reason).where(Job.array_id == array_id)))
        assert get_job(session, single).pending_reason == f"waiting for job {first} to end"
    assert [j.id for j in snapshot.queued] == [later]
    assert reasons == {f"waiting for job {first} to succeed"}  # written at submit
    runner.end(first)
    placed = set(loop.step().placed)
    with db.unit_of_work(write=False) as session:
        loaded = {j.id for j in load_snapshot(session, now=2e9, queue_limit=100).queued}
        tasks = set(session.scalars(select(Job.id).where(Job.array_id == array_id)))
    assert placed and tasks | {single} == (placed | loaded) - {later}  # dependency ended
