"""The scheduler's hot path writes a step's placements, launches and ends as batches (a few
statements, not a few per job), and falls back to one job at a time when any job of a batch
moved meanwhile: the others still move, the moved one keeps its state, every event is true.
On a real database (SQLite and PostgreSQL: executemany row counts differ by driver)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from commonpool.scheduler.domain.states import JobState
from commonpool.scheduler.launcher import Launcher
from commonpool.scheduler.policy import Placement, Resources, WorkerSlot
from commonpool.scheduler.ports import LaunchRequest, RunReport, run_ref
from commonpool.scheduler.services.jobs import cancel_job, get_job, list_events, submit_job
from commonpool.scheduler.store.models import Allocation, JobEvent
from commonpool.scheduler.store.placements import apply_placements
from commonpool.scheduler.store.transitions import JobMove, transition_each
from commonpool.scheduler.store.uow import Database
from tests.builders import job_spec, online_node
from tests.store.scripted_runner import ScriptedRunner

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _queued(db: Database, n: int, cpus: float = 3.0) -> tuple[str, list[str]]:
    with db.unit_of_work() as session:
        node_id = online_node(session, cpus=cpus)[0].id
        spec = job_spec(kind="command", entrypoint=None, command=["true"])
        return node_id, [submit_job(session, spec, actor="t").id for _ in range(n)]


def _states(db: Database, job_ids: list[str]) -> list[str]:
    with db.unit_of_work(write=False) as session:
        return [get_job(session, job_id).state for job_id in job_ids]


def _events_to(db: Database, state: str) -> int:
    with db.unit_of_work(write=False) as session:
        return session.scalar(
            select(func.count()).select_from(JobEvent).where(JobEvent.to_state == state)
        )


def test_transition_each_moves_every_job_with_its_own_values_and_event(db: Database) -> None:
    _, jobs = _queued(db, 3)
    moves = [
        JobMove(job_id, f"reason {i}", {"placed_at": T0 + timedelta(minutes=i)})
        for i, job_id in enumerate(jobs)
    ]
    with db.unit_of_work() as session:
        assert transition_each(session, moves, JobState.QUEUED, JobState.PLACED, actor="t")
    with db.unit_of_work(write=False) as session:
        for i, job_id in enumerate(jobs):
            job = get_job(session, job_id)
            assert (job.state, job.placed_at) == ("PLACED", T0 + timedelta(minutes=i))
            last = list_events(session, job_id)[-1]
            assert (last.from_state, last.to_state) == ("QUEUED", "PLACED")
            assert last.reason == f"reason {i}"


def test_transition_each_writes_nothing_when_one_job_moved_meanwhile(db: Database) -> None:
    _, jobs = _queued(db, 3)
    with db.unit_of_work() as session:
        cancel_job(session, jobs[1], actor="t")
    with db.unit_of_work() as session:
        moves = [JobMove(job_id) for job_id in jobs]
        assert not transition_each(session, moves, JobState.QUEUED, JobState.PLACED, actor="t")
    assert _states(db, jobs) == ["QUEUED", "CANCELLED", "QUEUED"]
    assert _events_to(db, "PLACED") == 0


def test_transition_each_refuses_a_move_the_state_table_forbids(db: Database) -> None:
    _, jobs = _queued(db, 1)
    with db.unit_of_work() as session, pytest.raises(ValueError, match="QUEUED to RUNNING"):
        transition_each(session, [JobMove(jobs[0])], JobState.QUEUED, JobState.RUNNING, actor="t")


def test_a_batch_of_placements_places_the_others_when_one_job_was_cancelled(
    db: Database,
) -> None:
    node_id, jobs = _queued(db, 3)
    with db.unit_of_work() as session:
        cancel_job(session, jobs[1], actor="t")
    slot = (WorkerSlot(node_id, 0, Resources(1.0, 0, 0)),)
    with db.unit_of_work() as session:
        result = apply_placements(session, tuple(Placement(job_id, slot) for job_id in jobs))
    assert result.placed == (jobs[0], jobs[2])
    assert list(result.rejected) == [jobs[1]]
    assert _states(db, jobs) == ["PLACED", "CANCELLED", "PLACED"]
    assert _events_to(db, "PLACED") == 2
    with db.unit_of_work(write=False) as session:
        held = session.scalars(select(Allocation.job_id).order_by(Allocation.job_id)).all()
    assert held == sorted([jobs[0], jobs[2]])


class CancellingRunner(ScriptedRunner):
    """Launches every run; launching the first also cancels the second job's (a user's
    cancel landing between the launcher's read of PLACED jobs and its STARTING write)."""

    def __init__(self, db: Database, cancel: str) -> None:
        super().__init__()
        self.db = db
        self.cancel = cancel

    def launch(self, request: LaunchRequest) -> str:
        if self.cancel and request.job_id != self.cancel:
            with self.db.unit_of_work() as session:
                cancel_job(session, self.cancel, actor="user")
            self.cancel = ""
        return super().launch(request)


