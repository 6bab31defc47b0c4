"""Re-placing running jobs across GPU types (Gavel's migration), after a base plan.

Choosing a job's type only when it starts leaves a busy pool stuck with the assignment of
whatever freed up: a job that is 4x faster on a v100 sits on a k80 while a job that hardly
cares holds the v100. Gavel's heterogeneity-aware policies fix this by re-solving the whole
assignment every round and moving jobs. This pass does the same greedily on a plan:

- **swaps**: two jobs of the same shape (per-worker resources, workers per node) on
  different types exchange their slots when the sum of their normalised rates (rate on
  the type / rate on the job's best type) grows by at least ``min_gain``;
- **moves**: a job goes to free capacity of a type where its normalised rate is at least
  ``min_gain`` higher.

A running job that moves is preempted and placed again in the same plan (the caller
checkpoints it and restarts it on the new slots); a job placed by this very plan simply
gets other slots. Only preemptible jobs that have run ``min_run_s`` since they (re)started
move, so a restart's cost is paid at most once per that time. Capacity is exact: a swap
exchanges identical slot layouts, a move takes free slots, so no node is over-allocated.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace

from .fit import FreePool, labels_match
from .plan import Placement, Plan, Preemption
from .snapshot import ClusterSnapshot, JobView, NodeView, WorkerSlot

NormalisedRates = Mapping[str, Mapping[str, float]]  # job id -> gpu type -> rate / best rate


@dataclass(slots=True)
class _Holder:
    """A job holding slots after the base plan: running on, or just placed by it."""

    job: JobView
    workers: tuple[WorkerSlot, ...]
    gpu_type: str  # where it is now; `origin` is where the base plan left it
    running: bool
    origin: str = ""
    moved: bool = False

    def shape(self, node_of: Mapping[str, int]) -> tuple:
        per_node = Counter(node_of[w.node_id] for w in self.workers)
        return (self.job.per_worker, tuple(sorted(per_node.values())))


def rebalance(
    snapshot: ClusterSnapshot,
    plan: Plan,
    norms: NormalisedRates,
    *,
    min_gain: float = 0.1,
    min_run_s: float = 0.0,
) -> Plan:
    """``plan`` with swaps and moves that raise the pool's normalised throughput."""
    nodes = {n.id: n for n in snapshot.nodes}
    holders = _holders(snapshot, plan, nodes, norms, min_run_s)
    if not holders:
        return plan
    pool = _free_after(snapshot, plan)
    for a, b in _swaps(holders, norms, min_gain, pool):
        a.workers, b.workers = _renumber(b.workers, a.job), _renumber(a.workers, b.job)
        a.gpu_type, b.gpu_type = b.gpu_type, a.gpu_type
        a.moved = b.moved = True
    for h in sorted(holders, key=lambda h: h.job.id):
        _move_to_free(h, norms[h.job.id], pool, min_gain)
    return _with_moves(plan, [h for h in holders if h.moved])


def _holders(
    snapshot: ClusterSnapshot,
    plan: Plan,
    nodes: Mapping[str, NodeView],
    norms: NormalisedRates,
    min_run_s: float,
) -> list[_Holder]:
    preempted = {p.job_id for p in plan.preemptions}
    queued = {j.id: j for j in snapshot.queued}
    out: list[_Holder] = []
    for run in snapshot.running:
        if (
            run.job.id not in preempted
            and run.job.preemptible
            and snapshot.now - run.started_at >= min_run_s
        ):
            out.append(_Holder(run.job, run.workers, "", True))
    out.extend(_Holder(queued[p.job_id], p.workers, "", False) for p in plan.placements)
    kept: list[_Holder] = []
    for h in out:
        types = {nodes[w.node_id].gpu_type if w.node_id in nodes else None for w in h.workers}
        gpu_type = types.pop() if len(types) == 1 else None
        if gpu_type is not None and norms.get(h.job.id) and gpu_type in norms[h.job.id]:
            h.gpu_type = h.origin = gpu_type
            kept.append(h)
    return kept


