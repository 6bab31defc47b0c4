"""Chained placements (`policy.chain`): queued command jobs wait on a node behind young
command runs, in their slots, and start at those runs' ends without a scheduling step in
between; the registry never counts a slot twice, and a cancel or an end anywhere in a
line moves the rest up. On a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from itertools import pairwise

from sqlalchemy import func, select

from commonpool.scheduler.launcher import Launcher
from commonpool.scheduler.loop import SchedulerLoop
from commonpool.scheduler.policy import Placement, Resources, WorkerSlot, make_policy
from commonpool.scheduler.ports import LaunchRequest, RunReport, RunStatus, run_ref
from commonpool.scheduler.services.arrays import submit_array
from commonpool.scheduler.services.jobs import cancel_job, get_job, list_events, submit_job
from commonpool.scheduler.store.models import HELD, Allocation
from commonpool.scheduler.store.placements import apply_placements
from commonpool.scheduler.store.uow import Database
from tests.builders import job_spec, online_node
from tests.store.scripted_runner import ScriptedRunner


class LineRunner(ScriptedRunner):
    """A node executor's queue in miniature: a chained run is PENDING until the run ahead
    of it has ended (or it was stopped); a running one reports when it was launched."""

    def __init__(self, *, chains: bool) -> None:
        super().__init__(chains=chains)
        self.launched_at: dict[str, float] = {}

    def launch(self, request: LaunchRequest) -> str:
        ref = super().launch(request)
        self.launched_at.setdefault(ref, time.time())
        return ref

    def poll(self, ref: str) -> RunReport:
        request = self.launched.get(ref)
        ahead = request.after if request is not None and ref not in self.outcomes else None
        if ahead is not None and not self.poll(ahead).status.ended:
            return RunReport(RunStatus.PENDING)
        report = super().poll(ref)
        if report.status is RunStatus.RUNNING:
            return RunReport(RunStatus.RUNNING, started_at=self.launched_at.get(ref))
        return report


def _pool(db: Database, n: int, *, cpus: float = 2, **job: object) -> tuple[str, list[str]]:
    with db.unit_of_work() as session:
        node = online_node(session, cpus=cpus)[0].id
        spec = job_spec(kind="command", entrypoint=None, command=["true"], **job)
        return node, [submit_job(session, spec, actor="t").id for _ in range(n)]


def _loop(db: Database, runner: ScriptedRunner, *, depth: int = 2, window_s: float = 60):
    launcher = Launcher(db, runner, server_url="http://127.0.0.1:1", poll_interval_s=0)
    return SchedulerLoop(
        db, make_policy("fifo"), launcher=launcher, chain_window_s=window_s, chain_depth=depth
    )


def _held_cpus(db: Database, node: str) -> float:
    with db.unit_of_work(write=False) as session:
        return session.scalar(
            select(func.coalesce(func.sum(Allocation.cpus), 0)).where(
                Allocation.node_id == node, HELD
            )
        )


def _states(db: Database, jobs: list[str]) -> list[str]:
    with db.unit_of_work(write=False) as session:
        return [get_job(session, job).state for job in jobs]


def test_queued_commands_wait_behind_young_runs_in_their_slots(db: Database) -> None:
    node, jobs = _pool(db, 8, resources={"cpus": 1})
    runner = LineRunner(chains=True)
    loop = _loop(db, runner, depth=2)
    report = loop.step()
    assert set(report.placed) == set(jobs[:6])  # two runs, two lines of two behind them
    assert _held_cpus(db, node) == 2  # the waiting ones hold nothing of their own
    assert _states(db, jobs) == ["STARTING"] * 6 + ["QUEUED"] * 2
    afters = {r.job_id: r.after for r in runner.launched.values()}
    heads = [job for job in jobs[:6] if afters[job] is None]
    assert len(heads) == 2
    lines = []
    for head in heads:
        line, ref = [head], run_ref(head, 1)
        while (nxt := next((j for j, a in afters.items() if a == ref), None)) is not None:
            line.append(nxt)
            ref = run_ref(nxt, 1)
        lines.append(line)
    assert sorted(len(line) for line in lines) == [3, 3]
    with db.unit_of_work(write=False) as session:
        reasons = [e.reason for e in list_events(session, lines[0][1]) if e.to_state == "PLACED"]
    assert reasons == [f"placed on {node} behind job {lines[0][0]}"]

    runner.end(lines[0][0])  # the first run ends: the next of its line holds the slot
    report = loop.step()
    assert report.launch is not None and report.launch.ended == {lines[0][0]: "SUCCEEDED"}
    assert _held_cpus(db, node) == 2
    assert _states(db, lines[0][1:]) == ["RUNNING", "STARTING"]  # started at the end ahead
    assert len(report.placed) == 1  # the line is two deep again
    assert runner.launched[run_ref(report.placed[0], 1)].after == run_ref(lines[0][2], 1)


def _line(runner: ScriptedRunner, head: str) -> list[str]:
    """The jobs launched behind `head`'s run, in order, `head` first."""
    line, ref = [head], run_ref(head, 1)
    while True:
        nxt = next((r.job_id for r in runner.launched.values() if r.after == ref), None)
        if nxt is None:
            return line
        line.append(nxt)
        ref = run_ref(nxt, 1)


