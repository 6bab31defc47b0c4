"""Heterogeneity-aware type choice (after Gavel), composed over a base policy's order.

The base policy (fifo, backfill, las or fair) still decides *who* goes first and what is
preempted; this layer only decides *which GPU type* each job should prefer. For the jobs
that can start now (the base order's prefix that fits the free GPUs) it solves a small
assignment greedily by regret: the job that loses most by not getting its best type
(normalised throughput best minus second best) picks first. So the job with the biggest
v100/k80 speedup gets the v100, and jobs that hardly care take what is left. Types where a
job cannot run at all (throughput 0) are never offered; job types missing from the table
get no preference and fall back to the base policy's default choice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from .base import Policy
from .cycle import TypePrefs
from .migrate import rebalance
from .plan import Plan
from .snapshot import ClusterSnapshot, JobView
from .throughput import ThroughputTable

# A move must raise the job's rate by a tenth of its best rate (a swap: the pair's sum), and
# a running job moves at most once per 30 minutes: a restart costs its checkpoint interval.
MIGRATE_MIN_GAIN = 0.1
MIGRATE_MIN_RUN_S = 1800.0


def normalized_rates(
    table: ThroughputTable, job: JobView, types: tuple[str, ...]
) -> dict[str, float] | None:
    """Throughput on each allowed type relative to the job's best type (best = 1.0)."""
    gpus = job.per_worker.gpus * job.workers_min
    if gpus == 0:
        return None
    allowed = types if job.gpu_type is None else tuple(t for t in types if t == job.gpu_type)
    rates = {t: table.rate(job.job_type, gpus, t) for t in allowed}
    if any(r is None for r in rates.values()) or not rates:
        return None
    best = max(rates.values())  # type: ignore[type-var]
    if not best:
        return {}  # measured, and it cannot run on any of these types
    return {t: r / best for t, r in rates.items() if r}  # type: ignore[operator]


def plan_type_prefs(
    snapshot: ClusterSnapshot, order: list[JobView], table: ThroughputTable
) -> dict[str, TypePrefs]:
    """Preferred GPU types per job id (best first; unusable types left out)."""
    free: dict[str, int] = {}
    for n in snapshot.nodes:
        if n.gpu_type is not None and n.total.gpus > 0:
            free[n.gpu_type] = free.get(n.gpu_type, 0) + max(0, n.free.gpus)
    types = tuple(sorted(free))
    budget = sum(free.values())
    prefs: dict[str, TypePrefs] = {}
    window: list[tuple[float, int, JobView]] = []
    for rank, job in enumerate(order):
        norm = normalized_rates(table, job, types)
        if norm is None:
            continue
        by_speed = tuple(sorted(norm, key=lambda t: (-norm[t], t)))
        prefs[job.id] = by_speed
        if not by_speed:
            continue
        gpus = job.per_worker.gpus * job.workers_min
        if gpus <= budget:
            budget -= gpus
            second = norm[by_speed[1]] if len(by_speed) > 1 else 0.0
            window.append((-(1.0 - second), rank, job))
    window.sort(key=lambda w: (w[0], w[1]))
    for _, _, job in window:
        gpus = job.per_worker.gpus * job.workers_min
        for t in prefs[job.id]:
            if free[t] >= gpus:
                free[t] -= gpus
                prefs[job.id] = (t, *(x for x in prefs[job.id] if x != t))
                break
    return prefs


class HeteroPolicy:
    """A base policy whose jobs prefer the GPU type where they progress fastest."""

    def __init__(
        self,
        base: str | Policy = "las",
        throughputs: ThroughputTable | Mapping[str, Any] | None = None,
        *,
        migrate_min_gain: float | None = MIGRATE_MIN_GAIN,
        migrate_min_run_s: float = MIGRATE_MIN_RUN_S,
        **base_options: Any,
    ) -> None:
        """`migrate_min_gain`: see `migrate.rebalance` (None: never move a running job)."""
        from .registry import make_base  # the registry imports this module

        self.base = make_base(base, **base_options) if isinstance(base, str) else base
        if throughputs is None:
            self.table = ThroughputTable.bundled()
        elif isinstance(throughputs, ThroughputTable):
            self.table = throughputs
        else:
            self.table = ThroughputTable(throughputs)
        self.name = f"{self.base.name}+hetero"
        self.migrate_min_gain = migrate_min_gain
        self.migrate_min_run_s = migrate_min_run_s

    def plan(self, snapshot: ClusterSnapshot) -> Plan:
        order = self.base.order(snapshot)  # type: ignore[attr-defined]
        prefs = plan_type_prefs(snapshot, order, self.table)
        plan = replace(self.base, type_prefs=prefs).plan(snapshot)  # type: ignore[type-var]
        if self.migrate_min_gain is None:
            return plan
        types = tuple(sorted({n.gpu_type for n in snapshot.nodes if n.gpu_type}))
        norms: dict[str, dict[str, float]] = {}
        placed = {p.job_id for p in plan.placements}
        holders = (
            *(j for j in snapshot.queued if j.id in placed),
            *(r.job for r in snapshot.running),
        )
        for job in holders:  # only jobs holding slots may move: not the whole queue
            norm = normalized_rates(self.table, job, types)
            if norm:
                norms[job.id] = norm
        return rebalance(
            snapshot,
            plan,
            norms,
            min_gain=self.migrate_min_gain,
            min_run_s=self.migrate_min_run_s,
        )
