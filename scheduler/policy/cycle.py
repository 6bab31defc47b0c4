"""One scheduling cycle's working state, shared by every policy (and so by the simulator).

A policy decides the *order* in which it offers jobs and what may be preempted; the cycle
does the mechanics: find nodes on a working copy of free capacity, assign ranks, remember
why a job could not be placed, and assemble the :class:`Plan`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .fit import Alloc, FreePool
from .plan import Placement, Plan, Preemption
from .reasons import explain_no_fit
from .snapshot import ClusterSnapshot, JobView, RunningJobView

TypePrefs = Sequence[str | None]


def shape_key(job: JobView, types: TypePrefs | None) -> tuple:
    """Jobs with equal shape key fit (or fail) identically on the same free capacity."""
    return (
        job.per_worker,
        job.workers_min,
        job.gpu_type,
        job.excluded_gpu_types,
        tuple(sorted(job.label_selector.items())),
        None if types is None else tuple(types),
    )


class Cycle:
    """Working copy of the pool for one ``plan()`` call."""

    def __init__(self, snapshot: ClusterSnapshot) -> None:
        self.snapshot = snapshot
        self.pool = FreePool(snapshot.nodes)
        self.running = {r.job.id: r for r in snapshot.running}
        self.placements: dict[str, Placement] = {}
        self.preemptions: dict[str, Preemption] = {}
        self.reasons: dict[str, str] = {}
        self._failed: dict[tuple, int] = {}  # shape key -> pool generation of the failure

    # -- placing --------------------------------------------------------------------------
    def candidate_types(self, job: JobView) -> TypePrefs:
        """GPU types a job may use, in the pool's stable order."""
        if job.per_worker.gpus == 0:
            return (None,)
        if job.gpu_type is not None:
            return (job.gpu_type,) if job.gpu_type in self.pool.type_total else ()
        if job.excluded_gpu_types:
            return tuple(t for t in self.pool.gpu_types if t not in job.excluded_gpu_types)
        return self.pool.gpu_types

    def find(self, job: JobView, types: TypePrefs | None = None) -> tuple[str | None, Alloc] | None:
        """Best allocation without taking it.

        With ``types`` given, the first type in that order that fits wins (a preference);
        otherwise the type needing the fewest nodes wins, ties to the pool's type order.
        """
        key = shape_key(job, types)
        if self._failed.get(key) == self.pool.generation:
            return None
        allowed = self.candidate_types(job)
        best: tuple[str | None, Alloc] | None = None
        for t in allowed if types is None else [t for t in types if t in allowed]:
            alloc = self.pool.find(job, t)
            if alloc is None:
                continue
            if types is not None:
                return t, alloc
            if best is None or self._rank(t, alloc) > self._rank(*best):
                best = (t, alloc)
        if best is None:
            self._failed[key] = self.pool.generation
        return best

    def _rank(self, gpu_type: str | None, alloc: Alloc) -> tuple[int, int, int]:
        """More workers, then fewer nodes, then the least-loaded type (spreads work evenly)."""
        workers = sum(c for _, c in alloc)
        return (workers, -len(alloc), self.pool.type_free.get(gpu_type, 0))

    def try_place(self, job: JobView, types: TypePrefs | None = None) -> Placement | None:
        """Place the gang now if it fits; otherwise record why it waits."""
        found = self.find(job, types)
        if found is None:
            self.reasons[job.id] = explain_no_fit(self.pool, job, self.candidate_types(job))
            return None
        return self.commit(job, found[1])

    def commit(self, job: JobView, alloc: Alloc) -> Placement:
        """Take the allocation and record the placement with ranks 0..n-1."""
        placement = Placement(job.id, self.pool.take_slots(alloc, job.per_worker))
        self.placements[job.id] = placement
        self.reasons.pop(job.id, None)
        return placement

    def wait(self, job: JobView, reason: str) -> None:
        """Leave a job queued with a human reason."""
        self.reasons[job.id] = reason

    # -- preempting -----------------------------------------------------------------------
    def release(self, run: RunningJobView) -> None:
        """Give a running job's slots back to the working pool (tentatively)."""
        for slot in run.workers:
            i = self.pool.index_of.get(slot.node_id)
            if i is not None:
                self.pool.release(i, slot.resources)

    def retake(self, run: RunningJobView) -> None:
        """Undo :meth:`release` for a victim that turned out not to be needed."""
        for slot in run.workers:
            i = self.pool.index_of.get(slot.node_id)
            if i is not None:
                self.pool.take(i, slot.resources)

    def place_with_victims(
        self, job: JobView, victims: Iterable[RunningJobView], reason: str,
        types: TypePrefs | None = None,
    ) -> Placement | None:
        """Preempt the fewest victims (taken in the given order) that let ``job`` fit.

        Victims are released one by one until the gang fits; victims whose nodes the
        placement does not touch are given back, so nothing is stopped for nothing.
        """
        released: list[RunningJobView] = []
        found = None
        for victim in victims:
            if victim.job.id in self.preemptions or not victim.job.preemptible:
                continue
            self.release(victim)
            released.append(victim)
            found = self.find(job, types)
            if found is not None:
                break
        if found is None:
            for victim in reversed(released):
                self.retake(victim)
            return None
        used = {self.pool.nodes[i].id for i, _ in found[1]}
        placement = self.commit(job, found[1])
        for victim in released:
            if used.isdisjoint(s.node_id for s in victim.workers):
                self.retake(victim)
            else:
                self.preemptions[victim.job.id] = Preemption(victim.job.id, reason)
        return placement

    # -- result ---------------------------------------------------------------------------
    def plan(self) -> Plan:
        """The plan; any queued job the policy forgot gets a generic reason, never none."""
        reasons = {}
        for job in self.snapshot.queued:
            if job.id not in self.placements:
                reasons[job.id] = self.reasons.get(job.id, "not considered this cycle")
        return Plan(tuple(self.placements.values()), tuple(self.preemptions.values()), reasons)


