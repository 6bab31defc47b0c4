"""Jobs submitted over REST run as DDP on the real Ray nodes the scheduler chose."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from commonpool.api.client.sdk import Client
from commonpool.api.local_pool import LocalPool
from commonpool.scheduler.spec import JobSpec

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _wait_state(client: Client, job_id: str, states: set[str], timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get_job(job_id).state
        if state in states:
            return state
        time.sleep(0.3)
    raise AssertionError(f"{job_id} never reached {states}; last {state}")


def _free_cpus(client: Client) -> float:
    return client.pool_summary().free.cpus


def test_two_worker_ddp_job_runs_on_its_allocated_nodes(pool: LocalPool, client: Client) -> None:
    spec = JobSpec(name="digits", entrypoint="commonpool.workers.examples.digits_mlp:train",
                   workers=2, resources={"cpus": 1}, args={"epochs": 6})
    job = client.submit_job(spec)
    final = client.wait(job.id, timeout_s=300)
    assert final.state == "SUCCEEDED", final.exit_reason
    allocations = client.job_allocations(job.id)
    by_rank = {a.rank: a.node_id for a in allocations}
    assert sorted(by_rank.values()) == sorted(pool.node_ids)
    logs = "\n".join(line.line for line in client.logs(job.id))
    for rank, node in by_rank.items():  # each worker says where it really ran
        assert f"rank {rank}/2 on node {node}" in logs
    losses = [m.values["loss"] for m in client.job_metrics(job.id)]
    assert len(losses) == 6 and losses[-1] < losses[0] * 0.5
    assert final.metrics["accuracy"] > 0.8
    # Ray Train's run folder, named after the job, holds its checkpoints.
    assert final.checkpoint_uri == str(Path(pool.state_dir) / "checkpoints" / job.id)
    assert any(Path(final.checkpoint_uri).glob("checkpoint_*"))
    assert all(a.released_at is not None for a in allocations)
    states = [e.to_state for e in client.job_events(job.id)]
    assert states == ["QUEUED", "PLACED", "STARTING", "RUNNING", "SUCCEEDED"]
    assert _free_cpus(client) == 2.0


def test_placement_is_honoured_worker_never_runs_elsewhere(
    pool: LocalPool, client: Client, job_dir: Path
) -> None:
    node_a, node_b = pool.node_ids
    client.cordon_node(node_a, "test: force placement on B")
    try:
        job = client.submit_job(JobSpec(name="where", entrypoint="testjobs:where",
                                        working_dir=str(job_dir), workers=1))
        final = client.wait(job.id, timeout_s=180)
    finally:
        client.uncordon_node(node_a)
    assert final.state == "SUCCEEDED", final.exit_reason
    assert [a.node_id for a in client.job_allocations(job.id)] == [node_b]
    logs = "\n".join(line.line for line in client.logs(job.id))
    assert set(re.findall(r"WHERE rank=0 node=(\S+)", logs)) == {node_b}, logs


def test_cancel_running_job_stops_it_and_frees_resources(
    pool: LocalPool, client: Client, job_dir: Path
) -> None:
    job = client.submit_job(JobSpec(name="slow", entrypoint="testjobs:slow",
                                    working_dir=str(job_dir), workers=2))
    _wait_state(client, job.id, {"RUNNING"})
    assert _free_cpus(client) == 0.0
    cancelled_at = time.monotonic()
    client.cancel_job(job.id, "test cancels")
    assert client.get_job(job.id).state == "CANCELLED"
    assert _free_cpus(client) == 2.0
    # The Ray run is stopped: no more step reports arrive a few seconds later.
    time.sleep(6)
    count = len(client.job_metrics(job.id))
    time.sleep(3)
    assert len(client.job_metrics(job.id)) == count
    assert time.monotonic() - cancelled_at < 30


def test_job_whose_code_raises_fails_with_the_traceback(
    pool: LocalPool, client: Client, job_dir: Path
) -> None:
    job = client.submit_job(JobSpec(name="crash", entrypoint="testjobs:crash",
                                    working_dir=str(job_dir), workers=2, args={"rank": 1}))
    final = client.wait(job.id, timeout_s=180)
    assert final.state == "FAILED"
    failed = [e for e in client.job_events(job.id) if e.to_state == "FAILED"]
    assert "deliberate failure from the test job" in (failed[0].reason or "")
    assert _free_cpus(client) == 2.0
