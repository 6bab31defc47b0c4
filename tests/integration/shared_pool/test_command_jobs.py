"""Command jobs (`kind: command`) run for real: on the crash-safe local runner, and on
the warm executor (a Ray actor) of their allocated node."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from commonpool.api.client.sdk import Client
from commonpool.api.local_pool import LocalPool
from commonpool.scheduler.domain.states import JobState
from commonpool.scheduler.launcher import EXIT_REASON_CHARS, Launcher, exit_reason
from commonpool.scheduler.loop import SchedulerLoop
from commonpool.scheduler.policy import make_policy
from commonpool.scheduler.ports import run_ref
from commonpool.scheduler.services.jobs import (
    get_job,
    list_allocations,
    list_events,
    read_logs,
    submit_job,
)
from commonpool.scheduler.spec import JobSpec
from commonpool.scheduler.store.uow import Database
from commonpool.workers.ray_node import NODE_LABEL
from commonpool.workers.runner.local_runs import LocalRunsRunner, command_for
from commonpool.workers.runner.ray_jobs import command_failure
from commonpool.workers.runner.ray_pool import executor_name
from tests.builders import job_spec, online_node


# -- the local runner (no Ray) ------------------------------------------------------------
def _run_to_end(db: Database, runner: LocalRunsRunner, command: list[str] | str) -> str:
    """Submit a command job, place it, step the launcher until it ends; the job's id."""
    with db.unit_of_work() as session:
        online_node(session, cpus=2)
        job_id = submit_job(
            session, job_spec(kind="command", entrypoint=None, command=command), actor="t"
        ).id
    SchedulerLoop(db, make_policy("fifo")).step()
    launcher = Launcher(db, runner, server_url="http://x", poll_interval_s=0.0)
    deadline = time.monotonic() + 20
    while True:
        launcher.step()
        with db.unit_of_work(write=False) as session:
            if JobState(get_job(session, job_id).state).terminal:
                return job_id
        assert time.monotonic() < deadline, "the command job never ended"
        time.sleep(0.05)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_local_runner_runs_a_command_argv_as_given(db: Database, tmp_path: Path) -> None:
    runner = LocalRunsRunner(tmp_path / "runs", command_for("local"))
    job_id = _run_to_end(db, runner, ["/bin/echo", "hello", "two words", "$NOT_EXPANDED"])
    with db.unit_of_work(write=False) as session:
        job = get_job(session, job_id)
        assert job.state == "SUCCEEDED", job.exit_reason
        assert [line.line for line in read_logs(session, job_id)] == [
            "hello two words $NOT_EXPANDED"
        ]
        assert all(a.released_at is not None for a in list_allocations(session, job_id))
    journal = (tmp_path / "runs" / "journal").read_text().split()
    assert journal.count("run") == 1 and journal.count("end") == 1  # ran once, records kept


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_local_command_failing_with_exit_3_is_running_then_failed(
    db: Database, tmp_path: Path
) -> None:
    runner = LocalRunsRunner(tmp_path / "runs", command_for("local"))
    job_id = _run_to_end(
        db, runner, 'echo "out $COMMONPOOL_JOB_ID"; sleep 0.3; echo "bad input" >&2; exit 3'
    )
    with db.unit_of_work(write=False) as session:
        job = get_job(session, job_id)
        events = list_events(session, job_id)
        logs = [line.line for line in read_logs(session, job_id)]
        allocations = list_allocations(session, job_id)
    assert job.state == "FAILED"
    assert (job.exit_reason or "").startswith("exited with code 3"), job.exit_reason
    assert "bad input" in (job.exit_reason or "")
    assert logs == [f"out {job_id}", "bad input"]
    # No step reports: the launcher moves it to RUNNING when the runner says it runs.
    assert [e.to_state for e in events] == ["QUEUED", "PLACED", "STARTING", "RUNNING", "FAILED"]
    assert job.started_at is not None
    assert allocations and all(a.released_at is not None for a in allocations)


def test_exit_code_leads_the_exit_reason_even_after_long_output() -> None:
    ray_message = "Job entrypoint command failed with exit code 3, last available logs:"
    assert command_failure(ray_message, None) == "exit code 3"
    assert command_failure(ray_message, 3) == "exit code 3"
    assert command_failure("x", -9) == "exit code -9 (killed by SIGKILL)"
    never_ran = "Job supervisor actor failed to start: runtime_env setup failed"
    assert command_failure(never_ran, None) == never_ran
    long = "exit code 3\n" + "\n".join(f"line {i}" for i in range(2000)) + "\nthe real error"
    reason = exit_reason(long)
    assert len(reason) == EXIT_REASON_CHARS
    assert reason.startswith("exit code 3\n...") and reason.endswith("the real error")
    assert exit_reason("exit code 3\nshort") == "exit code 3\nshort"


