"""Discretized least-attained-service (Tiresias' 2D-LAS), needing no job durations.

Attained service is counted in GPU-seconds (worker-seconds for CPU jobs) so a wide job ages
as fast as it consumes. Jobs fall into queues by thresholds of attained service; lower
queues go first, FIFO inside a queue. A queued job that does not fit may preempt running
jobs of a strictly *higher* queue (demoted, long-running jobs) that have run at least
``min_run_s``: short jobs overtake long ones without anyone knowing a duration, and jobs of
one queue never preempt each other, which stops ping-pong.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from .cycle import Cycle, TypePrefs
from .plan import Plan
from .snapshot import ClusterSnapshot, JobView, RunningJobView

HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class LasPolicy:
    """Tiresias-style LAS; ``thresholds_s`` are attained GPU-seconds between queues."""

    name: str = "las"
    thresholds_s: tuple[float, ...] = (1 * HOUR, 10 * HOUR, 100 * HOUR)
    preempt: bool = True
    min_run_s: float = 0.0
    type_prefs: dict[str, TypePrefs] | None = None  # set by ``hetero`` composition

    def queue_of(self, job: JobView) -> int:
        """0 for the least served jobs; one more per threshold crossed."""
        return bisect.bisect_right(self.thresholds_s, job.attained_service_s)

    def key(self, job: JobView) -> tuple[int, int, float, str]:
        return (self.queue_of(job), -job.priority, job.submitted_at, job.id)

    def order(self, snapshot: ClusterSnapshot) -> list[JobView]:
        """Queued jobs in the order this policy offers them."""
        return sorted(snapshot.queued, key=self.key)

    def plan(self, snapshot: ClusterSnapshot) -> Plan:
        cycle = Cycle(snapshot)
        prefs = self.type_prefs or {}
        victims = sorted(
            (r for r in snapshot.running if snapshot.now - r.started_at >= self.min_run_s),
            key=lambda r: self.key(r.job),
            reverse=True,
        )
        for job in self.order(snapshot):
            types = prefs.get(job.id)
            queue = self.queue_of(job)
            if cycle.try_place(job, types) is not None or not self.preempt:
                continue
            lower = [v for v in victims if self.queue_of(v.job) > queue]
            if lower and self._preempt_for(cycle, job, lower, types, queue):
                continue
            cycle.wait(job, f"{cycle.reasons.get(job.id, 'does not fit')} (LAS queue {queue})")
        return cycle.plan()

    @staticmethod
    def _preempt_for(
        cycle: Cycle, job: JobView, lower: list[RunningJobView], types: TypePrefs | None,
        queue: int,
    ) -> bool:
        reason = f"preempted by job {job.id}: more attained service (LAS queue > {queue})"
        return cycle.place_with_victims(job, lower, reason, types) is not None
