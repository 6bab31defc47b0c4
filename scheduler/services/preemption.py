"""Taking work off nodes: preempt a job, release its allocations, requeue it.

Two kinds, with different budgets: involuntary (the node was lost or left)
uses up one of the job's `max_attempts`, and the job fails when none are
left; voluntary (the policy checkpoints it, to wait for cleaner power, to
regrow an elastic job, to serve another job or to move it to a faster GPU
type) never fails a job, and is counted apart (`carbon_suspensions`,
`regrows`, `policy_preemptions`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..domain.errors import CommonpoolError
from ..domain.states import JobState
from ..policy import Preemption
from ..store.models import Allocation, Job, utcnow
from ..store.transitions import transition_job
from .jobs import release_allocations

if TYPE_CHECKING:
    from ..config import Settings


@dataclass(frozen=True, slots=True)
class RequeueBackoff:
    """How long a job waits before its next attempt after a failed one: `base_s` doubling
    per failure up to `max_s` (settings `requeue_backoff_s`, `requeue_backoff_max_s`), so a
    job that keeps losing its nodes does not hammer the pool. Voluntary requeues never wait."""

    base_s: float = 2.0
    max_s: float = 300.0

    def delay(self, failures: int) -> timedelta:
        if failures <= 0 or self.base_s <= 0:
            return timedelta(0)
        return timedelta(seconds=min(self.max_s, self.base_s * 2 ** (failures - 1)))

    @classmethod
    def of(cls, settings: Settings) -> RequeueBackoff:
        return cls(settings.requeue_backoff_s, settings.requeue_backoff_max_s)


def preempt_job(
    session: Session,
    job_id: str,
    *,
    reason: str,
    actor: str = "scheduler",
    voluntary: bool = False,
    backoff: RequeueBackoff = RequeueBackoff(),
) -> JobState:
    """PREEMPTED, allocations released, then QUEUED with attempt + 1 (or FAILED); the end state.

    An involuntary requeue is eligible again only after `backoff`'s delay for the
    number of attempts failed so far.
    """
    transition_job(session, job_id, JobState.PREEMPTED, actor=actor, reason=reason)
    release_allocations(session, job_id)
    job = session.get(Job, job_id, populate_existing=True)
    assert job is not None
    # Attempts not spent on a policy's will.
    failures = job.attempt - job.carbon_suspensions - job.regrows - job.policy_preemptions
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
    # Voluntary requeues are counted apart, so they never make a job run out of attempts.
    extra: dict[str, object] = {}
    if voluntary and reason.startswith("carbon:"):
        extra = {"carbon_suspensions": Job.carbon_suspensions + 1}
    elif voluntary and reason.startswith("elastic:"):
        extra = {"regrows": Job.regrows + 1}
    elif voluntary:
        extra = {"policy_preemptions": Job.policy_preemptions + 1}
    wait = timedelta(0) if voluntary else backoff.delay(failures)
    eligible_at = utcnow() + wait if wait else None
    note = f"; eligible again in {wait.total_seconds():g} s" if wait else ""
    transition_job(
        session,
        job_id,
        JobState.QUEUED,
        actor=actor,
        reason=f"requeued after: {reason}{note}",
        attempt=Job.attempt + 1,
        placed_at=None,
        started_at=None,
        eligible_at=eligible_at,
        pending_reason=f"requeue backoff after: {reason}"[:500] if wait else None,
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