# -- Ray: a command runs on its allocated node (warm executor, or a Ray job) --------------
def _ray_state(pool: LocalPool, resource: str) -> list[dict]:
    """Ray's state API listing of `resource` (nodes, actors), with details."""
    assert pool.settings is not None
    token = pool.settings.ray_auth_token
    response = httpx.get(
        f"{pool.settings.ray_dashboard_url}/api/v0/{resource}",
        params={"limit": 1000, "detail": "true"},
        headers={"Authorization": f"Bearer {token}"} if token else {},
        timeout=10,
    )
    response.raise_for_status()
    return list(response.json()["data"]["result"]["result"])


def _ray_node_labels(pool: LocalPool) -> dict[str, str]:
    """Ray node id -> the pool's node label."""
    return {n["node_id"]: n["labels"].get(NODE_LABEL, "") for n in _ray_state(pool, "nodes")}


def _ray_actor_node(pool: LocalPool, name: str) -> str:
    """The Ray node id of the live actor `name`."""
    (actor,) = [
        a for a in _ray_state(pool, "actors") if a.get("name") == name and a["state"] == "ALIVE"
    ]
    return str(actor["node_id"])


@pytest.mark.ray
@pytest.mark.slow
def test_command_job_runs_on_its_allocated_node_and_logs_its_output(
    pool: LocalPool, client: Client
) -> None:
    # sleep: longer than the launcher's poll interval (2 s), so a poll sees it running
    command = (
        f"echo \"hello from $COMMONPOOL_JOB_ID\"; {sys.executable} -c "
        "\"import sys; print('py', sys.argv[1:])\" a 'b c'; sleep 4"
    )
    job = client.submit_job(JobSpec(name="cmd-ok", kind="command", command=command,
                                    resources={"cpus": 1}))
    final = client.wait(job.id, timeout_s=120)
    assert final.state == "SUCCEEDED", final.exit_reason
    logs = [line.line for line in client.logs(job.id)]
    assert f"hello from {job.id}" in logs and "py ['a', 'b c']" in logs, logs
    allocations = client.job_allocations(job.id)
    assert len(allocations) == 1 and allocations[0].released_at is not None
    # It ran on the allocated node's warm executor (no Ray job per command), and Ray's own
    # record of where that executor lives is the allocated node.
    node_id = allocations[0].node_id
    launched = [e.reason for e in client.job_events(job.id) if e.to_state == "STARTING"]
    assert launched == [f"launched as {run_ref(job.id, 1)}@{node_id}"]
    assert _ray_node_labels(pool)[_ray_actor_node(pool, executor_name(node_id))] == node_id
    states = [e.to_state for e in client.job_events(job.id)]
    assert states == ["QUEUED", "PLACED", "STARTING", "RUNNING", "SUCCEEDED"]
    assert client.pool_summary().free.cpus == 2.0


@pytest.mark.ray
@pytest.mark.slow
def test_command_exiting_3_fails_with_its_exit_code_and_stderr(
    pool: LocalPool, client: Client
) -> None:
    """Submitted by `commonpool run --wait`, which prints the log tail and exits 1."""
    cli = subprocess.run(
        [sys.executable, "-m", "commonpool", "--server", pool.url, "run", "--wait",
         "--name", "cmd-fail", "--", "echo 'no such dataset: digits9' >&2; exit 3"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "COMMONPOOL_TOKEN": pool.admin_token, "COLUMNS": "200"},
    )
    assert cli.returncode == 1, cli.stderr
    assert "no such dataset: digits9" in cli.stdout and "FAILED: exit code 3" in cli.stdout
    job_id = re.search(r"submitted (job_\w+)", cli.stdout).group(1)  # type: ignore[union-attr]
    final = client.get_job(job_id)
    assert final.command == ["/bin/sh", "-c", "echo 'no such dataset: digits9' >&2; exit 3"]
    reason = final.exit_reason or ""
    assert final.state == "FAILED" and reason.startswith("exit code 3\n"), reason
    assert "no such dataset: digits9" in reason
    assert "no such dataset: digits9" in [line.line for line in client.logs(job_id)]
    assert all(a.released_at is not None for a in client.job_allocations(job_id))
    assert client.pool_summary().free.cpus == 2.0


