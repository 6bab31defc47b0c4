"""Warm-started ddp jobs (`ddp_start = "warm"`): one process per rank on the nodes' warm
executors, without Ray Train, on the real pool."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from commonpool.api.client.sdk import Client
from commonpool.api.local_pool import LocalPool
from commonpool.scheduler.spec import JobSpec
from commonpool.scheduler.store.models import Job

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _runner_ref(pool: LocalPool, job_id: str) -> str:
    assert pool.db is not None
    with pool.db.unit_of_work() as session:
        return session.get(Job, job_id).runner_ref or ""


def _free_cpus(client: Client) -> float:
    return client.pool_summary().free.cpus


def _logs(client: Client, job_id: str) -> str:
    return "\n".join(line.line for line in client.logs(job_id))


def test_a_warm_ddp_job_trains_on_its_allocated_nodes_and_keeps_its_checkpoints(
    warm: LocalPool, client: Client
) -> None:
    job = client.submit_job(JobSpec(
        name="digits-warm", entrypoint="commonpool.workers.examples.digits_mlp:train",
        workers=2, resources={"cpus": 1}, args={"epochs": 4}))  # fmt: skip
    final = client.wait(job.id, timeout_s=180)
    assert final.state == "SUCCEEDED", final.exit_reason
    by_rank = {a.rank: a.node_id for a in client.job_allocations(job.id)}
    assert sorted(by_rank.values()) == sorted(warm.node_ids)
    assert _runner_ref(warm, job.id).endswith(f"@ddp:{by_rank[0]},{by_rank[1]}")
    logs = _logs(client, job.id)
    for rank, node in by_rank.items():  # each rank says where it really ran, and how
        assert f"rank {rank}/2 on node {node} (warm start, gloo)" in logs
    assert "[rank 1] commonpool: rank 1/2 on node" in logs  # rank 1's output, labelled
    losses = [m.values["loss"] for m in client.job_metrics(job.id)]
    assert len(losses) == 4 and losses[-1] < losses[0]
    states = [e.to_state for e in client.job_events(job.id)]
    assert states == ["QUEUED", "PLACED", "STARTING", "RUNNING", "SUCCEEDED"]
    kept = Path(warm.state_dir) / "checkpoints" / job.id / "warm"
    assert sorted(p.name for p in kept.iterdir()) == [f"checkpoint_{i:06d}" for i in (1, 2, 3, 4)]
    assert (kept / "checkpoint_000004" / "model.pt").stat().st_size > 0
    assert final.checkpoint_uri == str(kept)
    assert _free_cpus(client) == 2.0
    # The agents meter the ranks as the job's (by its id in their environment).
    deadline = time.monotonic() + 30
    while client.job_energy(job.id).energy_j <= 0:
        assert time.monotonic() < deadline, "no energy was metered for the warm ranks"
        time.sleep(1)


def test_a_warm_rank_that_raises_fails_the_job_and_its_peer_is_stopped(
    warm: LocalPool, client: Client
) -> None:
    # Rank 1 raises at once; rank 0 would sleep 30 s: the job must not wait for it.
    submitted = time.monotonic()
    job = client.submit_job(JobSpec(name="crash-warm", entrypoint="testjobs:crash",
                                    workers=2, args={"rank": 1}))
    final = client.wait(job.id, timeout_s=120)
    assert final.state == "FAILED"
    assert time.monotonic() - submitted < 25
    reason = next(e.reason for e in client.job_events(job.id) if e.to_state == "FAILED") or ""
    assert reason.startswith("rank 1: exit code 1"), reason
    assert "ValueError: deliberate failure from the test job" in reason
    assert _free_cpus(client) == 2.0


def test_cancel_stops_a_running_warm_job_within_seconds(
    warm: LocalPool, client: Client
) -> None:
    job = client.submit_job(JobSpec(name="slow-warm", entrypoint="testjobs:slow", workers=2))
    deadline = time.monotonic() + 60
    while client.get_job(job.id).state != "RUNNING":  # RUNNING at its first reported step
        assert time.monotonic() < deadline, client.get_job(job.id).state
        time.sleep(0.2)
    pids = _rank_pids(job.id)
    assert len(pids) == 2
    cancelled = time.monotonic()
    client.cancel_job(job.id, "test cancels")
    assert client.get_job(job.id).state == "CANCELLED"
    assert _free_cpus(client) == 2.0
    while any(_alive(pid) for pid in pids):
        assert time.monotonic() - cancelled < 10, "a rank survived its cancel"
        time.sleep(0.2)
    count = len(client.job_metrics(job.id))
    time.sleep(2)
    assert len(client.job_metrics(job.id)) == count


def _rank_pids(job_id: str) -> list[int]:
    """The pids of the job's rank processes, found by their environment."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = (proc / "environ").read_bytes()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"warm_ddp" in cmdline and re.search(rb"COMMONPOOL_JOB_ID=" + job_id.encode(), env):
            found.append(int(proc.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"
