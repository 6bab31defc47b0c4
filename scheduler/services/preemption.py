"""Taking work off nodes: preempt a job, release its allocations, requeue it.

Two kinds, with different budgets: involuntary (the node was lost or left)
uses up one of the job's `max_attempts`, and the job fails when none are
left; voluntary (the policy checkpoints it, e.g. to wait for cleaner power)
never fails a job, and is counted apart (`carbon_suspensions`).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..domain.errors import CommonpoolError
from ..domain.states import JobState
from ..policy import Preemption
from ..store.models import Allocation, Job, utcnow
from ..store.transitions import transition_job
from .jobs import release_allocations


def preempt_job(
    session: Session, job_id: str, *, reason: str, actor: str = "scheduler", voluntary: bool = False
) -> JobState:
    """PREEMPTED, allocations released, then QUEUED with attempt + 1 (or FAILED); the end state."""
    transition_job(session, job_id, JobState.PREEMPTED, actor=actor, reason=reason)
    release_allocations(session, job_id)
    job = session.get(Job, job_id, populate_existing=True)
    assert job is not None
    failures = job.attempt - job.carbon_suspensions  # attempts not spent on suspensions
    if not voluntary and failures >= job.max_attempts:
        transition_job(
            session,
            job_id,
            JobState.FAILED,
            actor=actor,
            reason=f"{reason}; out of attempts ({job.max_attempts})",
            ended_at=utcnow(),
            exit_reason=f"{reason}; out of attempts",
        )
        return JobState.FAILED
    # Only the carbon layer's suspensions are counted apart (and bounded by the policy).
    counted = voluntary and reason.startswith("carbon:")
    extra = {"carbon_suspensions": Job.carbon_suspensions + 1} if counted else {}
    transition_job(
        session,
        job_id,
        JobState.QUEUED,
        actor=actor,
        reason=f"requeued after: {reason}",
        attempt=Job.attempt + 1,
        placed_at=None,
        started_at=None,
        **extra,
    )
    return JobState.QUEUED


def jobs_on_node(session: Session, node_id: str) -> list[str]:
    return list(
        session.scalars(
            select(Allocation.job_id)
            .where(Allocation.node_id == node_id, Allocation.released_at.is_(None))
            .distinct()
        )
    )


def apply_preemptions(session: Session, preemptions: Iterable[Preemption]) -> list[str]:
    """Checkpoint-and-requeue the jobs a policy chose (voluntary), each all-or-nothing.

    A job that ended or moved meanwhile is skipped. Its old run is stopped by
    the launcher, which sees a QUEUED job still holding a run's ref.
    """
    done = []
    for preemption in preemptions:
        try:
            with session.begin_nested():
                preempt_job(session, preemption.job_id, reason=preemption.reason, voluntary=True)
        except CommonpoolError:
            continue
        done.append(preemption.job_id)
    return done
