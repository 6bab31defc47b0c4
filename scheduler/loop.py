"""The live scheduling loop: snapshot (SQL) -> policy (pure) -> apply (SQL).

Each step's decisions are planned on a read and written in one transaction,
so a crash at any point leaves the registry as it was before the step's
writes or after them, never in between. The simulator calls the same policy
objects; only the snapshot source and applier differ.

A step woken by an event (a submit, a run's end) between full steps is a
*quick* one, as Slurm's event-triggered pass tests only `default_queue_depth`
jobs: its policy sees the first `quick_depth` queued jobs (priority, then
submit order) and may not preempt, suspend or move any running job. Reading
and judging the whole queue for every end was most of a step's cost while a
long queue of short jobs drained. A full step, with the whole queue and every
decision, runs at least every `interval_s`, and whenever no event woke it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from .launcher import Launcher, LaunchReport
from .logs import get_logger
from .policy import ClusterSnapshot, Placement, Plan, Policy
from .policy.chain import chain, withdrawals
from .services.jobs import apply_cancellations
from .services.nodes import expire_leases
from .services.preemption import RequeueBackoff, apply_preemptions
from .store.placements import (
    apply_placements,
    record_carbon_baselines,
    record_pending_reasons,
)
from .store.snapshot_source import QUEUE_LIMIT, Forecasts, QueueCache, load_snapshot
from .store.uow import Database

log = get_logger("scheduler")


@dataclass(frozen=True, slots=True)
class StepReport:
    """What one step did, for logs, metrics and tests."""

    placed: tuple[str, ...] = ()
    preempted: tuple[str, ...] = ()
    cancelled: tuple[str, ...] = ()
    rejected: dict[str, str] = field(default_factory=dict)
    pending: int = 0
    lost_nodes: tuple[str, ...] = ()
    launch: LaunchReport | None = None
    seconds: float = 0.0
    quick: bool = False  # saw only the head of the queue (`pending` counts that head)


class SchedulerLoop:
    """Runs `step()` every `interval_s` (or sooner when `wake()` is called)."""

    def __init__(
        self,
        db: Database,
        policy: Policy,
        *,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.time,
        after_step: Callable[[StepReport], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
        launcher: Launcher | None = None,
        forecasts: Forecasts | None = None,
        backoff: RequeueBackoff = RequeueBackoff(),
        quick_depth: int = 100,
        chain_window_s: float = 0.0,
        chain_depth: int = 1,
    ) -> None:
        """`backoff`: how long jobs of a lost node wait before their next attempt.
        `quick_depth`: queued jobs a quick step looks at (0: every step is full).
        `chain_window_s`, `chain_depth`: chain queued command jobs, up to `chain_depth`
        behind each run started at most `chain_window_s` ago (`policy.chain`; 0: never)."""
        self.db = db
        self.backoff = backoff
        self.policy = policy
        self.interval_s = interval_s
        self.clock = clock
        self.after_step = after_step
        self.on_error = on_error
        self.launcher = launcher
        self.forecasts = forecasts
        self.quick_depth = quick_depth
        self.chain_window_s = chain_window_s
        self.chain_depth = chain_depth
        self._last_full = -float("inf")  # time.monotonic() of the last full step
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._queue_cache = QueueCache()
        self._quick_cache = QueueCache()  # the head's views: quick steps never evict the rest
        self._baselined: set[str] = set()  # carbon baselines this process has written
        if launcher is not None:
            launcher.wake_on_run_end(self.wake)  # a run's end starts a step at once

    def plan(self) -> Plan:
        """The decisions the policy would take now, without applying them."""
        with self.db.unit_of_work(write=False) as session:
            return self.policy.plan(
                load_snapshot(session, now=self.clock(), forecasts=self.forecasts)
            )

    def step(self, *, quick: bool = False) -> StepReport:
        """Record ended runs, plan (a read), place (one write), launch what was placed.

        Ends are recorded first so the resources they free are placed in the same
        step: a job's end and its successor's start take one step, not two.
        `quick`: a quick step (see the module docstring), if `quick_depth` allows one.
        """
        started = time.perf_counter()
        quick = quick and self.quick_depth > 0
        if not quick:
            self._last_full = time.monotonic()
        launch = self.launcher.settle() if self.launcher else None
        # Decided on a read, applied in a write unit: every write is guarded (state
        # compare-and-set, capacity and quotas re-checked in SQL), so a snapshot a
        # submit or a cancel outdated meanwhile cannot over-allocate, and SQLite's
        # one writer is held only while the decisions are written, not while planned.
        with self.db.unit_of_work(write=False) as session:
            stored_reasons: dict[str, str | None] = {}
            snapshot = load_snapshot(
                session,
                now=self.clock(),
                forecasts=self.forecasts,
                stored_reasons=stored_reasons,
                queue_cache=self._quick_cache if quick else self._queue_cache,
                queue_limit=self.quick_depth if quick else QUEUE_LIMIT,
            )
            seen = _keep_running(snapshot) if quick else snapshot
            plan = self.policy.plan(seen)
            chained = chain(
                self.policy, seen, plan, window_s=self.chain_window_s, depth=self.chain_depth
            )
            withdrawn = withdrawals(seen, window_s=self.chain_window_s)
            if withdrawn and self.launcher is not None:  # only runs that have not started
                withdrawn = self.launcher.withdraw(session, withdrawn)
        with self.db.unit_of_work(exclusive=True) as session:
            lost = expire_leases(session, backoff=self.backoff)
            # Jobs that can never start (a dependency ended the wrong way) are cancelled.
            cancelled = apply_cancellations(session, plan.cancellations)
            preempted = apply_preemptions(session, plan.preemptions + withdrawn)
            result = apply_placements(session, _not_moving(plan) + chained)
            # A placement refused at apply time (capacity race, project quota) waits with
            # why; a refused chained one has its plan's reason (it waits for a slot).
            behind = {placement.job_id for placement in chained}
            refused = {k: why for k, why in result.rejected.items() if k not in behind}
            record_pending_reasons(
                session, {**dict(plan.pending_reasons), **refused}, stored_reasons
            )
            if not quick:  # a quick plan names only the head's baselines: the rest wait
                record_carbon_baselines(session, plan.carbon_baselines, self._baselined)
        # Runner I/O (Ray) happens outside the placement transaction. Victims' runs stop
        # before anything starts on their slots (a node's executor hands out its GPUs).
        if self.launcher is not None:
            if preempted:
                launch = self.launcher.stop_abandoned(launch or LaunchReport())
            launch = self.launcher.launch(launch)
        report = StepReport(
            placed=result.placed,
            preempted=tuple(preempted),
            cancelled=tuple(cancelled),
            rejected=result.rejected,
            pending=len(plan.pending_reasons),
            lost_nodes=tuple(lost),
            launch=launch,
            seconds=time.perf_counter() - started,
            quick=quick,
        )
        _log_step(report, plan)
        if self.after_step:
            self.after_step(report)
        return report

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def run_forever(self) -> None:
        """Step until `stop()`; with `on_error` set, a failed step is reported, not fatal.
        A step woken by an event is quick unless the last full one is `interval_s` old."""
        woken = False
        while not self._stop.is_set():
            full_due = time.monotonic() - self._last_full >= self.interval_s
            try:
                self.step(quick=woken and not full_due)
            except Exception as exc:  # keep scheduling through a transient DB outage
                if self.on_error is None:
                    raise
                self.on_error(exc)
            woken = self._wake.wait(self.interval_s)
            self._wake.clear()


def _keep_running(snapshot: ClusterSnapshot) -> ClusterSnapshot:
    """The snapshot with no running job preemptible: a quick step, seeing only the head of
    the queue, fills free capacity but leaves checkpointing jobs to full steps."""
    return replace(
        snapshot,
        running=tuple(
            replace(run, job=replace(run.job, preemptible=False)) if run.job.preemptible else run
            for run in snapshot.running
        ),
    )


def _not_moving(plan: Plan) -> tuple[Placement, ...]:
    """The plan's placements without the jobs it also preempts (moved to another GPU type).

    A moving job's old run is stopped by the launcher's next settle (it then holds a stale
    ref); placing it again in this step would let its new run start, and its ref replace
    the old one, before that. It is placed by the next step, whose plan sees it queued.
    """
    moving = {p.job_id for p in plan.preemptions}
    return tuple(p for p in plan.placements if p.job_id not in moving)


def _log_step(report: StepReport, plan: Plan) -> None:
    """One structured event per change, with its job and node ids (see `scheduler.logs`)."""
    nodes = {p.job_id: list(p.node_ids) for p in plan.placements}
    for job_id in report.placed:
        log.info("job.placed", job_id=job_id, node_ids=nodes.get(job_id, []))
    for job_id, reason in report.rejected.items():
        log.info("job.placement_refused", job_id=job_id, reason=reason)
    for job_id in report.preempted:
        log.info("job.preempted", job_id=job_id)
    reasons = {c.job_id: c.reason for c in plan.cancellations}
    for job_id in report.cancelled:
        log.info("job.cancelled", job_id=job_id, reason=reasons.get(job_id, ""))
    for node_id in report.lost_nodes:
        log.warning("node.lost", node_id=node_id, reason="lease expired")
    if report.launch is not None:
        for job_id in report.launch.launched:
            log.info("job.launched", job_id=job_id)
        for job_id, state in report.launch.ended.items():
            log.info("job.ended", job_id=job_id, state=state)
        for job_id in report.launch.stopped:
            log.info("run.stopped", job_id=job_id)
        for job_id, reason in report.launch.in_doubt.items():
            log.warning("job.launch_in_doubt", job_id=job_id, reason=reason)