def test_a_cancelled_job_in_a_line_hands_its_place_to_the_one_behind(db: Database) -> None:
    node, jobs = _pool(db, 3, cpus=1, resources={"cpus": 1})
    runner = LineRunner(chains=True)
    loop = _loop(db, runner, depth=2)
    loop.step()
    head, middle, last = _line(runner, jobs[0])
    with db.unit_of_work() as session:
        cancel_job(session, middle, actor="t")
        last_allocation = session.scalars(
            select(Allocation).where(Allocation.job_id == last)
        ).one()
        head_allocation = session.scalars(
            select(Allocation).where(Allocation.job_id == head)
        ).one()
        assert (last_allocation.after_id, last_allocation.standby) == (head_allocation.id, True)
    loop.step()
    assert runner.outcomes[run_ref(middle, 1)].status is RunStatus.STOPPED  # told to the node
    assert _held_cpus(db, node) == 1
    runner.end(head)
    loop.step()
    assert _states(db, [head, middle, last]) == ["SUCCEEDED", "CANCELLED", "RUNNING"]
    assert _held_cpus(db, node) == 1


def test_without_a_queue_on_the_node_a_chained_job_starts_once_the_run_ahead_ended(
    db: Database,
) -> None:
    _, jobs = _pool(db, 2, cpus=1, resources={"cpus": 1})
    runner = LineRunner(chains=False)
    loop = _loop(db, runner, depth=1)
    loop.step()
    assert _states(db, jobs) == ["STARTING", "PLACED"]  # reserved, not started
    assert list(runner.launched) == [run_ref(jobs[0], 1)]
    runner.end(jobs[0])
    loop.step()
    assert _states(db, jobs) == ["SUCCEEDED", "STARTING"]
    assert runner.launched[run_ref(jobs[1], 1)].after is None  # launched as any other


def test_no_job_waits_behind_a_run_older_than_the_window(db: Database) -> None:
    _, (first,) = _pool(db, 1, cpus=1, resources={"cpus": 1})
    loop = _loop(db, LineRunner(chains=True), depth=3, window_s=1e-6)
    loop.step()
    with db.unit_of_work() as session:
        spec = job_spec(kind="command", entrypoint=None, command=["true"], resources={"cpus": 1})
        second = submit_job(session, spec, actor="t").id
    loop.step()
    assert _states(db, [first, second]) == ["RUNNING", "QUEUED"]


def test_an_arrays_limit_holds_with_its_tasks_waiting_in_lines(db: Database) -> None:
    with db.unit_of_work() as session:
        node = online_node(session, cpus=4)[0].id
        spec = job_spec(kind="command", entrypoint=None, command=["true"], array="0-9%2",
                        resources={"cpus": 1})  # fmt: skip
        submit_array(session, spec, actor="t")
    runner = LineRunner(chains=True)
    loop = _loop(db, runner, depth=3)
    for _ in range(12):
        loop.step()
        assert _held_cpus(db, node) <= 2  # never more than 2 tasks run (or may start) at once
        running = [
            request.job_id
            for request in runner.launched.values()
            if runner.poll(run_ref(request.job_id, 1)).status is RunStatus.RUNNING
        ]
        if running:
            runner.end(running[0])  # one end a step: the others stay young heads of lines
    assert any(request.after for request in runner.launched.values())  # tasks did wait


