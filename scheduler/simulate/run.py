"""One call from (trace, policy name, cluster spec) to a report: what the CLI and tests use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..policy.registry import make_policy
from ..policy.throughput import ThroughputTable
from .cluster import ChurnModel, parse_cluster
from .engine import Simulator
from .report import summarize, write_html, write_json
from .trace import read_trace


def simulate(
    trace: Path | str, policy: str, cluster: str = "k80:12,p100:12,v100:12", *,
    churn: str | None = None, seed: int = 0, gpus_per_node: int = 4,
    throughputs: Path | str | None = None, out: Path | None = None,
    max_jobs: int | None = None, **policy_options: Any,
) -> dict[str, Any]:
    """Run the simulation; with ``out`` (a directory) also write ``<name>.json``/``.html``."""
    table = (ThroughputTable.from_file(str(throughputs)) if throughputs
             else ThroughputTable.bundled())
    if policy.endswith("hetero"):
        policy_options.setdefault("throughputs", table)
    jobs = read_trace(trace)[:max_jobs]
    sim = Simulator(
        jobs, parse_cluster(cluster, gpus_per_node), make_policy(policy, **policy_options),
        table, churn=ChurnModel.parse(churn) if churn is not None else None, seed=seed,
    )
    report = summarize(
        sim, sim.run(), trace=Path(trace).name, policy=policy, cluster=cluster,
        churn=churn, seed=seed,
    )
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        stem = f"{Path(trace).stem}.{policy}{'.churn' if churn else ''}.seed{seed}"
        write_json(report, out / f"{stem}.json")
        write_html(report, out / f"{stem}.html")
    return report
