"""The local runner's crash safety, at the windows a SIGKILL of the scheduler rarely hits.

Each `LocalRunsRunner` instance stands for one scheduler process: what one
started, another (started after a crash) must adopt, poll and stop, and no
number of launches of one ref may run it twice.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from commonpool.scheduler.launcher import Launcher
from commonpool.scheduler.loop import SchedulerLoop
from commonpool.scheduler.policy import make_policy
from commonpool.scheduler.ports import LaunchRequest, RunStatus, launch_each, run_ref
from commonpool.scheduler.services.jobs import cancel_job, get_job, submit_job
from commonpool.scheduler.store.uow import Database
from commonpool.workers.runner import local_runs
from commonpool.workers.runner.local_runs import LocalRunsRunner, sleep_command
from tests.builders import job_spec, online_node


def _request(job: str = "job_x", attempt: int = 1, **args: float) -> LaunchRequest:
    return LaunchRequest(job, attempt, "pkg.mod:train", {"duration_s": 0.05, **args}, ())


def _journal(runs: Path, kind: str) -> list[str]:
    return [line.split()[1] for line in (runs / "journal").read_text().splitlines()
            if line.startswith(kind)]


def _wait_ended(runner: LocalRunsRunner, ref: str) -> RunStatus:
    deadline = time.monotonic() + 10
    while not (status := runner.poll(ref).status).ended:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return status


def test_concurrent_launches_of_one_attempt_run_it_once(tmp_path: Path) -> None:
    runners = [LocalRunsRunner(tmp_path, sleep_command) for _ in range(8)]
    barrier = threading.Barrier(len(runners))
    refs: list[str] = []

    def launch(runner: LocalRunsRunner) -> None:
        barrier.wait()
        refs.append(runner.launch(_request()))

    threads = [threading.Thread(target=launch, args=(r,)) for r in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert refs == ["job_x-a1"] * 8
    assert _wait_ended(runners[0], "job_x-a1") is RunStatus.SUCCEEDED
    assert _journal(tmp_path, "run") == ["job_x-a1"]


def test_wrapper_orphaned_by_a_crash_before_its_claim_cannot_run_a_second_time(
    tmp_path: Path,
) -> None:
    """A scheduler killed right after spawning leaves a wrapper that claims late."""
    ref = LocalRunsRunner(tmp_path, sleep_command).launch(_request())
    late = subprocess.run(["/bin/sh", "-c", local_runs._WRAPPER, "late", str(tmp_path / ref),
                           "touch", str(tmp_path / "ran-twice")],
                          capture_output=True, check=True)
    assert late.stdout == b"taken\n"
    assert not (tmp_path / "ran-twice").exists()
    assert _journal(tmp_path, "taken") == [ref]


def test_a_new_scheduler_adopts_polls_and_stops_runs_of_the_old_one(tmp_path: Path) -> None:
    old = LocalRunsRunner(tmp_path, sleep_command)
    short = old.launch(_request("job_s"))
    long = old.launch(_request("job_l", duration_s=30))
    new = LocalRunsRunner(tmp_path, sleep_command)
    assert new.launch(_request("job_l", duration_s=30)) == long  # adopted, not restarted
    assert _wait_ended(new, short) is RunStatus.SUCCEEDED
    assert new.poll(long).status is RunStatus.RUNNING
    new.stop(long)
    assert new.poll(long).status is RunStatus.STOPPED
    assert _journal(tmp_path, "run") == [short, long]


def test_stopping_a_never_claimed_attempt_keeps_it_from_ever_running(tmp_path: Path) -> None:
    runner = LocalRunsRunner(tmp_path, sleep_command)
    runner.stop("job_c-a1")
    assert runner.launch(_request("job_c")) == "job_c-a1"
    assert runner.poll("job_c-a1").status is RunStatus.STOPPED
    assert not (tmp_path / "journal").exists()


def test_failed_run_reports_its_exit_code_and_output(tmp_path: Path) -> None:
    runner = LocalRunsRunner(tmp_path, sleep_command)
    ref = runner.launch(_request(exit_code=3))
    assert _wait_ended(runner, ref) is RunStatus.FAILED
    assert "exited with code 3" in runner.poll(ref).message
    assert runner.poll("job_unknown-a1").status is RunStatus.MISSING


def test_python_entrypoint_runs_with_its_args(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "tinyjob.py").write_text(
        "def train(config):\n    print('hello', config['n'])\n")
    runner = LocalRunsRunner(tmp_path / "runs")
    request = LaunchRequest("job_p", 1, "tinyjob:train", {"n": 7}, (),
                            working_dir=str(tmp_path / "work"))
    ref = runner.launch(request)
    assert _wait_ended(runner, ref) is RunStatus.SUCCEEDED
    assert runner.new_log_lines(ref) == ["hello 7"]
    assert runner.new_log_lines(ref) == []


def test_a_reused_pid_is_neither_taken_for_the_run_nor_killed(tmp_path: Path) -> None:
    """After a reboot the pid in a start record may belong to anyone (here: this test)."""
    (tmp_path / "job_r-a1.start").write_text(f"{os.getpid()}\n")
    runner = LocalRunsRunner(tmp_path, sleep_command)
    report = runner.poll("job_r-a1")
    assert report.status is RunStatus.FAILED and "vanished" in report.message
    runner.stop("job_r-a1")  # must not kill this process's group
    assert runner.poll("job_r-a1").status is RunStatus.STOPPED


class _Crash(BaseException):
    """The scheduler dies (SIGKILL) right after the runner started the run."""


class _CrashAfterLaunch:
    def __init__(self, inner: LocalRunsRunner) -> None:
        self.inner = inner

    def launch(self, request: LaunchRequest) -> str:
        self.inner.launch(request)
        raise _Crash

    def launch_many(self, requests: list[LaunchRequest]) -> list[str | Exception]:
        return launch_each(self, requests)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_run_started_by_a_crashed_scheduler_is_stopped_when_its_job_was_cancelled(
    db: Database, tmp_path: Path
) -> None:
    """The launcher records the run's ref before it launches: no run is ever orphaned."""
    runner = LocalRunsRunner(tmp_path / "runs", sleep_command)
    with db.unit_of_work() as session:
        online_node(session, cpus=2)
        job_id = submit_job(session, job_spec(args={"duration_s": 60}), actor="t").id
    SchedulerLoop(db, make_policy("fifo")).step()
    with pytest.raises(_Crash):
        Launcher(db, _CrashAfterLaunch(runner), server_url="http://x").step()  # type: ignore[arg-type]
    ref = run_ref(job_id, 1)
    with db.unit_of_work() as session:
        assert get_job(session, job_id).runner_ref == ref  # recorded before the launch
        cancel_job(session, job_id, actor="t")
    report = Launcher(db, runner, server_url="http://x").step()  # the next scheduler
    assert report.stopped == [job_id]
    assert runner.poll(ref).status is RunStatus.STOPPED
