"""The smaller real-Ray variant of the scheduler chaos test.

A real pool (Ray head + 2 agents, each its own Ray worker node) is scheduled
by a separate `commonpool scheduler` process that is SIGKILLed at random
moments while short jobs flow:
- Ray Train jobs, checked from Ray's own job records: every job ends
  SUCCEEDED, each attempt was submitted once, two attempts of a job never ran
  at the same time, and no Ray run is left behind;
- an array of trivial commands, which the nodes' executors run in chains
  (`policy.chain`), checked from what each run wrote: every task SUCCEEDED, no
  attempt ran twice, the last attempt ran to its end, two runs of a task never
  overlapped and never more ran at once than the pool has CPUs.
"""

from __future__ import annotations

import io
import itertools
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path
from typing import TypeVar

import pytest

from commonpool.api.cli.server import SCHEDULER_READY
from commonpool.api.local_pool import LocalPool
from commonpool.scheduler.domain.states import JobState
from commonpool.scheduler.spec import JobSpec

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(600)]
T = TypeVar("T")

JOBS = 4
KILLS = 3
SEED = 7

QUICK = '''
import time
from commonpool.workers import job


def quick(config):
    for step in range(1, config["steps"] + 1):
        time.sleep(config["step_s"])
        job.report({"loss": 1.0 / step}, step=step)
'''


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPool]:
    with LocalPool(tmp_path_factory.mktemp("pool"), agents=2, log=io.StringIO(),
                   run_scheduler=False) as running:
        yield running


class Scheduler:
    def __init__(self, env: dict[str, str], log: Path, interval_s: float = 0.5) -> None:
        self.env, self.log, self.interval_s = env, log, interval_s
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "commonpool", "scheduler", "--interval",
                 str(self.interval_s)],
                env=self.env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)

    def wait_running(self, timeout_s: float = 60) -> None:
        """Until it has printed that it runs (its wake listener is in place by then)."""
        deadline = time.monotonic() + timeout_s
        while SCHEDULER_READY not in self.log.read_text():
            assert self.process is not None and self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.1)

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


def _kill_until(
    scheduler: Scheduler,
    finished: Callable[[], tuple[bool, T]],
    rng: random.Random,
    *,
    kills: int,
    pause_s: tuple[float, float],
    deadline_s: float = 420,
) -> T:
    """Start the scheduler, SIGKILL and restart it `kills` times, `pause_s` apart (seeded
    random), until `finished()` says so; kill it then. What `finished` saw last."""
    scheduler.start()
    deadline, killed = time.monotonic() + deadline_s, 0
    while True:
        done, seen = finished()
        if done:
            break
        assert time.monotonic() < deadline, seen
        if killed < kills:
            time.sleep(rng.uniform(*pause_s))
            scheduler.kill()
            killed += 1
            scheduler.start()
        else:
            time.sleep(0.5)
    scheduler.kill()
    return seen


def test_sigkilled_scheduler_with_real_ray_loses_and_doubles_nothing(
    pool: LocalPool, tmp_path: Path
) -> None:
    (tmp_path / "quickjobs.py").write_text(QUICK)
    rng = random.Random(SEED)
    env = {**os.environ, **pool.scheduler_env(), "COMMONPOOL_CONFIG": str(tmp_path / "x.toml")}
    scheduler = Scheduler(env, tmp_path / "scheduler.log")
    with pool.client() as client:
        ids = [client.submit_job(JobSpec(
            name=f"quick-{i}", entrypoint="quickjobs:quick", working_dir=str(tmp_path),
            args={"steps": 4, "step_s": 0.5}, max_attempts=5)).id for i in range(JOBS)]

        def finished() -> tuple[bool, dict[str, str]]:
            states = {i: client.get_job(i).state for i in ids}
            return all(JobState(s).terminal for s in states.values()), states

        states = _kill_until(scheduler, finished, rng, kills=KILLS, pause_s=(2.0, 8.0))
        assert set(states.values()) == {"SUCCEEDED"}, {
            i: client.get_job(i).exit_reason for i, s in states.items() if s != "SUCCEEDED"}
        attempts = {i: client.get_job(i).attempt for i in ids}

    runs = _ray_runs(pool)
    by_job: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        by_job[run["job"]].append(run)
    for job_id in ids:
        records = sorted(by_job[job_id], key=lambda r: r["start"])
        assert [r["attempt"] for r in records] == sorted({r["attempt"] for r in records})
        assert max(r["attempt"] for r in records) == attempts[job_id]
        for earlier, later in pairwise(records):
            assert earlier["end"] <= later["start"], (job_id, records)  # never two at once
    assert all(r["status"] in ("SUCCEEDED", "STOPPED", "FAILED") for r in runs)  # none left
    print(f"real-Ray chaos: {KILLS} SIGKILLs, {JOBS} jobs SUCCEEDED, "
          f"{len(runs)} Ray runs, {sum(a - 1 for a in attempts.values())} extra attempts")


