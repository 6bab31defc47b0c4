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

from .cycle import TypePrefs
from .plan import Plan
from .ranked import plan_by_rank
from .snapshot import ClusterSnapshot, JobView

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
        return plan_by_rank(
            snapshot, self.key, self.type_prefs, preempt=self.preempt, min_run_s=self.min_run_s,
            displaces=lambda job, running: self.queue_of(running) > self.queue_of(job),
            preempt_reason=lambda job: f"preempted by job {job.id}: more attained service "
                                       f"(LAS queue > {self.queue_of(job)})",
            wait_note=lambda job: f"LAS queue {self.queue_of(job)}",
        )
