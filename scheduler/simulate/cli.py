"""``commonpool simulate``: a typer command the root CLI registers."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ..policy.registry import POLICY_NAMES, UnknownPolicyError
from .run import simulate

SHOWN = ("avg_jct_h", "p95_jct_h", "makespan_h", "avg_queueing_delay_h", "utilization",
         "rho_avg", "rho_max", "jain_projects", "preemptions", "churn_preemptions",
         "work_lost_gpu_h")


def simulate_command(
    trace: Path = typer.Option(..., "--trace", exists=True, dir_okay=False,
                               help="Gavel/Philly trace file (tab-separated, 7 fields)."),
    policy: str = typer.Option("fifo", "--policy",
                               help=f"Policy name: {', '.join(POLICY_NAMES)}."),
    cluster: str = typer.Option("k80:12,p100:12,v100:12", "--cluster",
                                help="GPUs per type, e.g. 'k80:12,v100:12'."),
    churn: str | None = typer.Option(
        None, "--churn",
        help="Donor churn: 'default' or 'up_h=24,down_h=2,checkpoint_s=1800'."),
    seed: int = typer.Option(0, "--seed", help="Seed for churn (results repeat per seed)."),
    out: Path | None = typer.Option(None, "--out", file_okay=False,
                                    help="Directory for the JSON result and HTML plots."),
    gpus_per_node: int = typer.Option(4, "--gpus-per-node", help="GPUs per simulated node."),
    throughputs: Path | None = typer.Option(
        None, "--throughputs", exists=True, help="Throughput table (default: bundled Gavel)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Replay a trace through a placement policy and report JCT, fairness and utilization."""
    try:
        report = simulate(trace, policy, cluster, churn=churn, seed=seed, out=out,
                          gpus_per_node=gpus_per_node, throughputs=throughputs)
    except UnknownPolicyError as err:
        raise typer.BadParameter(str(err), param_hint="--policy") from err
    summary = {k: v for k, v in report.items() if not isinstance(v, list)}
    if as_json:
        typer.echo(json.dumps(summary))
        return
    table = Table(title=f"{policy} on {trace.name}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in SHOWN:
        value = report[key]
        table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    Console().print(table)


def main() -> None:  # pragma: no cover - convenience entry for `python -m`
    typer.run(simulate_command)


if __name__ == "__main__":  # pragma: no cover
    main()