def _swaps(
    holders: list[_Holder], norms: NormalisedRates, min_gain: float, pool: FreePool
) -> list[tuple[_Holder, _Holder]]:
    """Pairs to exchange, greedily by gain, each holder in at most one pair."""
    by_shape: dict[tuple, list[_Holder]] = {}
    for h in holders:
        by_shape.setdefault(h.shape(pool.index_of), []).append(h)
    pairs: list[tuple[float, str, str, _Holder, _Holder]] = []
    for group in by_shape.values():
        types = sorted({h.gpu_type for h in group})
        for i, ta in enumerate(types):
            for tb in types[i + 1 :]:
                on_a = [h for h in group if h.gpu_type == ta and tb in norms[h.job.id]]
                on_b = [h for h in group if h.gpu_type == tb and ta in norms[h.job.id]]
                # Best candidates first on each side: their sum is the pair's gain.
                on_a.sort(key=lambda h: (-(norms[h.job.id][tb] - norms[h.job.id][ta]), h.job.id))
                on_b.sort(key=lambda h: (-(norms[h.job.id][ta] - norms[h.job.id][tb]), h.job.id))
                for a, b in zip(on_a, on_b, strict=False):
                    gain = (norms[a.job.id][tb] - norms[a.job.id][ta]) + (
                        norms[b.job.id][ta] - norms[b.job.id][tb]
                    )
                    if gain < min_gain:
                        break
                    if not (_may_use(a, b.workers, pool) and _may_use(b, a.workers, pool)):
                        continue
                    pairs.append((-gain, a.job.id, b.job.id, a, b))
    pairs.sort(key=lambda p: p[:3])
    used: set[str] = set()
    chosen: list[tuple[_Holder, _Holder]] = []
    for _, a_id, b_id, a, b in pairs:
        if a_id not in used and b_id not in used:
            used.update((a_id, b_id))
            chosen.append((a, b))
    return chosen


def _may_use(h: _Holder, workers: tuple[WorkerSlot, ...], pool: FreePool) -> bool:
    """Whether ``h``'s job may run on these slots' nodes (its label selector)."""
    return all(
        labels_match(pool.nodes[pool.index_of[w.node_id]], h.job.label_selector) for w in workers
    )


def _free_after(snapshot: ClusterSnapshot, plan: Plan) -> FreePool:
    """Free capacity once the plan's placements and preemptions are applied."""
    pool = FreePool(snapshot.nodes)
    preempted = {p.job_id for p in plan.preemptions}
    for run in snapshot.running:
        if run.job.id in preempted:
            for w in run.workers:
                if w.node_id in pool.index_of:
                    pool.release(pool.index_of[w.node_id], w.resources)
    for placement in plan.placements:
        for w in placement.workers:
            pool.take(pool.index_of[w.node_id], w.resources)
    return pool


def _move_to_free(h: _Holder, norm: Mapping[str, float], pool: FreePool, min_gain: float) -> None:
    """Move ``h`` to free slots of its best type that beats its current one by ``min_gain``."""
    current = norm[h.gpu_type]
    for gpu_type in sorted(norm, key=lambda t: (-norm[t], t)):
        if norm[gpu_type] - current < min_gain:
            return
        alloc = pool.find(h.job, gpu_type)
        if alloc is None or sum(count for _, count in alloc) < len(h.workers):
            continue  # an elastic job does not shrink to move
        for w in h.workers:
            pool.release(pool.index_of[w.node_id], w.resources)
        h.workers, h.gpu_type, h.moved = pool.take_slots(alloc, h.job.per_worker), gpu_type, True
        return


def _renumber(workers: tuple[WorkerSlot, ...], job: JobView) -> tuple[WorkerSlot, ...]:
    """Another job's slots as this job's ranks 0..n-1."""
    return tuple(WorkerSlot(w.node_id, rank, job.per_worker) for rank, w in enumerate(workers))


def _with_moves(plan: Plan, moved: list[_Holder]) -> Plan:
    if not moved:
        return plan
    placements = {p.job_id: p for p in plan.placements}
    preemptions = list(plan.preemptions)
    for h in moved:
        placements[h.job.id] = Placement(h.job.id, h.workers)
        if h.running:
            reason = f"migrating from {h.origin} to {h.gpu_type}: it runs faster there"
            preemptions.append(Preemption(h.job.id, reason))
    return replace(plan, placements=tuple(placements.values()), preemptions=tuple(preemptions))
