"""One call from (trace, policy name, cluster spec) to a report: what the CLI and tests use."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from ..carbon.reading import IntensityProvider, as_utc
from ..policy.carbon import CARBON_OPTIONS
from ..policy.registry import CARBON_SUFFIX, make_policy
from ..policy.throughput import ThroughputTable
from .carbon import DEFAULT_START, CarbonSetup, FlexibleJobs, RegionSeries, load_series
from .cluster import ChurnModel, parse_cluster
from .engine import Simulator
from .report import summarize, write_html, write_json
from .trace import read_trace

# Numbers compared between ``X+carbon`` and ``X`` on the same trace, pool and flexible jobs.
COMPARED = ("co2e_kg", "flexible_co2e_kg", "inflexible_co2e_kg", "avg_jct_h",
            "avg_jct_flexible_h", "avg_jct_inflexible_h", "deadline_misses")


def carbon_setup(
    regions: list[str], *, series: dict[str, RegionSeries] | None = None,
    carbon_dir: Path | str | None = None, provider: IntensityProvider | None = None,
    start: datetime | str | None = None, forecast_h: float = 72.0, noise: float = 0.0,
    flexible: float = 0.0, deadline_factor: float = 3.0, min_slack_h: float = 24.0,
    seed: int = 0,
) -> CarbonSetup:
    """A ``CarbonSetup`` for these regions (default series: the shipped GB/DE CSVs)."""
    begin = as_utc(datetime.fromisoformat(start)) if isinstance(start, str) else (
        as_utc(start) if start else DEFAULT_START)
    if series is None:
        series = load_series(regions, directory=Path(carbon_dir) if carbon_dir else None,
                             provider=provider, start=begin)
    return CarbonSetup(series, begin, forecast_h, noise, seed,
                       FlexibleJobs(flexible, deadline_factor, min_slack_h, seed))


def simulate(
    trace: Path | str, policy: str, cluster: str = "k80:12,p100:12,v100:12", *,
    churn: str | None = None, seed: int = 0, gpus_per_node: int = 4,
    throughputs: Path | str | None = None, out: Path | None = None,
    max_jobs: int | None = None, regions: list[str] | None = None,
    carbon: CarbonSetup | None = None, compare: bool = True, estimate_error: float = 1.0,
    **policy_options: Any,
) -> dict[str, Any]:
    """Run the simulation; with ``out`` (a directory) also write ``<name>.json``/``.html``.

    With ``carbon`` (or ``regions``, which loads the shipped series) the report has gCO2e,
    deadline misses and the intensity/load series; for ``X+carbon`` with ``compare`` it
    also runs ``X`` on the same inputs and reports what the carbon layer saved.
    """
    table = (ThroughputTable.from_file(str(throughputs)) if throughputs
             else ThroughputTable.bundled())
    if "hetero" in policy:
        policy_options.setdefault("throughputs", table)
    jobs = read_trace(trace)[:max_jobs]
    nodes = parse_cluster(cluster, gpus_per_node, regions or ())
    if carbon is None and any(n.region for n in nodes):
        carbon = carbon_setup(sorted({n.region for n in nodes if n.region}), seed=seed)

    def run(name: str) -> dict[str, Any]:
        sim = Simulator(
            jobs, nodes, make_policy(name, **policy_options), table,
            churn=ChurnModel.parse(churn) if churn is not None else None, seed=seed,
            carbon=carbon, estimate_error=estimate_error,
        )
        return summarize(sim, sim.run(), trace=Path(trace).name, policy=name,
                         cluster=cluster, churn=churn, seed=seed,
                         estimate_error=estimate_error)

    report = run(policy)
    key = policy.strip().lower()
    if carbon is not None and compare and key.endswith(CARBON_SUFFIX):
        for option in CARBON_OPTIONS:  # the baseline is the base policy with its own options
            policy_options.pop(option, None)
        report.update(carbon_comparison(report, run(key.removesuffix(CARBON_SUFFIX))))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        stem = f"{Path(trace).stem}.{policy}{'.churn' if churn else ''}.seed{seed}"
        write_json(report, out / f"{stem}.json")
        write_html(report, out / f"{stem}.html")
    return report


def carbon_comparison(with_carbon: dict[str, Any], without: dict[str, Any]) -> dict[str, Any]:
    """``baseline_*`` numbers and the savings of ``X+carbon`` over ``X``."""

    def saved(key: str) -> float:
        base = without[key]
        return 100.0 * (base - with_carbon[key]) / base if base else 0.0

    def change(key: str) -> float:
        base = without[key]
        return 100.0 * (with_carbon[key] - base) / base if base else 0.0

    return {
        **{f"baseline_{k}": without[k] for k in COMPARED},
        "co2e_saved_kg": without["co2e_kg"] - with_carbon["co2e_kg"],
        "co2e_saved_pct": saved("co2e_kg"),
        "flexible_co2e_saved_pct": saved("flexible_co2e_kg"),
        "inflexible_jct_change_pct": change("avg_jct_inflexible_h"),
        # misses the carbon layer caused: jobs that met their deadline without it
        "new_deadline_misses": len(set(with_carbon["missed_deadline_jobs"])
                                   - set(without["missed_deadline_jobs"])),
    }
