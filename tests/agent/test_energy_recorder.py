"""The agent's energy recorder: job processes by environment, bounded batches, buffering."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from commonpool.workers.agent.energy import JobProcesses
from commonpool.workers.job import ENV_JOB_ID
from tests.agent.conftest import Clock, steady_recorder

BURN = "import time\nend = time.time() + 30\nwhile time.time() < end: pass\n"
SLEEP = "import time; time.sleep(30)"


def _spawn(code: str, job_id: str | None) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != ENV_JOB_ID}
    if job_id:
        env[ENV_JOB_ID] = job_id
    return subprocess.Popen([sys.executable, "-c", code], env=env)


@pytest.fixture
def workers() -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    procs = {"busy": _spawn(BURN, "job_busy"), "idle": _spawn(SLEEP, "job_idle"),
             "none": _spawn(SLEEP, None)}
    time.sleep(0.5)
    yield procs
    for proc in procs.values():
        proc.kill()
        proc.wait()


def test_job_processes_are_found_by_environment_under_the_root(
    workers: dict[str, subprocess.Popen[bytes]],
) -> None:
    found = JobProcesses(lambda: os.getpid()).scan()
    assert found["job_busy"] == frozenset({workers["busy"].pid})
    assert found["job_idle"] == frozenset({workers["idle"].pid})
    assert workers["none"].pid not in {p for pids in found.values() for p in pids}
    assert JobProcesses(lambda: workers["none"].pid).scan() == {}  # outside that tree
    assert JobProcesses(lambda: None).scan() == {}


def test_batch_attributes_by_cpu_and_adds_up(workers: dict[str, subprocess.Popen[bytes]]) -> None:
    clock = Clock()
    recorder = steady_recorder(clock)
    recorder.sampler.start()
    recorder.tick()  # no time has passed: only sets the CPU baselines
    for _ in range(2):
        time.sleep(0.5)
        clock.now += 1.0
        recorder.tick()
    report = recorder.take()
    assert report is not None and report.is_estimated
    assert report.methods == {"cpu": "model"} and "steady test" in (report.note or "")
    (interval,) = report.intervals
    parts = interval.idle_j + interval.other_j + sum(j.joules for j in interval.jobs.values())
    assert interval.total_j == pytest.approx(200.0)  # 2 s of 100 W (manual clock)
    assert parts == pytest.approx(interval.total_j)
    assert interval.idle_j == pytest.approx(40.0)
    busy = interval.jobs["job_busy"].joules
    assert busy > 0 and busy > 10 * interval.jobs["job_idle"].joules
    assert interval.jobs["job_busy"].estimated_j == pytest.approx(busy)


def test_unacknowledged_batches_stay_buffered_and_merge_within_bound() -> None:
    clock = Clock()
    recorder = steady_recorder(clock, max_intervals=3)
    recorder.sampler.start()
    for _ in range(5):  # five heartbeats fail: nothing is acknowledged
        clock.now += 2.0
        recorder.tick()
        report = recorder.take()
    assert report is not None and len(report.intervals) == 3  # bounded: oldest merged
    assert sum(i.total_j for i in report.intervals) == pytest.approx(1000.0)  # nothing lost
    clock.now += 2.0
    recorder.tick()
    recorder.ack(report)  # the heartbeat carrying `report` succeeded
    assert recorder.buffered == 0
    later = recorder.take()
    assert later is not None and [i.total_j for i in later.intervals] == [pytest.approx(200.0)]
    recorder.ack(later)
    assert recorder.take() is None


def test_a_jobs_gpus_come_from_its_workers_cuda_visible_devices() -> None:
    env = {k: v for k, v in os.environ.items() if k != ENV_JOB_ID}
    worker = subprocess.Popen([sys.executable, "-c", SLEEP],
                              env={**env, ENV_JOB_ID: "job_gpu", "CUDA_VISIBLE_DEVICES": "1,3"})
    try:
        time.sleep(0.5)
        pids, gpus = JobProcesses(lambda: os.getpid()).scan_with_gpus()
        assert pids["job_gpu"] == frozenset({worker.pid})
        assert gpus["job_gpu"] == frozenset({"gpu1", "gpu3"})
    finally:
        worker.kill()
        worker.wait()
