"""A job placed on a preempted job's slots starts only after the victim's run was told to
stop, in the same step. A node's executor hands out its GPUs itself: a start beside the
victim's still-running process found no free GPU and the job failed."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from commonpool.scheduler.launcher import Launcher
from commonpool.scheduler.loop import SchedulerLoop
from commonpool.scheduler.policy import make_policy
from commonpool.scheduler.ports import LaunchRequest
from commonpool.scheduler.services.jobs import get_job, submit_job
from commonpool.scheduler.store.models import Allocation, utcnow
from commonpool.scheduler.store.uow import Database
from tests.builders import job_spec, online_node
from tests.store.scripted_runner import ScriptedRunner


class OneGpuNode(ScriptedRunner):
    """Records launches and stops in order; a launch while another run holds the node's
    one GPU is refused, as the executor refuses it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []
        self.holder: str | None = None

    def launch(self, request: LaunchRequest) -> str:
        ref = super().launch(request)
        if self.holder not in (None, ref):
            raise RuntimeError(f"node has 0 free GPUs (held by {self.holder})")
        self.holder = ref
        self.calls.append(("launch", request.job_id))
        return ref

    def stop(self, ref: str) -> None:
        super().stop(ref)
        if self.holder == ref:
            self.holder = None
        self.calls.append(("stop", ref.split("-")[0]))


def test_a_victims_run_stops_before_the_preemptors_run_starts(db: Database) -> None:
    with db.unit_of_work() as session:
        online_node(session, cpus=4, gpus=1, gpu_type="v100")
        gpu = {"cpus": 1, "gpus": 1}
        victim = submit_job(session, job_spec(resources=gpu), actor="t").id
    runner = OneGpuNode()
    launcher = Launcher(db, runner, server_url="http://127.0.0.1:1", poll_interval_s=0)
    loop = SchedulerLoop(db, make_policy("las"), launcher=launcher)
    assert loop.step().placed == (victim,)
    with db.unit_of_work() as session:  # it has run 2 GPU-hours: past LAS's first queue
        session.execute(
            update(Allocation)
            .where(Allocation.job_id == victim)
            .values(created_at=utcnow() - timedelta(hours=2))
        )
        newcomer = submit_job(session, job_spec(resources=gpu), actor="t").id
    report = loop.step()
    assert report.preempted == (victim,) and report.placed == (newcomer,)
    assert runner.calls[-2:] == [("stop", victim), ("launch", newcomer)]
    with db.unit_of_work(write=False) as session:
        assert get_job(session, newcomer).state == "STARTING"
