"""`commonpool agent`: what a donor runs on the machine they share."""

from __future__ import annotations

from pathlib import Path

import typer

from commonpool.scheduler.config import default_state_dir, get_settings
from commonpool.scheduler.spec import parse_memory

from . import render
from .context import EXIT_USAGE

READY = "agent ready: node"


def agent(
    server: str | None = typer.Option(
        None, "--server", envvar="COMMONPOOL_SERVER_URL", help="The pool's API URL."
    ),
    enroll_token: str | None = typer.Option(
        None,
        "--enroll-token",
        envvar="COMMONPOOL_ENROLL_TOKEN",
        help="Single-use token from the pool admin (first start only).",
    ),
    cpus: float | None = typer.Option(None, min=0.1, help="CPUs to share (default: all)."),
    memory: str | None = typer.Option(None, help="Memory to share, e.g. 8GiB (default: all)."),
    gpus: int | None = typer.Option(None, min=0, help="GPUs to share (default: all detected)."),
    gpu_type: str | None = typer.Option(None, help="GPU type label for placement, e.g. v100."),
    region: str | None = typer.Option(None, help="Grid region for carbon accounting, e.g. GB."),
    donor_project: str | None = typer.Option(None, help="Project credited for this donation."),
    pue: float = typer.Option(
        1.0, min=1.0, max=3.0, help="Power usage effectiveness of the site (energy x PUE)."
    ),
    name: str | None = typer.Option(None, help="Node name (default: host name)."),
    state_file: Path | None = typer.Option(None, help="Where the node identity is kept."),
    node_ip: str = typer.Option("127.0.0.1", help="Address Ray advertises for this node."),
    heartbeat: float = typer.Option(5.0, min=0.2, help="Seconds between heartbeats."),
    sample: float = typer.Option(
        1.0, min=0, help="Seconds between energy samples (0 turns energy telemetry off)."
    ),
    drain_grace: float = typer.Option(60.0, min=0, help="Seconds to let jobs finish on stop."),
) -> None:
    """Share this machine with the pool: enroll, join Ray, heartbeat; drain on SIGTERM."""
    from commonpool.workers.agent.main import Agent, AgentConfig
    from commonpool.workers.agent.probe import donated, load_nvml, machine_name, probe

    state_dir = default_state_dir()
    have = probe(load_nvml())
    try:
        shared = donated(
            have, cpus=cpus, gpus=gpus, memory_bytes=parse_memory(memory) if memory else None
        )
    except ValueError as exc:
        render.err_console.print(f"[red]{exc}[/]")
        raise typer.Exit(EXIT_USAGE) from exc
    config = AgentConfig(
        server=server or get_settings().server_url,
        state_file=state_file or state_dir / "agent.json",
        resources=shared,
        name=name or machine_name(),
        enroll_token=enroll_token,
        gpu_type=gpu_type,
        region=region,
        donor_project=donor_project,
        pue=pue,
        heartbeat_s=heartbeat,
        sample_s=sample,
        drain_grace_s=drain_grace,
        node_ip=node_ip,
        log_dir=state_dir / "logs",
    )
    worker = Agent(config, on_ready=lambda node_id: print(f"{READY} {node_id}", flush=True))
    worker.install_signal_handlers()
    worker.run()