def test_jobs_behind_a_run_that_outlived_the_window_go_back_to_the_queue(db: Database) -> None:
    node, (first, second) = _pool(db, 2, cpus=1, resources={"cpus": 1})
    runner = LineRunner(chains=True)
    loop = _loop(db, runner, depth=1, window_s=0.2)
    loop.step()
    assert runner.launched[run_ref(second, 1)].after == run_ref(first, 1)
    time.sleep(0.3)  # the first run is no longer young: the bet is lost
    report = loop.step()
    assert report.preempted == (second,)
    assert runner.outcomes[run_ref(second, 1)].status is RunStatus.STOPPED  # taken back
    with db.unit_of_work(write=False) as session:
        job = get_job(session, second)
        assert (job.state, job.attempt, job.policy_preemptions) == ("QUEUED", 2, 1)
        assert job.eligible_at is None  # no backoff: it did nothing wrong
    assert _held_cpus(db, node) == 1
    runner.end(first)
    loop.step()
    assert _states(db, [first, second]) == ["SUCCEEDED", "STARTING"]
    assert runner.launched[run_ref(second, 2)].after is None


def _slot(node: str, cpus: float = 1) -> tuple[WorkerSlot, ...]:
    return (WorkerSlot(node, 0, Resources(cpus, 0, 0)),)


def _allocations(db: Database, jobs: list[str]) -> dict[str, tuple[int, int | None, bool]]:
    """job -> (allocation id, after_id, standby)."""
    with db.unit_of_work(write=False) as session:
        rows = session.execute(
            select(Allocation.job_id, Allocation.id, Allocation.after_id, Allocation.standby)
            .where(Allocation.job_id.in_(jobs))
        ).all()
    return {job: (id_, after, standby) for job, id_, after, standby in rows}


def test_a_line_placed_in_one_batch_is_linked_in_order_behind_its_head(db: Database) -> None:
    node, (head, *line) = _pool(db, 4)
    placements = (
        Placement(head, _slot(node)),  # on a free slot, this same batch
        *(Placement(job, _slot(node), after=ahead) for ahead, job in pairwise([head, *line])),
    )
    with db.unit_of_work() as session:
        result = apply_placements(session, placements[::-1])  # order of the plan is no help
    assert set(result.placed) == {head, *line} and not result.rejected
    rows = _allocations(db, [head, *line])
    assert rows[head][1:] == (None, False)
    for ahead, job in pairwise([head, *line]):
        assert rows[job][1:] == (rows[ahead][0], True), (job, rows)
    assert _held_cpus(db, node) == 1


def test_chained_placements_that_cannot_be_lines_are_refused_and_write_nothing(
    db: Database,
) -> None:
    node, (head, a, b, c, d) = _pool(db, 5)
    other, _ = _pool(db, 0)
    with db.unit_of_work() as session:
        apply_placements(session, (Placement(head, _slot(node)),))
    circle = (Placement(a, _slot(node), after=b), Placement(b, _slot(node), after=a))
    twice = (Placement(c, _slot(node), after=head), Placement(d, _slot(node), after=head))
    elsewhere = (Placement(d, _slot(other), after=head),)
    too_big = (Placement(d, _slot(node, cpus=2), after=head),)
    for placements, why in [(circle, "no longer runs alone"), (twice, "no longer runs alone"),
                            (elsewhere, "does not fit"), (too_big, "does not fit")]:
        with db.unit_of_work() as session:
            result = apply_placements(session, placements)
        if placements is twice:  # one by one: the first takes the place, the second not
            assert result.placed == (c,) and set(result.rejected) == {d}, result
            with db.unit_of_work() as session:
                cancel_job(session, c, actor="t")
            continue
        assert not result.placed and all(why in r for r in result.rejected.values()), result
        assert set(_allocations(db, [a, b, c, d])) <= {c}, why
    assert _states(db, [a, b, d]) == ["QUEUED"] * 3
