"""Pool admin commands on nodes: nodes, drain, cordon, uncordon, revoke, enroll-token, pool."""

from __future__ import annotations

import typer

from . import render
from .context import JsonOption, state


def nodes(as_json: bool = JsonOption) -> None:
    """List the pool's nodes."""
    with state.client() as client:
        items = client.list_nodes()
    if as_json:
        render.print_json(items)
        return
    rows = [
        (
            n.id,
            n.name,
            render.state(n.state),
            f"{n.cpus:g}",
            render.gib(n.memory_bytes),
            f"{n.gpus} {n.gpu_type or ''}".strip(),
            n.region or "-",
            n.lease_epoch,
            render.age(n.last_heartbeat_at),
        )
        for n in items
    ]
    render.console.print(
        render.table(
            "nodes",
            ["ID", "NAME", "STATE", "CPUS", "MEMORY", "GPUS", "REGION", "EPOCH", "HEARTBEAT"],
            rows,
        )
    )


def drain(
    node_id: str = typer.Argument(..., help="Node id."),
    reason: str | None = typer.Option(None, help="Why."),
    as_json: bool = JsonOption,
) -> None:
    """Stop placing work on a node; what runs there may finish."""
    with state.client() as client:
        node = client.drain_node(node_id, reason)
    render.print_json(node) if as_json else render.console.print(
        f"{node.id} {render.state(node.state)}"
    )


def cordon(
    node_id: str = typer.Argument(..., help="Node id."),
    reason: str | None = typer.Option(None, help="Why."),
    as_json: bool = JsonOption,
) -> None:
    """Mark a node unschedulable (an admin hold); running work is left alone."""
    with state.client() as client:
        node = client.cordon_node(node_id, reason)
    render.print_json(node) if as_json else render.console.print(
        f"{node.id} {render.state(node.state)}"
    )


def uncordon(
    node_id: str = typer.Argument(..., help="Node id."), as_json: bool = JsonOption
) -> None:
    """Make a drained or cordoned node schedulable again."""
    with state.client() as client:
        node = client.uncordon_node(node_id)
    render.print_json(node) if as_json else render.console.print(
        f"{node.id} {render.state(node.state)}"
    )


def revoke(
    node_id: str = typer.Argument(..., help="Node id."),
    reason: str | None = typer.Option(None, help="Why (kept in the audit log)."),
    as_json: bool = JsonOption,
) -> None:
    """Revoke a node for good: its credential is refused, its jobs are requeued elsewhere."""
    with state.client() as client:
        node = client.revoke_node(node_id, reason)
    render.print_json(node) if as_json else render.console.print(
        f"{node.id} {render.state(node.state)}"
    )


def enroll_token(
    ttl: int = typer.Option(3600, min=1, help="Seconds the token stays valid."),
    as_json: bool = JsonOption,
) -> None:
    """Create a single-use enrollment token for one donor machine."""
    with state.client() as client:
        token = client.create_enrollment_token(ttl)
    if as_json:
        render.print_json(token)
    else:
        render.console.print(
            f"enrollment token (shown once, valid until {token.expires_at:%Y-%m-%d %H:%M} UTC):"
        )
        print(token.token)


def pool(as_json: bool = JsonOption) -> None:
    """Counts by state, free/used resources, and carbon saved by carbon-aware timing."""
    with state.client() as client:
        summary = client.pool_summary()
    if as_json:
        render.print_json(summary)
        return
    c = render.console
    c.print(
        "jobs:  "
        + "  ".join(f"{render.state(k)} {v}" for k, v in summary.jobs_by_state.items() if v)
    )
    c.print(
        "nodes: "
        + "  ".join(f"{render.state(k)} {v}" for k, v in summary.nodes_by_state.items() if v)
    )
    for label, r in (("total", summary.total), ("used", summary.used), ("free", summary.free)):
        c.print(f"{label:6} {r.cpus:g} cpus, {render.gib(r.memory_bytes)}, {r.gpus} gpus")
    c.print(render.carbon_saved_line(summary.carbon_saved))