def _ray_runs(pool: LocalPool) -> list[dict]:
    from ray.job_submission import JobSubmissionClient

    settings = pool.settings
    assert settings is not None
    token = settings.ray_auth_token
    client = JobSubmissionClient(settings.ray_dashboard_url,
                                 headers={"Authorization": f"Bearer {token}"} if token else None)
    return [
        {"job": info.metadata["commonpool_job"], "attempt": int(info.metadata["attempt"]),
         "status": str(info.status.value), "start": info.start_time or 0,
         "end": info.end_time or float("inf")}
        for info in client.list_jobs()
        if info.metadata and "commonpool_job" in info.metadata
    ]


TASKS, TASK_KILLS = 150, 5
STAMP = 'echo "$0 $COMMONPOOL_JOB_ID $COMMONPOOL_JOB_ATTEMPT $(date +%s.%N)" >> "$1"'


def test_sigkilled_scheduler_loses_and_doubles_no_chained_command(
    pool: LocalPool, tmp_path: Path
) -> None:
    stamps = tmp_path / "stamps"
    script = f"{STAMP.replace('$0', 'start')}; sleep 0.02; {STAMP.replace('$0', 'end')}"
    rng = random.Random(SEED)
    env = {**os.environ, **pool.scheduler_env(), "COMMONPOOL_CONFIG": str(tmp_path / "x.toml")}
    scheduler = Scheduler(env, tmp_path / "scheduler.log")
    with pool.client() as client:
        array = client.submit_array(JobSpec(
            name="stamp", kind="command", command=["sh", "-c", script, "sh", str(stamps)],
            array=f"0-{TASKS - 1}", max_attempts=5))  # fmt: skip

        def finished() -> tuple[bool, dict[str, int]]:
            by_state = client.get_array(array.id).by_state
            final = sum(by_state.get(s, 0) for s in ("SUCCEEDED", "FAILED", "CANCELLED"))
            return final >= TASKS, by_state

        by_state = _kill_until(scheduler, finished, rng, kills=TASK_KILLS, pause_s=(0.3, 3.0))
        assert by_state.get("SUCCEEDED") == TASKS, by_state
        attempts = {task.id: task.attempt for task in client.list_jobs(array=array.id)}
        chained = sum(
            any("behind job" in event.reason for event in client.job_events(job_id))
            for job_id in attempts
        )
    assert chained, "no task waited in a chain: the test would not test chains"
    runs: dict[tuple[str, int], dict[str, list[float]]] = defaultdict(
        lambda: {"start": [], "end": []}
    )
    for line in stamps.read_text().splitlines():
        what, job_id, attempt, at = line.split()
        runs[(job_id, int(attempt))][what].append(float(at))
    assert {job for job, _ in runs} == set(attempts)
    for (job_id, attempt), run in runs.items():
        assert len(run["start"]) == 1, (job_id, attempt, run)  # no attempt ran twice
        assert len(run["end"]) <= 1
        if attempt == attempts[job_id]:
            assert len(run["end"]) == 1, (job_id, attempt)  # the last one ran to its end
    for job_id in attempts:
        spans = sorted(
            (run["start"][0], (run["end"] or [float("inf")])[0])
            for (job, _), run in runs.items()
            if job == job_id
        )
        for earlier, later in pairwise(spans):
            assert earlier[1] <= later[0], (job_id, spans)  # never two at once
    edges = sorted(
        [(run["start"][0], 1) for run in runs.values()]
        + [(run["end"][0], -1) for run in runs.values() if run["end"]]
    )
    at_once = max(itertools.accumulate(delta for _, delta in edges))
    assert at_once <= 2 * pool.cpus_per_agent, at_once  # the pool's 2 one-CPU nodes
    print(f"chained commands chaos: {TASK_KILLS} SIGKILLs, {TASKS} tasks SUCCEEDED "
          f"({chained} chained), {sum(a - 1 for a in attempts.values())} extra attempts, "
          f"{at_once} at once at most")


def test_a_separate_scheduler_starts_each_submit_at_once_not_on_its_interval(
    pool: LocalPool, tmp_path: Path
) -> None:
    """`commonpool scheduler` beside the API (compose's layout): the API's submit and the
    run's end wake it (here through the database's FIFO), so a job runs to its end in
    seconds although the scheduler's own interval is 120 s."""
    env = {**os.environ, **pool.scheduler_env(), "COMMONPOOL_CONFIG": str(tmp_path / "x.toml")}
    scheduler = Scheduler(env, tmp_path / "scheduler.log", interval_s=120)
    scheduler.start()
    try:
        scheduler.wait_running()
        time.sleep(1.0)  # its first steps are over: what follows is woken by the submits
        with pool.client() as client:
            for turn in range(3):
                started = time.monotonic()
                job = client.submit_job(JobSpec(name=f"woken-{turn}", kind="command",
                                                command=["true"]))
                while not JobState(client.get_job(job.id).state).terminal:
                    assert time.monotonic() - started < 30, client.get_job(job.id)
                    time.sleep(0.05)
                assert client.get_job(job.id).state == "SUCCEEDED"
    finally:
        scheduler.kill()
