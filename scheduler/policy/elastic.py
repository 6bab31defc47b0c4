"""Elastic jobs grow back: a job running with fewer than `workers_max` workers (it started
small, or lost a node) is checkpointed and relaunched at full size once the pool has room
for all its workers and nothing is waiting.

A layer over any policy, applied by `make_policy`, so the live loop and the simulator grow
jobs the same way. The regrow is a voluntary preemption: it never costs the job an attempt,
and the job resumes from its latest checkpoint. Growth never takes capacity a queued job
could use (no pending job, no other preemption this cycle), regrows one job per cycle, and
only after the job ran `grow_after_s` at its size, so a flapping node cannot make it thrash.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from .base import Policy
from .fit import FreePool
from .plan import Plan, Preemption
from .snapshot import ClusterSnapshot, RunningJobView

GROW_AFTER_S = 60.0


@dataclass
class ElasticGrowth:
    inner: Policy
    grow_after_s: float = GROW_AFTER_S

    @property
    def name(self) -> str:
        return self.inner.name

    def plan(self, snapshot: ClusterSnapshot) -> Plan:
        plan = self.inner.plan(snapshot)
        if plan.pending_reasons or plan.preemptions:
            return plan
        grow = next(self._regrowable(snapshot, plan), None)
        return plan if grow is None else replace(plan, preemptions=(grow,))

    def _regrowable(self, snapshot: ClusterSnapshot, plan: Plan) -> Iterator[Preemption]:
        pool = FreePool(snapshot.nodes)
        for placement in plan.placements:
            for worker in placement.workers:
                pool.take(pool.index_of[worker.node_id], worker.resources)
        for run in sorted(snapshot.running, key=lambda r: (r.started_at, r.job.id)):
            job = run.job
            if len(run.workers) >= job.workers_max or not job.preemptible:
                continue
            if snapshot.now - run.started_at < self.grow_after_s:
                continue
            if _fits_at_full_size(pool, run, snapshot):
                yield Preemption(
                    job.id,
                    f"elastic: growing from {len(run.workers)} to {job.workers_max} workers "
                    "(resumes from its checkpoint)",
                )


def _fits_at_full_size(pool: FreePool, run: RunningJobView, snapshot: ClusterSnapshot) -> bool:
    """Would all `workers_max` workers fit if the job's own workers were released first?"""
    mine = [
        (pool.index_of[w.node_id], w.resources) for w in run.workers if w.node_id in pool.index_of
    ]
    for index, resources in mine:
        pool.release(index, resources)
    try:
        gpu_type = run.job.gpu_type
        if gpu_type is None and run.job.per_worker.gpus > 0 and mine:
            gpu_type = snapshot.nodes[mine[0][0]].gpu_type
        full = replace(run.job, workers_min=run.job.workers_max)
        return pool.find(full, gpu_type) is not None
    finally:
        for index, resources in mine:
            pool.take(index, resources)