@pytest.mark.ray
@pytest.mark.slow
def test_a_command_end_wakes_the_scheduler_at_once(pool: LocalPool, client: Client) -> None:
    """With steps 60 s apart, a command's end is still recorded within seconds: the
    executor's reply wakes the loop (a submit wakes it for the start)."""
    assert pool.loop is not None
    interval = pool.loop.interval_s
    pool.loop.interval_s = 60.0
    try:
        time.sleep(interval * 2)  # the loop's current wait ends; the next one is 60 s
        started = time.monotonic()
        job = client.submit_job(JobSpec(name="cmd-wake", kind="command", command=["true"],
                                        resources={"cpus": 1}))
        final = client.wait(job.id, timeout_s=50, poll_s=0.1)
        took = time.monotonic() - started
    finally:
        pool.loop.interval_s = interval
        pool.loop.wake()
    assert final.state == "SUCCEEDED", final.exit_reason
    assert took < 10, f"the end was recorded {took:.1f} s after the submit"


@pytest.mark.ray
@pytest.mark.slow
def test_a_dead_executor_requeues_the_job_and_a_new_executor_runs_it(
    pool: LocalPool, client: Client
) -> None:
    """The pool's fault, not the job's: attempt 2 runs on a fresh executor."""
    import ray

    from commonpool.workers.runner.ray_pool import NAMESPACE

    warm = client.submit_job(JobSpec(name="cmd-warm", kind="command", command=["true"],
                                     resources={"cpus": 1}))
    assert client.wait(warm.id, timeout_s=120, poll_s=0.2).state == "SUCCEEDED"
    for node_id in pool.node_ids:  # whichever node the next job lands on, its executor is dead
        try:
            ray.kill(ray.get_actor(executor_name(node_id), namespace=NAMESPACE))
        except ValueError:
            continue  # this node's executor was never created
    job = client.submit_job(JobSpec(name="cmd-after-death", kind="command",
                                    command=["echo", "survived"], resources={"cpus": 1}))
    final = client.wait(job.id, timeout_s=120, poll_s=0.2)
    assert final.state == "SUCCEEDED", final.exit_reason
    assert final.attempt == 2
    events = client.job_events(job.id)
    requeued = [e.reason or "" for e in events if e.to_state == "PREEMPTED"]
    assert len(requeued) == 1 and "executor died" in requeued[0], requeued
    assert "survived" in [line.line for line in client.logs(job.id)]


@pytest.mark.ray
@pytest.mark.slow
def test_an_unanswered_launch_keeps_the_job_placed_and_its_run_starts_once(
    pool: LocalPool, client: Client, tmp_path: Path
) -> None:
    """The nodes' executors are paused (SIGSTOP): the start call gets no answer in time.
    The job is neither failed nor requeued; once they resume (SIGCONT), the next launch of
    the same ref starts or adopts the run, and the command runs exactly once."""
    assert pool.runner is not None and pool.loop is not None
    warm = [client.submit_job(JobSpec(name=f"cmd-warm-{i}", kind="command",
                                      command=["sleep", "1"], resources={"cpus": 1}))
            for i in range(2)]  # one per node (1 CPU each): both executors exist
    for job in warm:
        assert client.wait(job.id, timeout_s=120, poll_s=0.2).state == "SUCCEEDED"
    names = {executor_name(node_id) for node_id in pool.node_ids}
    pids = [int(a["pid"]) for a in _ray_state(pool, "actors")
            if a.get("name") in names and a["state"] == "ALIVE"]
    assert len(pids) == 2
    launcher = pool.loop.launcher
    assert launcher is not None
    saved = (pool.runner.call_timeout_s, launcher.max_launch_retries)
    pool.runner.call_timeout_s, launcher.max_launch_retries = 1.0, 1000
    marker = tmp_path / "runs"
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        job = client.submit_job(JobSpec(name="cmd-in-doubt", kind="command",
                                        command=["sh", "-c", f"echo run >> {marker}"],
                                        resources={"cpus": 1}))
        time.sleep(4)  # several launches without an answer
        assert client.get_job(job.id).state == "PLACED"
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
        pool.runner.call_timeout_s = saved[0]
    try:
        # The doubts counted so far stay counted: restoring the limit of 3 before the job
        # left PLACED would requeue it at the next slow answer of the just-resumed executor.
        final = client.wait(job.id, timeout_s=120, poll_s=0.2)
    finally:
        launcher.max_launch_retries = saved[1]
    assert final.state == "SUCCEEDED" and final.attempt == 1, final.exit_reason
    assert marker.read_text().splitlines() == ["run"]
