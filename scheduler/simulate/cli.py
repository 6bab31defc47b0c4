"""``commonpool simulate``: a typer command the root CLI registers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..policy.registry import POLICY_NAMES, UnknownPolicyError

SHOWN = ("avg_jct_h", "p95_jct_h", "makespan_h", "avg_queueing_delay_h", "utilization",
         "rho_avg", "rho_max", "jain_projects", "preemptions", "churn_preemptions",
         "work_lost_gpu_h")
CARBON_SHOWN = ("co2e_kg", "flexible_jobs", "flexible_co2e_kg", "avg_jct_flexible_h",
                "avg_jct_inflexible_h", "deadline_misses", "carbon_suspensions",
                "baseline_co2e_kg", "baseline_flexible_co2e_kg", "baseline_avg_jct_inflexible_h",
                "baseline_deadline_misses", "new_deadline_misses", "co2e_saved_kg",
                "co2e_saved_pct", "flexible_co2e_saved_pct", "inflexible_jct_change_pct")


def simulate_command(
    trace: Path = typer.Option(..., "--trace", exists=True, dir_okay=False,
                               help="Gavel/Philly trace file (tab-separated, 7 fields)."),
    policy: str = typer.Option("fifo", "--policy",
                               help=f"Policy name: {', '.join(POLICY_NAMES)}; any of them "
                                    "with '+carbon' (e.g. 'fifo+carbon')."),
    cluster: str = typer.Option("k80:12,p100:12,v100:12", "--cluster",
                                help="GPUs per type, e.g. 'k80:12,v100:12' or with regions "
                                     "'k80:8@GB,k80:4@DE,v100:12@DE'."),
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
    regions: Annotated[str | None, typer.Option(
        "--regions", help="Deal each cluster part's nodes round-robin to these regions, "
                          "e.g. 'GB,DE' (parts with '@REGION' keep theirs).")] = None,
    carbon_dir: Annotated[Path | None, typer.Option(
        "--carbon-dir", file_okay=False,
        help="Directory of <region>_*_ci.csv intensity series (default: the shipped GB/DE "
             "data).")] = None,
    carbon_start: Annotated[str, typer.Option(
        "--carbon-start", help="UTC calendar time of trace time 0.")] = "2020-01-01T00:00",
    forecast_h: Annotated[float, typer.Option(
        "--forecast-h", help="Forecast horizon the policy sees (hours).")] = 72.0,
    forecast_noise: Annotated[float, typer.Option(
        "--forecast-noise", help="Forecast error: each point x (1 + U(-n, n)), e.g. 0.2.")] = 0.0,
    flexible: Annotated[float, typer.Option(
        "--flexible", help="Fraction of trace jobs that are carbon-aware with a deadline "
                           "(seeded).")] = 0.0,
    deadline_factor: Annotated[float, typer.Option(
        "--deadline-factor", help="Flexible deadline = arrival + max(k x isolated runtime on "
                                  "the slowest usable type, runtime + min slack).")] = 3.0,
    min_slack_h: Annotated[float, typer.Option(
        "--min-slack-h", help="Least slack of a flexible job (hours).")] = 24.0,
    estimate_error: Annotated[float, typer.Option(
        "--estimate-error", min=1.0,
        help="Runtime estimates (backfill, srpt, carbon) off by a per-job factor, "
             "log-uniform in [1/E, E]; 1 = exact.")] = 1.0,
    compare: Annotated[bool, typer.Option(
        "--compare/--no-compare",
        help="For X+carbon also run X and report the carbon saved.")] = True,
) -> None:
    """Replay a trace through a placement policy and report JCT, fairness and utilization.

    With regions (in --cluster or --regions) it also reports gCO2e, deadline misses of the
    flexible jobs and, for X+carbon, what the carbon layer saved over X.
    """
    # Imported here: every `commonpool` call builds this command, few run it.
    from .carbon import parse_regions
    from .cluster import parse_cluster
    from .run import carbon_setup, simulate

    region_list = parse_regions(regions) if regions else []
    carbon = None
    if region_list or "@" in cluster:
        names = sorted({n.region for n in parse_cluster(cluster, gpus_per_node, region_list)
                        if n.region})
        carbon = carbon_setup(names, carbon_dir=carbon_dir, start=carbon_start,
                              forecast_h=forecast_h, noise=forecast_noise, flexible=flexible,
                              deadline_factor=deadline_factor, min_slack_h=min_slack_h,
                              seed=seed)
    try:
        report = simulate(trace, policy, cluster, churn=churn, seed=seed, out=out,
                          gpus_per_node=gpus_per_node, throughputs=throughputs,
                          regions=region_list, carbon=carbon, compare=compare,
                          estimate_error=estimate_error)
    except UnknownPolicyError as err:
        raise typer.BadParameter(str(err), param_hint="--policy") from err
    summary = {k: v for k, v in report.items() if not isinstance(v, list | dict)}
    if as_json:
        typer.echo(json.dumps(summary))
        return
    table = Table(title=f"{policy} on {trace.name}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in SHOWN + tuple(k for k in CARBON_SHOWN if k in report):
        value = report[key]
        table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    Console().print(table)


def main() -> None:  # pragma: no cover - convenience entry for `python -m`
    typer.run(simulate_command)


if __name__ == "__main__":  # pragma: no cover
    main()
