"""Weighted fair share across projects (dominant-resource style) with donor credits.

Projects are served by progressive filling: the project with the smallest weighted
dominant share gets its next job (priority, then submission order, inside the project).
Weights are the configured project weights plus donor credits (see ``credits.py``).

Preemption is a last resort with two guards: only a project *under* its entitled share may
preempt, only jobs of projects *over* their share that have run for ``grace_s`` are
victims, and a victim is taken only while its project stays at least as well off
(weighted) as the preemptor will be. The last guard is what stops two projects from
preempting each other back and forth.

Progressive filling alone starves gangs: a job that does not fit is skipped, and the GPUs
that free up go to the smaller jobs behind it, cycle after cycle (on the shared traces
8-GPU jobs with minutes of work waited days: finish-time fairness rho up to 347). So a job
that has waited ``starve_s`` and does not fit is served first, oldest first: it may
checkpoint running jobs with more than twice its work left (runtime estimates, as SRPT)
that are past their grace, of its own project (the younger jobs that took its share) or,
while its project is under its share, of over-share projects, as above; the first such job
that still cannot start gets an EASY reservation (``backfill.plan_reservation``): the part
of the capacity it will use that is free now is held, and other jobs use held capacity only
if their estimate ends before it can start.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass

from .backfill import Reservation, ends_before, place_in_held, plan_reservation
from .credits import effective_weights
from .cycle import Cycle, TypePrefs
from .ordering import fifo_key
from .plan import Plan
from .reasons import never_fits
from .snapshot import ClusterSnapshot, JobView, Resources, RunningJobView
from .srpt import remaining_work

EPS = 1e-9
# A starving job takes the slots only of jobs with more than this times its work left: a
# short gang goes before long jobs, never before one about as long (no ping-pong).
STARVING_WORK_RATIO = 2.0


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
    starve_s: float | None = 3600.0  # None: nothing special for starving jobs
    max_starving: int = 16  # starving jobs served per cycle, oldest first
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

        prefs = self.type_prefs or {}
        reservation = self._serve_starving(cycle, queues, usage, prefs, capacity, entitled)
        heap = [(share(p) / weights[p], p) for p in sorted(queues) if queues[p]]
        heapq.heapify(heap)
        while heap:
            _, p = heapq.heappop(heap)
            job = queues[p].pop()
            types = prefs.get(job.id)
            placed = cycle.try_place(job, types) is not None
            if not placed and reservation is not None and ends_before(
                job, snapshot.now, reservation.shadow
            ):
                place_in_held(cycle, job, types, reservation)
                placed = job.id in cycle.placements
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

    def _serve_starving(
        self, cycle: Cycle, queues: dict[str, list[JobView]], usage: dict[str, Resources],
        prefs: dict[str, TypePrefs], capacity: Resources, entitled: dict[str, float],
    ) -> Reservation | None:
        """Serve the oldest jobs that waited ``starve_s`` and do not fit (module docstring):
        each may checkpoint jobs with more than twice its work left (of its own project, or
        of over-share projects while its project is under its share); the first that still
        cannot start gets the cycle's reservation. Served jobs leave their queue."""
        if self.starve_s is None:
            return None
        now = cycle.snapshot.now
        starving = heapq.nsmallest(
            self.max_starving,
            (j for q in queues.values() for j in q if now - j.submitted_at >= self.starve_s),
            key=fifo_key,
        )
        reservation: Reservation | None = None
        for job in starving:
            types = prefs.get(job.id)
            if cycle.find(job, types) is not None or never_fits(
                cycle.pool, job, cycle.candidate_types(job)
            ):
                continue  # it fits (progressive filling decides), or it never will
            waited = f"starving for {(now - job.submitted_at) / 3600:.1f} h"
            if self.preempt and self._preempt_for_starving(
                cycle, job, types, waited, usage, capacity, entitled
            ):
                queues[job.project].remove(job)
                usage[job.project] += job.min_demand
            elif reservation is None:
                queues[job.project].remove(job)
                reservation = plan_reservation(cycle, job, types)
                cycle.wait(job, f"{waited}; {reservation.describe()}")
        return reservation

    def _preempt_for_starving(
        self, cycle: Cycle, job: JobView, types: TypePrefs | None, waited: str,
        usage: dict[str, Resources], capacity: Resources, entitled: dict[str, float],
    ) -> bool:
        """Place a starving job on the slots of jobs with far more work left, if that frees
        enough; only jobs with an estimate and past their grace are taken."""
        now = cycle.snapshot.now
        work = remaining_work(job)
        under = dominant_share(usage[job.project] + job.min_demand, capacity) <= (
            entitled[job.project] + EPS
        )
        takable = {job.project} | (set(_over_share(usage, capacity, entitled)) if under else set())
        victims = [
            r for r in cycle.snapshot.running
            if r.job.project in takable
            and r.job.id not in cycle.preemptions
            and now - r.started_at >= self.grace_s
            and r.job.estimated_runtime_s is not None
            and remaining_work(r.job) > STARVING_WORK_RATIO * work
        ]
        reason = f"preempted for job {job.id} ({waited}), which has far less work left"
        return bool(victims) and _preempt(cycle, job, victims, reason, types, usage)

    def _preempt_for(
        self, cycle: Cycle, job: JobView, types: TypePrefs | None, preemptor_share: float,
        usage: dict[str, Resources], capacity: Resources, weights: dict[str, float],
        entitled: dict[str, float],
    ) -> bool:
        now = cycle.snapshot.now
        margin = _over_share(usage, capacity, entitled)  # once per call, not per running job
        over = [
            r for r in cycle.snapshot.running
            if r.job.project in margin
            and r.job.project != job.project
            and r.job.id not in cycle.preemptions
            and now - r.started_at >= self.grace_s
        ]
        over.sort(key=lambda r: (
            margin[r.job.project], r.job.priority, -r.started_at, r.job.id,
        ))
        victims: list[RunningJobView] = []
        left = dict(usage)
        for run in over:
            q = run.job.project
            after = left[q] - run.job.per_worker.scaled(len(run.workers))
            if dominant_share(after, capacity) / weights[q] + EPS >= preemptor_share:
                victims.append(run)
                left[q] = after
        reason = f"preempted for project {job.project}, which is under its fair share"
        return _preempt(cycle, job, victims, reason, types, usage)


def _over_share(
    usage: dict[str, Resources], capacity: Resources, entitled: dict[str, float]
) -> dict[str, float]:
    """Projects over their entitlement -> entitlement minus share (most over first)."""
    shares = {p: dominant_share(u, capacity) for p, u in usage.items()}
    return {p: entitled[p] - s for p, s in shares.items() if s > entitled.get(p, 0.0) + EPS}


def _preempt(
    cycle: Cycle, job: JobView, victims: list[RunningJobView], reason: str,
    types: TypePrefs | None, usage: dict[str, Resources],
) -> bool:
    """Place `job` on the slots of some of `victims`; their projects' usage goes down."""
    before = set(cycle.preemptions)
    if cycle.place_with_victims(job, victims, reason, types) is None:
        return False
    for job_id in set(cycle.preemptions) - before:
        run = cycle.running[job_id]
        usage[run.job.project] -= run.job.per_worker.scaled(len(run.workers))
    return True
