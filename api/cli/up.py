"""`commonpool up` and `commonpool demo`: an all-in-one pool on this machine."""

from __future__ import annotations

import signal
import tempfile
import threading
import time
from enum import StrEnum
from pathlib import Path
from types import FrameType

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from commonpool.scheduler.config import default_state_dir, get_settings
from commonpool.scheduler.domain.states import JobState
from commonpool.scheduler.spec import JobSpec

from ..client.sdk import Client
from . import render
from .context import EXIT_JOB_FAILED

DEMO_ENTRYPOINT = "commonpool.workers.examples.digits_mlp:train"


class DdpStart(StrEnum):
    trainer = "trainer"
    warm = "warm"

HEARTBEAT_TAIL_S = 3.0  # LocalPool agents heartbeat every 2 s


def up(
    agents: int = typer.Option(2, min=0, max=16, help="Local agents (each its own Ray node)."),
    cpus: float = typer.Option(1.0, min=0.1, help="CPUs each local agent shares."),
    port: int | None = typer.Option(None, min=1, max=65535, help="API port (default: free)."),
    host: str = typer.Option(
        "127.0.0.1",
        help="Address the API and the Ray head bind and advertise; a private address lets "
        "agents on other machines join (never expose Ray's ports to the internet).",
    ),
    state_dir: Path | None = typer.Option(None, help="Where the SQLite file and logs live."),
    policy: str = typer.Option("fifo", help="Placement policy."),
    job_user: str | None = typer.Option(
        None,
        "--job-user",
        help="Agents run jobs as this unprivileged user (needs root; see docs/security.md).",
    ),
    ddp_start: DdpStart | None = typer.Option(
        None,
        help="How ddp jobs start: trainer (Ray Train) or warm (one process per rank on the "
        "nodes' warm executors, ~1 s to the first step; docs/execution.md). Default: the "
        "COMMONPOOL_DDP_START setting, else trainer.",
    ),
) -> None:
    """Run API + scheduler + Ray head + N local agents until Ctrl-C."""
    from ..local_pool import LocalPool

    stop = threading.Event()

    def _stop(_sig: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with LocalPool(
        state_dir or default_state_dir() / "pool",
        agents=agents,
        cpus_per_agent=cpus,
        port=port,
        policy=policy,
        token_file=get_settings().resolved_token_file,
        job_user=job_user,
        host=host,
        ddp_start=ddp_start.value if ddp_start else None,
    ) as pool:
        render.console.print(
            f"pool up at [bold]{pool.url}[/] with {agents} agents; "
            f"admin token in {pool.token_file} (the CLI on this machine uses it); "
            f"try: commonpool --server {pool.url} nodes"
        )
        stop.wait()
        render.console.print("stopping: agents drain, then everything exits")


def demo(
    epochs: int = typer.Option(15, min=1, max=500, help="Training epochs of digits-mlp."),
    agents: int = typer.Option(2, min=1, max=8, help="Local agents = DDP workers."),
    keep: bool = typer.Option(False, help="Keep the demo's state dir (SQLite file, logs)."),
) -> None:
    """Bring a pool up, train digits-mlp with DDP on its agents, print a summary, shut down."""
    from commonpool.scheduler.services.accounts import DEFAULT_PROJECT

    from ..local_pool import LocalPool

    state = Path(tempfile.mkdtemp(prefix="commonpool-demo-"))
    started = time.monotonic()
    with LocalPool(state, agents=agents, cpus_per_agent=1.0) as pool, pool.client() as client:
        spec = JobSpec(
            name="digits-mlp",
            entrypoint=DEMO_ENTRYPOINT,
            workers=agents,
            resources={"cpus": 1},
            args={"epochs": epochs},
            project=DEFAULT_PROJECT,  # the project the first-run bootstrap makes
        )
        job = client.submit_job(spec)
        render.console.print(f"submitted [bold]{job.id}[/] through {pool.url}/api/v1/jobs")
        job = follow(client, job.id, epochs)
        time.sleep(HEARTBEAT_TAIL_S)  # the job's last energy arrives with the next heartbeat
        summary(client, job.id, time.monotonic() - started, pool.node_ids)
    if keep:
        render.console.print(f"state kept in {state}")
    else:
        import shutil

        shutil.rmtree(state, ignore_errors=True)
    if job.state != JobState.SUCCEEDED.value:
        raise typer.Exit(EXIT_JOB_FAILED)


def follow(client: Client, job_id: str, epochs: int):  # type: ignore[no-untyped-def]
    """A progress bar over the job's reported epochs, until the job ends."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} epochs"),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=render.console) as progress:
        task = progress.add_task("QUEUED", total=epochs, detail="")
        while True:
            job = client.get_job(job_id)
            m = job.metrics
            detail = ""
            if "loss" in m:
                detail = (
                    f"loss {m['loss']:.4f}  acc {m.get('accuracy', 0):.3f}  "
                    f"{m.get('samples_per_s', 0):.0f} samples/s"
                )
            progress.update(task, description=job.state, completed=m.get("epoch", 0), detail=detail)
            if JobState(job.state).terminal:
                return job
            time.sleep(0.5)


def summary(client: Client, job_id: str, wall_s: float, node_ids: list[str]) -> None:
    job = client.get_job(job_id)
    allocations = client.job_allocations(job_id)
    used = sorted({a.node_id for a in allocations if a.attempt == job.attempt})
    ran = (job.ended_at - job.started_at).total_seconds() if job.ended_at and job.started_at else 0
    m = job.metrics
    rows = [
        ("job", f"{job.id} {render.state(job.state)}"),
        ("final loss", f"{m['loss']:.4f}" if "loss" in m else "-"),
        ("final accuracy", f"{m['accuracy']:.3f}" if "accuracy" in m else "-"),
        ("training time", f"{ran:.1f} s"),
        ("wall time", f"{wall_s:.1f} s from pool start to this summary"),
        ("nodes used", ", ".join(used) + f"  (of {len(node_ids)} agents)"),
        *render.energy_rows(client.job_energy(job_id)),
    ]
    if job.state != JobState.SUCCEEDED.value:
        rows.append(("exit", (job.exit_reason or "")[-800:]))
    render.console.print(render.table("demo summary", ["", ""], rows))
