"""Discrete-event simulator that drives the *production* policy code over a trace.

Time model (Gavel's, so results compare): scheduling happens at round boundaries every
``round_s`` (360 s); arrivals wait for the next boundary; GPUs of a job that finishes
mid-round idle until the boundary. The policy is asked again at a boundary only if
something happened (arrival, completion, churn) or, for preemptive policies, once
``recompute_s`` (1,920 s) has passed since the last plan, because attained service and
shares drift. Quiet stretches are jumped over, never stepped.

A job's progress rate is its whole-job throughput for its GPU type and size (Gavel's
``null`` entry). Policy preemptions checkpoint at the boundary (no work lost, as Gavel);
a donor node leaving mid-round rolls its jobs back to their last periodic checkpoint.

With a ``CarbonSetup`` (``carbon.py``) nodes carry regions, every snapshot carries the
regions' intensity forecast, a seeded share of jobs is flexible (carbon-aware, with a
deadline), each run's energy (GPU power x busy time) is charged the true intensity of its
nodes' region, and a plan's ``review_at`` (a deferred job's window opening) is a boundary
the clock visits even if nothing else happens.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from ..policy.base import Policy
from ..policy.credits import accrue
from ..policy.plan import Placement
from ..policy.snapshot import ClusterSnapshot, JobView, NodeView, Resources, RunningJobView
from ..policy.throughput import ThroughputTable
from .carbon import HOUR, CarbonSetup, gpu_watts
from .cluster import GIB, ChurnModel
from .trace import TraceJob

ProjectOf = Callable[[TraceJob], str]


@dataclass(slots=True)
class SimJob:
    """Mutable per-job state of the simulation."""

    trace: TraceJob
    project: str
    steps_done: float = 0.0
    attained_gpu_s: float = 0.0
    first_start: float | None = None
    finish: float | None = None
    # current run (None when queued)
    placement: Placement | None = None
    gpu_type: str | None = None
    rate: float = 0.0
    run_start: float = 0.0
    steps_at_start: float = 0.0
    # carbon (filled only with a CarbonSetup, except energy which is always counted)
    flexible: bool = False
    deadline: float | None = None
    carbon_suspensions: int = 0
    energy_kwh: float = 0.0
    co2e_g: float = 0.0

    def progress_at(self, t: float) -> float:
        return self.steps_at_start + self.rate * (t - self.run_start)

    def finish_at(self) -> float:
        if self.rate <= 0:
            return math.inf
        return self.run_start + (self.trace.total_steps - self.steps_at_start) / self.rate


@dataclass(slots=True)
class Sample:
    """Pool state at one boundary, for utilization plots."""

    t: float
    busy_gpus: int
    online_gpus: int
    queued: int
    busy_by_region: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class SimResult:
    jobs: list[SimJob]
    samples: list[Sample]
    preemptions: int = 0
    churn_preemptions: int = 0
    lost_gpu_s: float = 0.0
    plans: int = 0
    carbon_suspensions: int = 0
    contention_integral: dict[int, tuple[float, float]] = field(default_factory=dict)


def estimate_factors(jobs: list[TraceJob], error: float, seed: int) -> dict[int, float]:
    """Per job, how far its runtime estimate is off: log-uniform in [1/error, error].

    Users' time limits are wrong by a job-specific factor that stays with the job, so the
    factor is drawn once per job (from its own seeded stream: churn draws are unchanged).
    """
    if error == 1.0:
        return {}
    rng = random.Random(f"estimates-{seed}")
    spread = math.log(error)
    return {j.index: math.exp(rng.uniform(-spread, spread)) for j in jobs}


class Simulator:
    """Runs one policy over one trace on one pool; deterministic for a seed."""

    def __init__(
        self, jobs: list[TraceJob], nodes: list[NodeView], policy: Policy,
        table: ThroughputTable, *, churn: ChurnModel | None = None, seed: int = 0,
        round_s: float = 360.0, recompute_s: float = 1920.0, preemptive: bool | None = None,
        project_of: ProjectOf | None = None, backfill_estimates: bool = True,
        carbon: CarbonSetup | None = None, estimate_error: float = 1.0,
    ) -> None:
        """`estimate_error` e >= 1: each job's runtime estimate is its true remaining time
        x a factor fixed per job, log-uniform in [1/e, e] (1: exact, an oracle)."""
        if estimate_error < 1.0:
            raise ValueError(f"estimate_error must be >= 1 (1 = exact), not {estimate_error}")
        self.trace = jobs
        self.nodes = {n.id: n for n in nodes}
        self.policy = policy
        self.table = table
        self.churn = churn
        self.rng = random.Random(seed)
        self.round_s = round_s
        self.recompute_s = recompute_s
        name = getattr(policy, "name", "")
        self.preemptive = preemptive if preemptive is not None else not name.startswith(
            ("fifo", "backfill"))
        self.project_of = project_of or (lambda j: j.family)
        self.estimates = backfill_estimates
        self.estimate_factor = estimate_factors(jobs, estimate_error, seed)
        self.types = sorted({n.gpu_type for n in nodes if n.gpu_type})
        self.carbon = carbon
        self.deadlines: dict[int, float] = {}
        if carbon is not None and carbon.flexible.fraction > 0:
            for index in sorted(carbon.flexible.pick([j.index for j in jobs])):
                t = next(j for j in jobs if j.index == index)
                slowest = min((self.rate(t, g) for g in self.types if self.rate(t, g) > 0),
                              default=0.0)
                if slowest > 0:
                    self.deadlines[index] = carbon.flexible.deadline(
                        t.arrival_s, t.total_steps / slowest)

    # -- rates ----------------------------------------------------------------------------
    def rate(self, job: TraceJob, gpu_type: str | None) -> float:
        r = self.table.rate(job.job_type, job.gpus, gpu_type)
        return 0.0 if r is None else r

    def _view(self, j: SimJob, now: float) -> JobView:
        t = j.trace
        excluded = frozenset(g for g in self.types if self.rate(t, g) <= 0)
        slowest = min((self.rate(t, g) for g in self.types if self.rate(t, g) > 0), default=0)
        remaining = t.total_steps - j.steps_done
        estimate = remaining / slowest if self.estimates and slowest else None
        if estimate is not None and j.placement is not None and j.rate > 0:
            # running: the rate on its GPU type is known, so is the time left
            estimate = max(0.0, t.total_steps - j.progress_at(now)) / j.rate
        if estimate is not None:
            estimate *= self.estimate_factor.get(t.index, 1.0)
        return JobView(
            id=str(t.index), per_worker=Resources(4.0, 64 * GIB, 1), workers_min=t.gpus,
            workers_max=t.gpus, project=j.project, submitted_at=t.arrival_s,
            attained_service_s=j.attained_gpu_s + (
                t.gpus * (now - j.run_start) if j.placement else 0.0),
            job_type=t.job_type, excluded_gpu_types=excluded,
            estimated_runtime_s=estimate, deadline=j.deadline, carbon_aware=j.flexible,
            carbon_suspensions=j.carbon_suspensions,
        )

    # -- main loop ------------------------------------------------------------------------
    def run(self) -> SimResult:
        jobs = [SimJob(t, self.project_of(t)) for t in self.trace]
        for j in jobs:
            if j.trace.index in self.deadlines:
                j.flexible, j.deadline = True, self.deadlines[j.trace.index]
        review_at: float | None = None
        arrivals = list(reversed(jobs))  # pop() = next arrival
        queued: dict[str, SimJob] = {}
        running: dict[str, SimJob] = {}
        online = set(self.nodes)
        churn_heap: list[tuple[float, str]] = []
        if self.churn:
            for node_id in sorted(self.nodes):
                heapq.heappush(churn_heap, (self.churn.next_change(self.rng, 0.0, True), node_id))
        result = SimResult(jobs, [])
        credits: dict[str, float] = {}
        active_integral, last_t, done = 0.0, 0.0, 0
        t, last_plan, dirty = 0.0, -math.inf, True

        def advance_integral(now: float) -> None:
            nonlocal active_integral, last_t
            active_integral += (len(queued) + len(running)) * (now - last_t)
            last_t = now

        while done < len(jobs):
            # 1. admit arrivals up to this boundary
            while arrivals and arrivals[-1].trace.arrival_s <= t:
                j = arrivals.pop()
                advance_integral(t)
                queued[str(j.trace.index)] = j
                result.contention_integral[j.trace.index] = (active_integral, 0.0)
                dirty = True
            # 2. plan
            if review_at is not None and t >= review_at:
                dirty = True
            if dirty or (self.preemptive and queued and t - last_plan >= self.recompute_s):
                snap = self._snapshot(t, online, queued, running, credits)
                plan = self.policy.plan(snap)
                result.plans += 1
                last_plan, dirty, review_at = t, False, plan.review_at
                # plan.cancellations is always empty here: trace jobs have no dependencies.
                for pre in plan.preemptions:
                    j = running.pop(pre.job_id)
                    self._stop(j, t, checkpoint=t)
                    queued[pre.job_id] = j
                    result.preemptions += 1
                    if pre.reason.startswith("carbon:"):
                        j.carbon_suspensions += 1
                        result.carbon_suspensions += 1
                for placement in plan.placements:
                    j = queued.pop(placement.job_id)
                    self._start(j, placement, t)
                    running[placement.job_id] = j
            busy = sum(j.trace.gpus for j in running.values())
            online_gpus = sum(self.nodes[n].total.gpus for n in online)
            by_region: dict[str, int] = {}
            if self.carbon is not None:
                for j in running.values():
                    assert j.placement is not None
                    for w in j.placement.workers:
                        r = self.nodes[w.node_id].region or "?"
                        by_region[r] = by_region.get(r, 0) + w.resources.gpus
            result.samples.append(Sample(t, busy, online_gpus, len(queued), by_region))
            # 3. the next boundary worth visiting
            nxt = min((j.finish_at() for j in running.values()), default=math.inf)
            if arrivals:
                nxt = min(nxt, arrivals[-1].trace.arrival_s)
            if churn_heap:
                nxt = min(nxt, churn_heap[0][0])
            if self.preemptive and queued and running:
                nxt = min(nxt, last_plan + self.recompute_s)
            if review_at is not None:
                nxt = min(nxt, review_at)
            if math.isinf(nxt):
                if queued and not running and not churn_heap:
                    raise RuntimeError(f"{len(queued)} jobs can never run on this pool")
                nxt = t + self.round_s
            t_next = max(t + self.round_s, math.ceil(nxt / self.round_s) * self.round_s)
            # 4. events inside (t, t_next]: completions and churn, in time order
            while True:
                fin = min(running.values(), key=lambda j: (j.finish_at(), j.trace.index),
                          default=None)
                tf = fin.finish_at() if fin else math.inf
                tc = churn_heap[0][0] if churn_heap else math.inf
                if min(tf, tc) > t_next:
                    break
                dirty = True
                if tf <= tc:
                    advance_integral(tf)
                    self._stop(fin, tf, checkpoint=tf)
                    fin.finish = tf
                    del running[str(fin.trace.index)]
                    before, _ = result.contention_integral[fin.trace.index]
                    result.contention_integral[fin.trace.index] = (before, active_integral)
                    done += 1
                else:
                    _, node_id = heapq.heappop(churn_heap)
                    self._toggle(node_id, tc, online, running, queued, result, churn_heap)
            if any(n.donor_project for n in self.nodes.values()):
                credits = accrue(credits, self._delivered(running, t_next - t), t_next - t)
            t = t_next
        return result

    # -- transitions ----------------------------------------------------------------------
    def _start(self, j: SimJob, placement: Placement, t: float) -> None:
        gpu_type = self.nodes[placement.workers[0].node_id].gpu_type
        j.placement, j.gpu_type, j.rate = placement, gpu_type, self.rate(j.trace, gpu_type)
        j.run_start, j.steps_at_start = t, j.steps_done
        if j.first_start is None:
            j.first_start = t

    def _stop(self, j: SimJob, t: float, checkpoint: float) -> float:
        """End the current run at ``t``, keeping progress up to ``checkpoint``; GPU-s lost."""
        self._account(j, t)
        j.steps_done = min(j.trace.total_steps, j.progress_at(checkpoint))
        j.attained_gpu_s += j.trace.gpus * (t - j.run_start)
        lost = j.trace.gpus * (t - checkpoint)
        j.placement, j.rate = None, 0.0
        return lost

    def _account(self, j: SimJob, t: float) -> None:
        """Energy of the run [run_start, t) and its carbon at each worker's region."""
        if j.placement is None or t <= j.run_start:
            return
        series = self.carbon.series if self.carbon is not None else {}
        for w in j.placement.workers:
            node = self.nodes[w.node_id]
            kw = gpu_watts(node.gpu_type) * w.resources.gpus / 1000.0
            j.energy_kwh += kw * (t - j.run_start) / HOUR
            s = series.get(node.region or "")
            if s is not None:
                j.co2e_g += kw * (s.integral(t) - s.integral(j.run_start)) / HOUR

    def _toggle(self, node_id: str, t: float, online: set[str], running: dict[str, SimJob],
                queued: dict[str, SimJob], result: SimResult,
                heap: list[tuple[float, str]]) -> None:
        assert self.churn is not None
        if node_id in online:
            online.discard(node_id)
            for job_id, j in list(running.items()):
                if j.placement and any(w.node_id == node_id for w in j.placement.workers):
                    ckpt_every = self.churn.checkpoint_s
                    ran = t - j.run_start
                    ckpt = j.run_start + math.floor(ran / ckpt_every) * ckpt_every
                    result.lost_gpu_s += self._stop(j, t, checkpoint=ckpt)
                    result.churn_preemptions += 1
                    queued[job_id] = running.pop(job_id)
        else:
            online.add(node_id)
        heapq.heappush(heap, (self.churn.next_change(self.rng, t, node_id in online), node_id))

    def _delivered(self, running: dict[str, SimJob], dt: float) -> dict[str, float]:
        out: dict[str, float] = {}
        for j in running.values():
            assert j.placement is not None
            for w in j.placement.workers:
                donor = self.nodes[w.node_id].donor_project
                if donor:
                    out[donor] = out.get(donor, 0.0) + w.resources.gpus * dt
        return out

    def _snapshot(self, t: float, online: set[str], queued: dict[str, SimJob],
                  running: dict[str, SimJob], credits: dict[str, float]) -> ClusterSnapshot:
        used: dict[str, Resources] = {}
        runs = []
        for _job_id, j in running.items():
            assert j.placement is not None
            for w in j.placement.workers:
                used[w.node_id] = used.get(w.node_id, Resources()) + w.resources
            view = self._view(j, t)
            runs.append(RunningJobView(view, j.placement.workers, j.run_start, j.finish_at()))
        nodes = tuple(
            NodeView(n.id, n.total, n.total - used.get(n.id, Resources()), n.gpu_type,
                     n.labels, n.region, n.donor_project)
            for node_id, n in self.nodes.items() if node_id in online
        )
        carbon = {}
        if self.carbon is not None:
            carbon = {"carbon_forecast": self.carbon.forecast(t),
                      "epoch_offset_s": self.carbon.epoch_offset_s}
        return ClusterSnapshot(t, nodes, tuple(self._view(j, t) for j in queued.values()),
                               tuple(runs), donor_credits=dict(credits), **carbon)
