"""EASY backfill: FIFO, but later jobs may start if they cannot delay the head job.

When the head of the queue does not fit, it gets a reservation: the nodes it will use once
enough running jobs end (by their ``expected_end``) and that shadow time. The capacity it
will need that is free now is *held*. A later job may use held capacity only if its runtime
estimate says it ends before the shadow time; any job may use capacity that is not held.
Without estimates nothing may touch the held capacity, so the head is never delayed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .cycle import Cycle, TypePrefs
from .ordering import fifo_order
from .plan import Plan
from .reasons import never_fits
from .snapshot import ClusterSnapshot, JobView, Resources


@dataclass(slots=True)
class Reservation:
    """Capacity held now on named nodes for the head job, until ``shadow``."""

    job_id: str
    shadow: float
    held: dict[int, Resources] = field(default_factory=dict)

    def describe(self) -> str:
        gpus = sum(r.gpus for r in self.held.values())
        when = "" if math.isinf(self.shadow) else f", starts by t={self.shadow:.0f}"
        return f"reserved for job {self.job_id} ({gpus} gpus held{when})"


def plan_reservation(cycle: Cycle, head: JobView, types: TypePrefs | None) -> Reservation:
    """Release running jobs in order of expected end until the head fits; hold its nodes."""
    runs = sorted(
        (r for r in cycle.snapshot.running if r.job.id not in cycle.preemptions),
        key=lambda r: (math.inf if r.expected_end is None else r.expected_end, r.job.id),
    )
    released = []
    shadow = math.inf
    found = None
    for run in runs:
        cycle.release(run)
        released.append(run)
        found = cycle.find(head, types)
        if found is not None:
            shadow = math.inf if run.expected_end is None else run.expected_end
            break
    for run in reversed(released):
        cycle.retake(run)
    reservation = Reservation(head.id, shadow)
    pool = cycle.pool
    for i, count in found[1] if found else []:
        need = head.per_worker.scaled(count)
        held = Resources(
            min(need.cpus, max(0.0, pool.cpus[i])),
            min(need.memory_bytes, max(0, pool.mem[i])),
            min(need.gpus, max(0, pool.gpus[i])),
        )
        if held != Resources():
            pool.take(i, held)
            reservation.held[i] = held
    return reservation


@dataclass(frozen=True, slots=True)
class BackfillPolicy:
    """FIFO order with one EASY reservation for the first job that does not fit."""

    name: str = "backfill"
    type_prefs: dict[str, TypePrefs] | None = None  # set by ``hetero`` composition

    def order(self, snapshot: ClusterSnapshot) -> list[JobView]:
        """Queued jobs in the order this policy offers them."""
        return fifo_order(snapshot.queued)

    def plan(self, snapshot: ClusterSnapshot) -> Plan:
        cycle = Cycle(snapshot)
        reservation: Reservation | None = None
        prefs = self.type_prefs or {}
        for job in self.order(snapshot):
            types = prefs.get(job.id)
            if reservation is None:
                if cycle.try_place(job, types) is None and not never_fits(
                    cycle.pool, job, cycle.candidate_types(job)
                ):
                    reservation = plan_reservation(cycle, job, types)
                    cycle.wait(job, f"head of queue; {reservation.describe()}")
                continue
            placed = cycle.try_place(job, types)
            if placed is None and ends_before(job, snapshot.now, reservation.shadow):
                place_in_held(cycle, job, types, reservation)
            if job.id not in cycle.placements:
                cycle.wait(job, f"{cycle.reasons.get(job.id, '')}; {reservation.describe()}")
        return cycle.plan()


def ends_before(job: JobView, now: float, shadow: float) -> bool:
    est = job.estimated_runtime_s
    return est is not None and not math.isinf(shadow) and now + est <= shadow


def place_in_held(
    cycle: Cycle, job: JobView, types: TypePrefs | None, reservation: Reservation
) -> None:
    """Let a short job use held capacity, then hold whatever of it is still free."""
    pool = cycle.pool
    for i, held in reservation.held.items():
        pool.release(i, held)
    cycle.try_place(job, types)
    for i, held in list(reservation.held.items()):
        still = Resources(
            min(held.cpus, max(0.0, pool.cpus[i])),
            min(held.memory_bytes, max(0, pool.mem[i])),
            min(held.gpus, max(0, pool.gpus[i])),
        )
        pool.take(i, still)
        reservation.held[i] = still
