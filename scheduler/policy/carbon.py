"""Carbon-aware layer (``X+carbon``): shift flexible jobs to cleaner power, in time and space.

Composes over any other policy (``fifo+carbon``, ``las+carbon``, ``fair+hetero+carbon``): the
base still decides order, fit and preemption; this layer only decides *when* a flexible job
may be offered and *which region's nodes* are tried first. It reads the forecast from the
snapshot (``ClusterSnapshot.carbon_forecast``), so it stays pure. One cycle, in phases:

1. **Run threshold** per flexible job (carbon-aware, a deadline and a runtime estimate ``d``):
   it must finish by ``F = deadline - safety * d - guard_s``, so it needs the cleanest
   fraction ``d / (F - now)`` of the forecast slots until ``F`` (cleanest allowed region per
   slot); that quantile is its threshold. Inflexible jobs (carbon ``ignore``, no deadline or
   no estimate) pass straight to the base: never delayed by this layer.
2. **Suspend** a running flexible job at a checkpoint when its region is over the threshold
   by ``suspend_gain`` and stays over it for ``min_pause_s`` (at most ``max_suspensions``
   times per job); **defer** a queued one while the cleanest region with room is over its
   threshold, with a reason such as ``waiting for cleaner power, expected start 03:00 UTC
   in GB, saves ~40% (deadline ...)``; otherwise it is released to the base.
3. **Urgent first**: flexible jobs at their latest start are placed before the base runs
   (earliest deadline first), checkpointing flexible jobs with slack if needed and, as a
   last resort, inflexible ones; running flexible jobs without slack are not the base's
   to preempt, and released jobs the base leaves waiting are reviewed at their latest start.
4. **Cleaner regions first**: nodes are offered cleanest region (intensity now) first, so
   within a GPU type - equal throughput - the base's fit lands in the cleaner region. The
   type choice itself (fit, ``+hetero``) is left alone: throughput before carbon.

Every constant is relative (gains, safety factor) or a duration, never a g/kWh level, so
the method carries over to grids with other levels and daily shapes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from .base import Policy
from .cycle import Cycle
from .forecast import IntensityForecast
from .plan import Placement, Plan, Preemption
from .snapshot import ClusterSnapshot, JobView, Resources

HOUR = 3600.0
# Keyword options of CarbonPolicy itself (everything else goes to the base policy).
CARBON_OPTIONS = frozenset({"min_gain", "safety", "guard_s", "suspend_gain", "max_suspensions",
                            "min_run_s", "min_pause_s", "review_s"})


@dataclass(frozen=True, slots=True)
class Outlook:
    """A flexible job's time left, seen through the forecast.

    It must run ``d`` seconds before ``latest_finish``; over the slots until then (within the
    horizon) it needs the cleanest fraction ``d / (latest_finish - now)``, so it should run
    whenever intensity is at or below ``threshold`` (the quantile of that fraction).
    """

    must_run: bool
    threshold: float = math.inf
    clean_mean: float = 0.0  # mean g/kWh of the slots it would run in
    next_start: float | None = None  # first later slot at/below the threshold
    next_region: str | None = None


class Grid:
    """The cycle's forecast on one time grid, and the cleanest region per slot (cached)."""

    def __init__(self, fc: Mapping[str, IntensityForecast], now: float) -> None:
        self.fc = fc
        self.now = now
        self.step = max(300.0, min(f.step for f in fc.values()))
        end = max(f.end for f in fc.values())
        n = max(1, math.ceil((end - now) / self.step))
        self.times = now + self.step * np.arange(n)
        self.end = float(self.times[-1] + self.step)
        self.values = {r: f.values(self.times) for r, f in fc.items()}
        self._mins: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]] = {}

    def cleanest(self, regions: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Per slot: the lowest intensity among ``regions`` and which region has it."""
        if regions not in self._mins:
            stack = np.vstack([self.values[r] for r in regions])
            self._mins[regions] = (stack.min(axis=0), stack.argmin(axis=0))
        return self._mins[regions]


def is_flexible(job: JobView) -> bool:
    """Carbon-aware with a deadline and a runtime estimate (needed for a safe latest start)."""
    return (job.carbon_aware and job.deadline is not None
            and job.estimated_runtime_s is not None and job.estimated_runtime_s > 0)


def clock_text(t: float, now: float, epoch_offset_s: float) -> str:
    """``03:00 UTC`` within a day of now, else ``2020-01-03 03:00 UTC``."""
    when = datetime.fromtimestamp(t + epoch_offset_s, UTC)
    fmt = "%H:%M" if t - now < 24 * HOUR else "%Y-%m-%d %H:%M"
    return f"{when.strftime(fmt)} UTC"


class CarbonPolicy:
    """A base policy whose flexible jobs wait for, and move to, cleaner electricity."""

    def __init__(
        self, base: str | Policy = "las", *, min_gain: float = 0.05, safety: float = 0.1,
        guard_s: float = 2 * HOUR, suspend_gain: float = 0.1, max_suspensions: int = 6,
        min_run_s: float = HOUR, min_pause_s: float = 2 * HOUR, review_s: float = HOUR,
        **base_options: Any,
    ) -> None:
        from .registry import make_unlayered  # the registry imports this module

        self.base = make_unlayered(base, **base_options) if isinstance(base, str) else base
        self.name = f"{self.base.name}+carbon"
        self.min_gain = min_gain
        self.safety = safety
        self.guard_s = guard_s
        self.suspend_gain = suspend_gain
        self.max_suspensions = max_suspensions
        self.min_run_s = min_run_s
        self.min_pause_s = min_pause_s
        self.review_s = review_s

    # -- pieces ---------------------------------------------------------------------------
    @staticmethod
    def forecasts(snapshot: ClusterSnapshot) -> dict[str, IntensityForecast]:
        """Per-region forecasts; a region with none but nodes reporting intensity is flat."""
        out = {r: IntensityForecast(p) for r, p in snapshot.carbon_forecast.items() if p}
        for n in snapshot.nodes:
            if n.region and n.region not in out and n.carbon_intensity is not None:
                out[n.region] = IntensityForecast(((snapshot.now, n.carbon_intensity),))
        return out

    def latest_start(self, job: JobView) -> float:
        assert job.deadline is not None and job.estimated_runtime_s is not None
        return job.deadline - job.estimated_runtime_s * (1.0 + self.safety) - self.guard_s

    def outlook(self, job: JobView, regions: tuple[str, ...], grid: Grid) -> Outlook:
        d = job.estimated_runtime_s or 0.0
        latest_finish = self.latest_start(job) + d
        left = latest_finish - grid.now
        if left <= d or not regions:
            return Outlook(must_run=True)
        mins, where = grid.cleanest(regions)
        n = int(np.searchsorted(grid.times, min(latest_finish, grid.end)))
        if n <= 1:
            return Outlook(must_run=True)
        ordered = np.sort(mins[:n])
        k = max(1, math.ceil(len(ordered) * d / left))
        threshold = float(ordered[k - 1])
        later = np.flatnonzero(mins[1:n] <= threshold)
        if len(later) == 0:
            return Outlook(False, threshold, float(ordered[:k].mean()))
        i = int(later[0]) + 1
        return Outlook(False, threshold, float(ordered[:k].mean()), float(grid.times[i]),
                       regions[int(where[i])])

    # -- the cycle ------------------------------------------------------------------------
    def plan(self, snapshot: ClusterSnapshot) -> Plan:
        fc = self.forecasts(snapshot)
        if not fc:
            return self.base.plan(snapshot)  # nothing known: exactly the base policy
        now = snapshot.now
        region_of = {n.id: n.region for n in snapshot.nodes}
        totals = self._totals(snapshot, fc)
        review: list[float] = []

        grid = Grid(fc, now)

        # 1. suspend running flexible jobs whose region enters a lasting spike
        suspended: dict[str, Preemption] = {}
        for run in snapshot.running:
            job = run.job
            region = region_of.get(run.workers[0].node_id) if run.workers else None
            if (not is_flexible(job) or region not in fc or not job.preemptible
                    or job.carbon_suspensions >= self.max_suspensions):
                continue
            review.append(now + self.review_s)
            if (now - run.started_at < self.min_run_s
                    or self.latest_start(job) - now < self.min_pause_s + self.guard_s):
                continue  # too fresh, or too little slack left to pause and come back
            look = self.outlook(job, self._regions(job, totals), grid)
            here = grid.values[region]
            if look.must_run or here[0] <= look.threshold * (1 + self.suspend_gain):
                continue
            calm = np.flatnonzero(here <= look.threshold)
            if len(calm) and grid.times[calm[0]] - now < self.min_pause_s:
                continue  # a short blip: not worth a checkpoint/restart
            resume = (f"resumes ~{clock_text(look.next_start, now, snapshot.epoch_offset_s)} "
                      f"in {look.next_region}" if look.next_start is not None
                      else "resumes after the forecast horizon")
            suspended[job.id] = Preemption(job.id, (
                f"carbon: suspended at checkpoint, {region} at {here[0]:.0f} g/kWh over its "
                f"run threshold {look.threshold:.0f}; {resume}, saves "
                f"~{100 * (1 - look.clean_mean / here[0]):.0f}% (interruption "
                f"{job.carbon_suspensions + 1}/{self.max_suspensions})"))
        snap = snapshot.without(suspended) if suspended else snapshot

        # 2. cleaner regions first (stable: the base's own node order breaks ties)
        rank = {r: f.value_at(now) for r, f in fc.items()}
        nodes = tuple(sorted(snap.nodes, key=lambda n: rank.get(n.region or "", math.inf)))
        snap = replace(snap, nodes=nodes)

        # 3. classify queued jobs
        free = self._free_by_region(snap)
        deferred: dict[str, str] = {}
        baselines: dict[str, float] = {}
        urgent: list[JobView] = []
        for job in snap.queued:
            if not is_flexible(job):
                continue
            regions = self._regions(job, totals)
            look = self.outlook(job, regions, grid)
            if look.must_run:
                urgent.append(job)
                continue
            need = job.per_worker.gpus * job.workers_min
            roomy = [r for r in regions if self._room(job, free.get(r, {})) >= need] or regions
            current = min(float(grid.values[r][0]) for r in roomy)
            if current <= look.threshold * (1 + self.min_gain) or look.next_start is None:
                continue  # clean enough now: the base policy places it as usual
            review.append(min(look.next_start, self.latest_start(job)))  # never oversleep
            d = job.estimated_runtime_s or 0.0
            now_mean = min(fc[r].mean(now, d) for r in roomy)
            saving = max(0.0, 1 - look.clean_mean / now_mean) if now_mean > 0 else 0.0
            baselines[job.id] = now_mean
            deferred[job.id] = (
                f"waiting for cleaner power, expected start "
                f"{clock_text(look.next_start, now, snapshot.epoch_offset_s)} in "
                f"{look.next_region}, saves ~{100 * saving:.0f}% (deadline "
                f"{clock_text(job.deadline or 0.0, now, snapshot.epoch_offset_s)})")

        # 4. urgent flexible jobs take capacity first, earliest deadline first; if the pool
        # is full they may checkpoint flexible jobs that still have slack, and as a last
        # resort inflexible ones (youngest first): waiting must never cost a deadline that
        # running at once would have met, and the capacity it takes back is what the job
        # would have used had it not waited.
        placed: list[Placement] = []
        yielded: dict[str, Preemption] = {}
        no_slack = {r.job.id for r in snap.running if is_flexible(r.job)
                    and self.outlook(r.job, self._regions(r.job, totals), grid).must_run}
        if urgent:
            cycle = Cycle(snap)
            slack = sorted(
                (r for r in snap.running if is_flexible(r.job) and r.job.id not in no_slack),
                key=lambda r: (-self.latest_start(r.job), r.job.id))
            inflexible = sorted((r for r in snap.running if not is_flexible(r.job)),
                                key=lambda r: (-r.started_at, r.job.id))
            for job in sorted(urgent, key=lambda j: (j.deadline, j.id)):
                p = (
                    cycle.try_place(job)
                    or cycle.place_with_victims(
                        job, slack, f"deadline: checkpointed for deadline-critical job "
                                    f"{job.id} (this job still has slack)")
                    or cycle.place_with_victims(
                        job, inflexible, f"deadline: checkpointed for deadline-critical job "
                                         f"{job.id}, which waited for cleaner power")
                )
                if p is not None:
                    placed.append(p)
            yielded = dict(cycle.preemptions)
            if placed:
                pool = cycle.pool
                snap = replace(snap, nodes=tuple(
                    replace(n, free=Resources(pool.cpus[i], pool.mem[i], pool.gpus[i]))
                    for i, n in enumerate(pool.nodes)), running=tuple(
                    r for r in snap.running if r.job.id not in yielded))
        done = {p.job_id for p in placed} | set(deferred)
        # A running flexible job with no slack left is not the base's to preempt (LAS would
        # demote a long one for newcomers): it has already spent its waiting on clean power.
        running = tuple(
            replace(r, job=replace(r.job, preemptible=False))
            if r.job.preemptible and r.job.id in no_slack
            else r
            for r in snap.running
        )
        base_snap = replace(
            snap, queued=tuple(j for j in snap.queued if j.id not in done), running=running
        )

        # 5. the base policy on what is left
        plan = self.base.plan(base_snap)
        reasons = {**plan.pending_reasons, **deferred}
        for job in urgent:
            if job.id in reasons:
                reasons[job.id] = f"deadline-critical, no cleaner window left; {reasons[job.id]}"
        if plan.review_at is not None:
            review.append(plan.review_at)
        # A flexible job released to the base that the base leaves waiting (e.g. behind a
        # strict FIFO head) is looked at again at its latest start, when it becomes urgent.
        started = {p.job_id for p in plan.placements}
        review.extend(
            self.latest_start(job) for job in base_snap.queued
            if is_flexible(job) and job.id not in started
        )
        return Plan(
            (*placed, *plan.placements),
            (*suspended.values(), *yielded.values(), *plan.preemptions), reasons,
            min(review) if review else None,
            plan.cancellations,
            baselines,
        )

    # -- helpers --------------------------------------------------------------------------
    @staticmethod
    def _allowed(job: JobView, gpu_type: str | None) -> bool:
        if job.per_worker.gpus == 0:
            return True
        if gpu_type is None:
            return False
        if job.gpu_type is not None:
            return gpu_type == job.gpu_type
        return gpu_type not in job.excluded_gpu_types

    @staticmethod
    def _totals(snapshot: ClusterSnapshot, fc: Mapping[str, IntensityForecast]
                ) -> dict[tuple[str, str | None], int]:
        """Total GPUs per (forecast region, gpu type): computed once per cycle."""
        total: dict[tuple[str, str | None], int] = {}
        for n in snapshot.nodes:
            if n.region in fc:
                key = (n.region, n.gpu_type)
                total[key] = total.get(key, 0) + n.total.gpus
        return total

    def _regions(self, job: JobView, totals: Mapping[tuple[str, str | None], int]
                 ) -> tuple[str, ...]:
        """Forecast regions holding enough GPUs of one type the job may use (sorted)."""
        need = job.per_worker.gpus * job.workers_min
        return tuple(sorted({r for (r, t), g in totals.items()
                             if g >= need and self._allowed(job, t)}))

    @staticmethod
    def _free_by_region(snapshot: ClusterSnapshot) -> dict[str, dict[str | None, int]]:
        out: dict[str, dict[str | None, int]] = {}
        for n in snapshot.nodes:
            if n.region:
                by_type = out.setdefault(n.region, {})
                by_type[n.gpu_type] = by_type.get(n.gpu_type, 0) + max(0, n.free.gpus)
        return out

    def _room(self, job: JobView, free: Mapping[str | None, int]) -> int:
        """Most free GPUs of one allowed type (a gang never mixes types)."""
        return max((g for t, g in free.items() if self._allowed(job, t)), default=0)
