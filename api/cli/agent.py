"""`commonpool agent`: what a donor runs on the machine they share; `agent stop` stops it.

`agent_app` is a group whose callback runs the agent, so `commonpool agent
--server ...` is unchanged and `commonpool agent stop` is its sub-command;
the root mounts it with `app.add_typer(agent.agent_app, name="agent")`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from commonpool.scheduler.config import default_state_dir, get_settings
from commonpool.scheduler.spec import parse_memory

from . import render
from .context import EXIT_API_PROBLEM, EXIT_JOB_FAILED, EXIT_USAGE

READY = "agent ready: node"
STOP_TIMEOUT_S = 120.0  # the agent's default drain grace (60 s) + stopping Ray + leaving

agent_app = typer.Typer(invoke_without_command=True, add_completion=False)


def _state_file(state_file: Path | None) -> Path:
    return state_file or default_state_dir() / "agent.json"


@agent_app.callback(invoke_without_command=True)
def agent(
    ctx: typer.Context,
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
    state_file: Path | None = typer.Option(
        None,
        help="Where the node identity (and credential) is kept: mode 0600 in a 0700 directory "
        "(default: <COMMONPOOL_STATE_DIR>/agent.json).",
    ),
    job_user: str | None = typer.Option(
        None,
        "--job-user",
        help="Run jobs as this unprivileged user, limited to the shared CPUs and memory, so "
        "they cannot read the node credential (the agent must run as root).",
    ),
    node_ip: str | None = typer.Option(
        None,
        help="Address Ray advertises for this node (default: this machine's address on the "
        "route to --server).",
    ),
    heartbeat: float = typer.Option(5.0, min=0.2, help="Seconds between heartbeats."),
    sample: float = typer.Option(
        1.0, min=0, help="Seconds between energy samples (0 turns energy telemetry off)."
    ),
    drain_grace: float = typer.Option(
        60.0,
        min=0,
        help="Seconds jobs get to end (checkpointing meanwhile) when the node is stopped or "
        "reclaimed; jobs still running then are requeued and resume elsewhere.",
    ),
    busy_file: Path | None = typer.Option(
        None,
        "--busy-file",
        help="The owner is busy while this file exists: the node is drained at once (a hook "
        "for screen-lock or presence tools: touch it when the owner is back, remove it when "
        "they are away).",
    ),
    busy_cpu: float | None = typer.Option(
        None,
        "--busy-cpu",
        min=1,
        max=100,
        help="Reclaim the node when the owner's CPU use (everything but the agent, its Ray "
        "node and pool jobs, in % of all logical CPUs) stays at or above this for --busy-after. "
        "Off by default: the agent cannot tell the owner from other services (backups, another "
        "agent, a pool server on the same host), so on a machine that only donates it would "
        "evict jobs for nothing; on a desktop, 50 is a good start. Idle again below half of it.",
    ),
    busy_after: float = typer.Option(
        10.0,
        "--busy-after",
        min=0,
        help="Seconds the owner's CPU use must stay above --busy-cpu (the busy file acts at once).",
    ),
    idle_after: float = typer.Option(
        300.0,
        "--idle-after",
        min=0,
        help="Seconds the owner must be idle (no busy file, CPU below half of --busy-cpu) before "
        "a reclaimed node rejoins the pool.",
    ),
) -> None:
    """Share this machine with the pool: enroll, join Ray, heartbeat; drain on SIGTERM.

    The owner's work wins: `commonpool agent stop`, --busy-file or --busy-cpu drain the node.

    Its jobs get --drain-grace seconds; the rest resume elsewhere from their latest checkpoint.

    After a busy signal the Ray node stops; the agent rejoins once the owner is idle again.

    An https server is verified against the system CAs, or COMMONPOOL_CA_FILE.

    If the pool revokes the node, the agent stops its Ray node and exits with code 3.
    """
    if ctx.invoked_subcommand is not None:
        return
    from commonpool.workers.agent.main import Agent, AgentConfig, NodeRevoked
    from commonpool.workers.agent.pidfile import AgentAlreadyRunning, pid_file, pid_file_for
    from commonpool.workers.agent.probe import (
        address_towards,
        donated,
        load_nvml,
        machine_name,
        probe,
    )
    from commonpool.workers.sandbox import SandboxError

    state_dir = default_state_dir()
    have = probe(load_nvml())
    try:
        shared = donated(
            have, cpus=cpus, gpus=gpus, memory_bytes=parse_memory(memory) if memory else None
        )
    except ValueError as exc:
        render.err_console.print(f"[red]{exc}[/]")
        raise typer.Exit(EXIT_USAGE) from exc
    server_url = server or get_settings().server_url
    config = AgentConfig(
        server=server_url,
        state_file=_state_file(state_file),
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
        node_ip=node_ip or address_towards(server_url),
        log_dir=state_dir / "logs",
        job_user=job_user,
        ca_file=get_settings().ca_file,
        busy_file=busy_file.expanduser().absolute() if busy_file else None,
        busy_cpu=busy_cpu,
        busy_after_s=busy_after,
        idle_after_s=idle_after,
    )
    try:
        worker = Agent(config, on_ready=lambda node_id: print(f"{READY} {node_id}", flush=True))
    except SandboxError as exc:
        render.err_console.print(f"[red]{exc}[/]")
        raise typer.Exit(EXIT_USAGE) from exc
    worker.install_signal_handlers()
    try:
        with pid_file(pid_file_for(config.state_file)):
            worker.run()
    except AgentAlreadyRunning as exc:
        render.err_console.print(f"[red]agent: {exc}[/]")
        raise typer.Exit(EXIT_USAGE) from exc
    except NodeRevoked as exc:
        render.err_console.print(f"[red]agent: {exc.detail}[/]")
        raise typer.Exit(EXIT_API_PROBLEM) from exc


@agent_app.command("stop")
def stop(
    state_file: Path | None = typer.Option(
        None,
        help="The state file of the agent to stop (default: <COMMONPOOL_STATE_DIR>/agent.json).",
    ),
    timeout: float = typer.Option(
        STOP_TIMEOUT_S,
        min=1,
        help="Seconds to wait for the agent to exit (it gives jobs its --drain-grace first).",
    ),
) -> None:
    """Stop this machine's agent: it drains, lets jobs end within its --drain-grace, leaves.

    Jobs still running then are requeued and resume elsewhere from their latest checkpoint.

    Exit 0 once it exited; 1 if none runs with that state file, or it still runs after --timeout.
    """
    import psutil

    from commonpool.workers.agent.pidfile import NoAgentRunning, pid_file_for, stop_agent

    path = pid_file_for(_state_file(state_file))

    def waiting(process: psutil.Process, waited: float) -> None:
        print(f"agent stop: pid {process.pid} still draining after {waited:.0f} s ...", flush=True)

    try:
        process = stop_agent(path, timeout_s=timeout, on_wait=waiting)
    except NoAgentRunning as exc:
        render.err_console.print(f"[red]agent stop: {exc}[/]")
        raise typer.Exit(EXIT_JOB_FAILED) from exc
    except (psutil.AccessDenied, PermissionError) as exc:
        render.err_console.print(
            f"[red]agent stop: not allowed to signal the agent ({exc}); run this as the "
            "agent's user (root for a --job-user agent)[/]"
        )
        raise typer.Exit(EXIT_JOB_FAILED) from exc
    except TimeoutError as exc:
        render.err_console.print(
            f"[red]agent stop: {exc}; it keeps draining (SIGKILL would leave its jobs to "
            "the lease expiry)[/]"
        )
        raise typer.Exit(EXIT_JOB_FAILED) from exc
    print(f"agent stop: the agent (pid {process.pid}) drained its node and exited", flush=True)
