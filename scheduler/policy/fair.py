"""Weighted fair share across projects (dominant-resource style) with donor credits.

Projects are served by progressive filling: the project with the smallest weighted
dominant share gets its next job (priority, then submission order, inside the project).
Weights are the configured project weights plus donor credits (see ``credits.py``).

Preemption is a last resort with two guards: only a project *under* its entitled share may
preempt, only jobs of projects *over* their share that have run for ``grace_s`` are
victims, and a victim is taken only while its project stays at least as well off
(weighted) as the preemptor will be. The last guard is what stops two projects from
preempting each other back and forth.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass

from .credits import effective_weights
from .cycle import Cycle, TypePrefs
from .ordering import fifo_key
from .plan import Plan
from .snapshot import ClusterSnapshot, JobView, Resources, RunningJobView

EPS = 1e-9


def dominant_share(used: Resources, capacity: Resources) -> float:
    """Largest fraction of any resource the usage takes."""
    shares = [0.0]
    if capacity.gpus > 0:
        shares.append(used.gpus / capacity.gpus)
    if capacity.cpus > 0:
        shares.append(used.cpus / capacity.cpus)
    if capacity.memory_bytes > 0:
        shares.append(used.memory_bytes / capacity.memory_bytes)
    return max(shares)


def water_fill(demand: dict[str, float], weight: dict[str, float]) -> dict[str, float]:
    """Weighted max-min split of one unit of dominant share, capped by each demand."""
    entitled: dict[str, float] = {}
    left = 1.0
    active = sorted(demand, key=lambda p: (demand[p] / max(weight[p], EPS), p))
    for k, p in enumerate(active):
        w_left = sum(weight[q] for q in active[k:])
        fair = left * weight[p] / w_left if w_left > 0 else 0.0
        entitled[p] = min(demand[p], fair)
        left -= entitled[p]
    return entitled


@dataclass(frozen=True, slots=True)
class FairPolicy:
    """Weighted DRF across projects; ``credit_weight`` scales the donor bonus."""

    name: str = "fair"
    preempt: bool = True
    grace_s: float = 600.0
    credit_weight: float = 1.0
    type_prefs: dict[str, TypePrefs] | None = None  # set by ``hetero`` composition

    def order(self, snapshot: ClusterSnapshot) -> list[JobView]:
        """A static approximation of the offer order (used by ``hetero``'s type choice)."""
        return sorted(snapshot.queued, key=fifo_key)

    def plan(self, snapshot: ClusterSnapshot) -> Plan:
        cycle = Cycle(snapshot)
        capacity = sum((n.total for n in snapshot.nodes), Resources())
        usage: dict[str, Resources] = defaultdict(Resources)
        for run in snapshot.running:
            usage[run.job.project] += run.job.per_worker.scaled(len(run.workers))
        queues: dict[str, list[JobView]] = defaultdict(list)
        for job in sorted(snapshot.queued, key=fifo_key, reverse=True):
            queues[job.project].append(job)  # pop() from the end gives the first job
        projects = set(usage) | set(queues)
        weights = effective_weights(
            projects, snapshot.project_weights, snapshot.donor_credits, self.credit_weight
        )
        demand = {
            p: min(1.0, dominant_share(
                usage[p] + sum((j.min_demand for j in queues[p]), Resources()), capacity))
            for p in projects
        }
        entitled = water_fill(demand, weights)

        def share(p: str) -> float:
            return dominant_share(usage[p], capacity)

        heap = [(share(p) / weights[p], p) for p in sorted(queues) if queues[p]]
        heapq.heapify(heap)
        prefs = self.type_prefs or {}
        while heap:
            _, p = heapq.heappop(heap)
            job = queues[p].pop()
            types = prefs.get(job.id)
            placed = cycle.try_place(job, types) is not None
            if not placed and self.preempt:
                after = dominant_share(usage[p] + job.min_demand, capacity)
                if after <= entitled[p] + EPS:
                    placed = self._preempt_for(
                        cycle, job, types, after / weights[p], usage, capacity, weights, entitled
                    )
            if placed:
                usage[p] += job.min_demand
            elif share(p) >= entitled[p] - EPS:
                cycle.wait(job, f"project {p} over fair share (dominant share {share(p):.2f} "
                                f">= entitled {entitled[p]:.2f}); {cycle.reasons[job.id]}")
            if queues[p]:
                heapq.heappush(heap, (share(p) / weights[p], p))
        return cycle.plan()

    def _preempt_for(
        self, cycle: Cycle, job: JobView, types: TypePrefs | None, preemptor_share: float,
        usage: dict[str, Resources], capacity: Resources, weights: dict[str, float],
        entitled: dict[str, float],
    ) -> bool:
        now = cycle.snapshot.now
        over = [
            r for r in cycle.snapshot.running
            if r.job.project != job.project
            and r.job.id not in cycle.preemptions
            and now - r.started_at >= self.grace_s
            and dominant_share(usage[r.job.project], capacity) > entitled[r.job.project] + EPS
        ]
        over.sort(key=lambda r: (
            entitled[r.job.project] - dominant_share(usage[r.job.project], capacity),
            r.job.priority, -r.started_at, r.job.id,
        ))
        victims: list[RunningJobView] = []
        left = dict(usage)
        for run in over:
            q = run.job.project
            after = left[q] - run.job.per_worker.scaled(len(run.workers))
            if dominant_share(after, capacity) / weights[q] + EPS >= preemptor_share:
                victims.append(run)
                left[q] = after
        before = set(cycle.preemptions)
        reason = f"preempted for project {job.project}, which is under its fair share"
        if cycle.place_with_victims(job, victims, reason, types) is None:
            return False
        for job_id in set(cycle.preemptions) - before:
            run = cycle.running[job_id]
            usage[run.job.project] -= run.job.per_worker.scaled(len(run.workers))
        return True