def _launcher(db: Database, runner: ScriptedRunner) -> Launcher:
    return Launcher(db, runner, server_url="http://127.0.0.1:1", poll_interval_s=0)


def test_a_launch_batch_with_a_job_cancelled_meanwhile_starts_the_others(db: Database) -> None:
    node_id, jobs = _queued(db, 3)
    slot = (WorkerSlot(node_id, 0, Resources(1.0, 0, 0)),)
    with db.unit_of_work() as session:
        apply_placements(session, tuple(Placement(job_id, slot) for job_id in jobs))
    runner = CancellingRunner(db, cancel=jobs[1])
    report = _launcher(db, runner).launch()
    assert sorted(report.launched) == sorted([jobs[0], jobs[2]])
    assert _states(db, jobs) == ["STARTING", "CANCELLED", "STARTING"]
    with db.unit_of_work(write=False) as session:
        # the cancelled job keeps its run's ref, so the next step stops that run
        assert get_job(session, jobs[1]).runner_ref is not None
    assert _events_to(db, "STARTING") == 2


class CancelOnPollRunner(ScriptedRunner):
    """Every run succeeds; polling `cancel`'s run first cancels that job (a user's cancel
    landing between the launcher's poll and its write of the ends)."""

    def __init__(self, db: Database) -> None:
        super().__init__()
        self.db = db
        self.cancel = ""

    def poll(self, ref: str) -> RunReport:
        if self.cancel and ref == run_ref(self.cancel, 1):
            with self.db.unit_of_work() as session:
                cancel_job(session, self.cancel, actor="user")
            self.cancel = ""
        return super().poll(ref)


def test_ends_of_a_batch_skip_a_job_cancelled_meanwhile(db: Database) -> None:
    node_id, jobs = _queued(db, 3)
    slot = (WorkerSlot(node_id, 0, Resources(1.0, 0, 0)),)
    with db.unit_of_work() as session:
        apply_placements(session, tuple(Placement(job_id, slot) for job_id in jobs))
    runner = CancelOnPollRunner(db)
    launcher = _launcher(db, runner)
    launcher.launch()
    launcher.settle()  # the three commands are seen running
    assert _states(db, jobs) == ["RUNNING"] * 3
    for job_id in jobs:
        runner.end(job_id)
    runner.cancel = jobs[1]
    report = launcher.settle()
    assert sorted(report.ended) == sorted([jobs[0], jobs[2]])
    assert _states(db, jobs) == ["SUCCEEDED", "CANCELLED", "SUCCEEDED"]
    assert _events_to(db, "SUCCEEDED") == 2
    with db.unit_of_work(write=False) as session:
        active = session.scalar(
            select(func.count()).select_from(Allocation).where(Allocation.released_at.is_(None))
        )
    assert active == 0  # the cancel released its own, the ends theirs
