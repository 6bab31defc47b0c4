"""The donor's own work wins: a busy owner takes the machine back mid-training (the job moves
to the other node and resumes from its checkpoint), the node returns once the owner is idle,
and `commonpool agent stop` drains and stops a running agent."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest

from commonpool.api.cli.agent import READY
from commonpool.api.local_pool import LocalPool
from commonpool.scheduler.services.nodes import create_enrollment_token
from commonpool.scheduler.spec import JobSpec
from tests.integration.test_node_loss import RESUMABLE

pytestmark = [pytest.mark.ray, pytest.mark.slow]

GRACE_S = 4
IDLE_AFTER_S = 3


@dataclass
class Donor:
    """An agent process of our own, started with owner-reclaim options."""

    process: subprocess.Popen[str]
    state_file: Path
    busy_file: Path
    node_id: str = ""
    output: list[str] = field(default_factory=list)

    def ray_processes(self) -> list[psutil.Process]:
        """Every live descendant of the agent: its Ray node and the job workers on it."""
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        alive = []
        for child in children:
            try:
                if child.status() != psutil.STATUS_ZOMBIE:
                    alive.append(child)
            except psutil.NoSuchProcess:
                pass
        return alive


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPool]:
    with LocalPool(tmp_path_factory.mktemp("pool"), agents=1, log=io.StringIO()) as running:
        yield running


@pytest.fixture(scope="module")
def donor(pool: LocalPool, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Donor]:
    assert pool.db is not None
    with pool.db.unit_of_work() as session:
        token, _ = create_enrollment_token(session, ttl=timedelta(minutes=5))
    home = tmp_path_factory.mktemp("donor")
    state_file, busy_file = home / "state" / "agent.json", home / "owner-busy"
    args = [sys.executable, "-m", "commonpool", "agent", "--server", pool.url,
            "--enroll-token", token, "--cpus", "1", "--name", "donor", "--heartbeat", "1",
            "--drain-grace", str(GRACE_S), "--busy-file", str(busy_file),
            "--idle-after", str(IDLE_AFTER_S), "--state-file", str(state_file)]
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "COMMONPOOL_STATE_DIR": str(home / "state")},
        start_new_session=True)
    agent = Donor(process, state_file, busy_file)

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            agent.output.append(line.rstrip())

    threading.Thread(target=read, daemon=True).start()
    try:
        ready = _until(lambda: [ln for ln in agent.output if ln.startswith(READY)]
                       or process.poll() is not None, 180, lambda: agent.output[-10:])
        assert process.poll() is None, agent.output
        agent.node_id = ready[0][len(READY):].strip()
        yield agent
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait()


def _until(check: Callable[[], Any], timeout_s: float, context: Callable[[], Any] = list,
           every_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := check()):
        assert time.monotonic() < deadline, context()
        time.sleep(every_s)
    return value


def test_busy_owner_takes_the_machine_back_and_the_job_resumes_on_the_other_node(
    pool: LocalPool, donor: Donor, tmp_path: Path
) -> None:
    (tmp_path / "resumable.py").write_text(RESUMABLE)
    other = next(n for n in pool.node_ids if n != donor.node_id)
    with pool.client() as client:
        job = client.submit_job(JobSpec(
            name="reclaimed", entrypoint="resumable:run", working_dir=str(tmp_path),
            workers={"min": 1, "max": 2}, args={"steps": 30, "step_s": 0.4}, max_attempts=3))
        _until(lambda: len(client.job_metrics(job.id)) >= 4, 180,
               lambda: client.get_job(job.id).state)
        assert {a.node_id for a in client.job_allocations(job.id)} == {donor.node_id, other}
        assert any(p.name() == "raylet" for p in donor.ray_processes())

        donor.busy_file.touch()  # the owner is back at their machine
        touched = time.monotonic()
        _until(lambda: client.get_node(donor.node_id).state == "DRAINING", 10,
               lambda: donor.output[-5:], every_s=0.1)
        _until(lambda: client.get_node(donor.node_id).state == "OFFLINE", GRACE_S + 15,
               lambda: donor.output[-5:])
        offline_after = time.monotonic() - touched
        # Ray node and the job's worker on it are gone; the agent stays, watching the owner.
        _until(lambda: not donor.ray_processes(), 30, donor.ray_processes)
        assert donor.process.poll() is None

        resumed = _until(lambda: [m for m in client.job_metrics(job.id) if m.attempt == 2], 120,
                         lambda: client.job_events(job.id))
        resume_after = time.monotonic() - touched
        last_before = max(m.step for m in client.job_metrics(job.id) if m.attempt == 1)
        assert resumed[0].step >= last_before  # from the latest checkpoint: nothing redone twice
        second = [a for a in client.job_allocations(job.id) if a.attempt == 2]
        assert [a.node_id for a in second] == [other]
        drains = [e for e in client.audit_page(action="node.drain").items
                  if e.target == donor.node_id]
        assert [e.detail.get("reason") for e in drains] == ["owner busy: busy file exists"]

        donor.busy_file.unlink()  # the owner left: after IDLE_AFTER_S the node is back
        removed = time.monotonic()
        _until(lambda: client.get_node(donor.node_id).state == "ONLINE", IDLE_AFTER_S + 30,
               lambda: donor.output[-5:])
        online_after = time.monotonic() - removed
        assert online_after >= IDLE_AFTER_S
        _until(lambda: any(p.name() == "raylet" for p in donor.ray_processes()), 60,
               lambda: donor.output[-5:])

        final = client.wait(job.id, timeout_s=180)
        assert final.state == "SUCCEEDED", final.exit_reason
        assert [e.to_state for e in client.job_events(job.id)].count("PREEMPTED") == 1
    said = "\n".join(donor.output)
    assert "agent: owner busy (busy file exists): draining node" in said
    assert f"agent: left the pool (grace of {GRACE_S} s over" in said
    assert f"agent: owner idle for {IDLE_AFTER_S} s: rejoining the pool" in said
    assert f"agent: back in the pool: node {donor.node_id} ONLINE" in said
    print(f"busy -> OFFLINE {offline_after:.1f} s (grace {GRACE_S} s); busy -> resumed on the "
          f"other node {resume_after:.1f} s at step {resumed[0].step} (last before "
          f"{last_before}); idle -> ONLINE {online_after:.1f} s (idle-after {IDLE_AFTER_S} s)")


def test_agent_stop_drains_the_node_and_the_agent_exits(pool: LocalPool, donor: Donor) -> None:
    _until(lambda: donor.ray_processes(), 60)  # joined (again, after the test above)
    stopped = subprocess.run(
        [sys.executable, "-m", "commonpool", "agent", "stop", "--state-file",
         str(donor.state_file), "--timeout", "60"],
        capture_output=True, text=True, timeout=90)
    assert stopped.returncode == 0, stopped.stderr
    assert f"pid {donor.process.pid}" in stopped.stdout
    assert donor.process.wait(timeout=5) == 0
    assert not donor.state_file.with_suffix(".pid").exists()
    with pool.client() as client:
        assert client.get_node(donor.node_id).state == "OFFLINE"
    again = subprocess.run(
        [sys.executable, "-m", "commonpool", "agent", "stop", "--state-file",
         str(donor.state_file)], capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "no agent runs" in again.stderr

