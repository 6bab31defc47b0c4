"""A donated machine dies mid-training: the job moves to the remaining node and resumes
from its last checkpoint, instead of failing."""

from __future__ import annotations

import io
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from commonpool.api.local_pool import LocalPool
from commonpool.scheduler.spec import JobSpec

pytestmark = [pytest.mark.ray, pytest.mark.slow]

RESUMABLE = '''
import json, os, tempfile, time
from pathlib import Path
from commonpool.workers import job


def run(config):
    ctx = job.context()
    start = 0
    directory = job.latest_checkpoint_dir()
    if directory:
        start = json.loads((Path(directory) / "state.json").read_text())["step"]
    print(f"RESUMED_FROM {start} attempt {ctx.job_id and os.environ.get('COMMONPOOL_JOB_ATTEMPT')}",
          flush=True)
    hold = Path(config["hold_file"]) if config.get("hold_file") else None
    step = start
    # Train `steps` steps, and on past them while the test holds the job (its file exists).
    while step < config["steps"] or (hold is not None and hold.exists()):
        step += 1
        time.sleep(config["step_s"])
        with tempfile.TemporaryDirectory() as tmp:
            if ctx.rank == 0:
                (Path(tmp) / "state.json").write_text(json.dumps({"step": step}))
            job.report({"loss": 1.0 / step}, step=step,
                       checkpoint_dir=tmp if ctx.rank == 0 else None)
'''


GROW_AFTER_S = 5


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPool]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("COMMONPOOL_ELASTIC_GROW_AFTER_S", str(GROW_AFTER_S))
        with LocalPool(tmp_path_factory.mktemp("pool"), agents=2, log=io.StringIO()) as running:
            yield running


def _kill_machine(agent: psutil.Process) -> None:
    """SIGKILL the agent and its Ray node's processes: the machine is gone."""
    victims = [agent, *agent.children(recursive=True)]
    for process in victims:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass


def test_lost_node_requeues_the_job_which_resumes_from_its_checkpoint(
    pool: LocalPool, tmp_path: Path
) -> None:
    (tmp_path / "resumable.py").write_text(RESUMABLE)
    with pool.client() as client:
        job = client.submit_job(JobSpec(
            name="elastic", entrypoint="resumable:run", working_dir=str(tmp_path),
            workers={"min": 1, "max": 2}, args={"steps": 24, "step_s": 0.5}, max_attempts=3))
        deadline = time.monotonic() + 180
        while len(client.job_metrics(job.id)) < 6:
            assert time.monotonic() < deadline, client.get_job(job.id).state
            time.sleep(0.3)
        allocations = client.job_allocations(job.id)
        assert len(allocations) == 2
        victim_node = next(a.node_id for a in allocations if a.rank == 1)
        victim = pool.node_ids.index(victim_node)
        killed_at = time.monotonic()
        _kill_machine(psutil.Process(pool.agent_procs[victim].pid))

        while True:  # the first step reported by the next attempt
            resumed = [m for m in client.job_metrics(job.id) if m.attempt == 2]
            if resumed:
                break
            assert time.monotonic() - killed_at < 120, client.job_events(job.id)
            time.sleep(0.2)
        detect_to_resume = time.monotonic() - killed_at
        last_before = max(m.step for m in client.job_metrics(job.id) if m.attempt == 1)
        final = client.wait(job.id, timeout_s=300)

        assert final.state == "SUCCEEDED", final.exit_reason
        assert client.get_node(victim_node).state == "LOST"
        states = [e.to_state for e in client.job_events(job.id)]
        assert states.count("PREEMPTED") == 1 and states.count("QUEUED") == 2
        second = [a for a in client.job_allocations(job.id) if a.attempt == 2]
        assert [a.node_id for a in second] == [n for n in pool.node_ids if n != victim_node]
        # Resumed from the last checkpoint: at most one checkpoint interval (1 step) lost.
        assert resumed[0].step >= last_before
        print(f"detection-to-resume {detect_to_resume:.1f} s; "
              f"resumed at step {resumed[0].step} (last before loss {last_before})")


def test_elastic_job_shrinks_when_a_donor_leaves_and_grows_back_when_it_returns(
    pool: LocalPool, tmp_path: Path
) -> None:
    for index in range(2):  # the previous test may have killed one machine: bring it back
        process = pool.agent_procs.get(index)
        if process is None or process.poll() is not None:
            pool.agent_procs.pop(index, None)
            pool.add_agent(index)
    (tmp_path / "resumable.py").write_text(RESUMABLE)
    hold = tmp_path / "hold"  # keeps the job training until it has regrown, however slow CI is
    hold.touch()
    with pool.client() as client:
        job = client.submit_job(JobSpec(
            name="grows", entrypoint="resumable:run", working_dir=str(tmp_path),
            workers={"min": 1, "max": 2}, max_attempts=2,
            args={"steps": 10, "step_s": 0.5, "hold_file": str(hold)}))

        def workers_of(attempt: int) -> set[str]:
            return {a.node_id for a in client.job_allocations(job.id) if a.attempt == attempt}

        def reported(attempt: int) -> list[int]:
            return [m.step for m in client.job_metrics(job.id) if m.attempt == attempt]

        _wait(lambda: len(reported(1)) >= 3, 180, "two workers training")
        assert len(workers_of(1)) == 2
        assert pool.stop_agent(1) == 0  # the donor stops sharing: drain, leave
        _wait(lambda: len(reported(2)) >= 2, 180, "training on the remaining node")
        assert len(workers_of(2)) == 1
        pool.add_agent(1)  # the donor is back
        _wait(lambda: len(reported(3)) >= 1, 180, "the job regrown to two workers")
        assert len(workers_of(3)) == 2
        assert reported(3)[0] >= max(reported(2))  # resumed from its checkpoint
        hold.unlink()
        events = client.job_events(job.id)
        assert any("elastic: growing from 1 to 2 workers" in (e.reason or "") for e in events)
        final = client.wait(job.id, timeout_s=300)
        assert final.state == "SUCCEEDED", final.exit_reason
        assert final.attempt == 3  # max_attempts 2: the regrow did not spend an attempt


def _wait(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)
