"""Strict FIFO: the baseline every other policy is measured against."""

from __future__ import annotations

from dataclasses import dataclass

from .cycle import Cycle, TypePrefs
from .ordering import fifo_order
from .plan import Plan
from .reasons import never_fits
from .snapshot import ClusterSnapshot, JobView

# The same words for every job behind the blocked head: naming the head would change the
# reason of every waiting job each time the head starts (a write per queued job per cycle).
FIFO_WAIT = "waiting for the jobs ahead of it (strict FIFO)"


@dataclass(frozen=True, slots=True)
class FifoPolicy:
    """Place jobs in priority/submission order; the first gang that does not fit blocks all.

    Gangs are all-or-nothing. A job that could never fit on this pool is skipped (with its
    reason) instead of blocking the queue forever.
    """

    name: str = "fifo"
    type_prefs: dict[str, TypePrefs] | None = None  # set by ``hetero`` composition

    def order(self, snapshot: ClusterSnapshot) -> list[JobView]:
        """Queued jobs in the order this policy offers them."""
        return fifo_order(snapshot.queued)

    def plan(self, snapshot: ClusterSnapshot) -> Plan:
        cycle = Cycle(snapshot)
        blocked = False
        prefs = self.type_prefs or {}
        for job in self.order(snapshot):
            if blocked:
                cycle.wait(job, FIFO_WAIT)
            elif cycle.try_place(job, prefs.get(job.id)) is None and not never_fits(
                cycle.pool, job, cycle.candidate_types(job)
            ):
                blocked = True
        return cycle.plan()
