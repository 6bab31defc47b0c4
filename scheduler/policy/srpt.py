"""Shortest remaining processing time first, on runtime estimates (the queue's SRPT).

Mean job completion time is minimised by running the job with the least work left first
(SRPT is optimal on one machine and near-optimal on many); a pool knows each job's work
only from its estimate (`JobView.estimated_runtime_s`, the user's time limit live, the
remaining steps in the simulator). Work is counted in GPU-seconds (worker-seconds for CPU
jobs) so a wide job weighs what it holds. A job without an estimate is ranked by its
attained service, Tiresias' stand-in for a size nobody knows (in heavy-tailed workloads
the longer a job has run, the longer it will still run), so such jobs still make progress.

A queued job that does not fit may preempt running jobs with more than `preempt_ratio`
times its remaining work that have run `min_run_s`: a job never preempts one with about
as much left (no ping-pong), and a job almost done is never preempted for one slightly
shorter.
"""

from __future__ import annotations

from dataclasses import dataclass

from .cycle import TypePrefs
from .plan import Plan
from .ranked import plan_by_rank
from .snapshot import ClusterSnapshot, JobView


def remaining_work(job: JobView) -> float:
    """Estimated GPU-seconds (worker-seconds without GPUs) the job still needs."""
    width = max(job.per_worker.gpus, 1) * job.workers_min
    if job.estimated_runtime_s is not None:
        return max(0.0, job.estimated_runtime_s) * width
    return job.attained_service_s


@dataclass(frozen=True, slots=True)
class SrptPolicy:
    """Preemptive shortest-remaining-work first; see the module docstring."""

    name: str = "srpt"
    preempt: bool = True
    preempt_ratio: float = 2.0
    min_run_s: float = 0.0
    type_prefs: dict[str, TypePrefs] | None = None  # set by ``hetero`` composition

    def key(self, job: JobView) -> tuple[float, int, float, str]:
        return (remaining_work(job), -job.priority, job.submitted_at, job.id)

    def order(self, snapshot: ClusterSnapshot) -> list[JobView]:
        """Queued jobs in the order this policy offers them."""
        return sorted(snapshot.queued, key=self.key)

    def plan(self, snapshot: ClusterSnapshot) -> Plan:
        return plan_by_rank(
            snapshot, self.key, self.type_prefs, preempt=self.preempt, min_run_s=self.min_run_s,
            displaces=lambda job, running: (
                remaining_work(running) > self.preempt_ratio * remaining_work(job)
            ),
            preempt_reason=lambda job: f"preempted by job {job.id}: it has far less work left "
                                       "(SRPT)",
            wait_note=lambda job: f"SRPT: ~{remaining_work(job) / 3600:.1f} GPU-h left",
        )
