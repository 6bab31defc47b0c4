"""A launch the runner cannot confirm (no answer in time) is neither failed nor requeued at
once: the job stays PLACED and the same ref is launched again, which adopts a run that did
start. Only a run of doubts in a row requeues it. Through the live loop and launcher over a
scripted runner; the real executor's timeout is exercised in
`tests/integration/shared_pool/test_command_jobs.py`."""

from __future__ import annotations

from commonpool.scheduler.launcher import Launcher
from commonpool.scheduler.loop import SchedulerLoop
from commonpool.scheduler.policy import make_policy
from commonpool.scheduler.ports import LaunchInDoubt, LaunchRequest
from commonpool.scheduler.services.jobs import get_job, list_events, submit_job
from commonpool.scheduler.store.uow import Database
from tests.builders import job_spec, online_node
from tests.store.scripted_runner import ScriptedRunner


class DoubtfulRunner(ScriptedRunner):
    """Starts every run, but answers the first `doubts` launches too late."""

    def __init__(self, doubts: int) -> None:
        super().__init__()
        self.doubts = doubts
        self.calls = 0

    def launch(self, request: LaunchRequest) -> str:
        self.calls += 1
        ref = super().launch(request)  # idempotent by ref: a second call adopts the run
        if self.calls <= self.doubts:
            raise LaunchInDoubt("no answer from the executor of node n in 60 s")
        return ref


def _loop(db: Database, runner: ScriptedRunner) -> SchedulerLoop:
    launcher = Launcher(db, runner, server_url="http://127.0.0.1:1", poll_interval_s=0,
                        max_launch_retries=3)
    return SchedulerLoop(db, make_policy("fifo"), launcher=launcher)


def _submit(db: Database) -> str:
    with db.unit_of_work() as session:
        online_node(session, cpus=2)
        spec = job_spec(kind="command", entrypoint=None, command=["true"])
        return submit_job(session, spec, actor="t").id


def test_a_launch_in_doubt_stays_placed_and_the_next_launch_adopts_the_run(
    db: Database,
) -> None:
    job_id = _submit(db)
    runner = DoubtfulRunner(doubts=2)
    loop = _loop(db, runner)
    for _ in range(2):
        report = loop.step()
        assert report.launch is not None and job_id in report.launch.in_doubt
        with db.unit_of_work(write=False) as session:
            job = get_job(session, job_id)
            assert (job.state, job.attempt) == ("PLACED", 1)
    assert loop.step().launch.launched == [job_id]  # type: ignore[union-attr]
    assert len(runner.launched) == 1 and runner.calls == 3  # one run, adopted twice
    runner.end(job_id)
    loop.step()
    with db.unit_of_work(write=False) as session:
        job = get_job(session, job_id)
        assert (job.state, job.attempt) == ("SUCCEEDED", 1)


def test_doubts_in_a_row_requeue_the_job_as_the_pools_fault(db: Database) -> None:
    job_id = _submit(db)
    loop = _loop(db, DoubtfulRunner(doubts=100))
    for _ in range(3):
        loop.step()
    with db.unit_of_work(write=False) as session:
        job = get_job(session, job_id)
        assert job.attempt == 2 and job.state in ("QUEUED", "PLACED")
        requeued = [e.reason for e in list_events(session, job_id) if e.to_state == "PREEMPTED"]
    assert len(requeued) == 1 and "3 times in a row" in (requeued[0] or ""), requeued
