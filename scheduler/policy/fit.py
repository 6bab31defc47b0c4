"""Where a gang fits: a free-capacity index bucketed by resource shape.

Each cycle copies the snapshot's free resources into a :class:`FreePool`. GPU nodes sit in
buckets keyed by ``(gpu_type, free gpus)``; CPU-only work uses buckets keyed by free cpus.
A fit looks at the buckets that are large enough, best fit first, so a decision costs
O(buckets + nodes touched), not O(nodes): this is what keeps 10k nodes x 100k jobs fast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .snapshot import JobView, NodeView, Resources, WorkerSlot

CPU_BUCKETS = 257  # nodes with more free cpus than this share the last bucket
Alloc = list[tuple[int, int]]  # (node index, workers on that node)


def labels_match(node: NodeView, selector: object) -> bool:
    """True if the node carries every label of the selector."""
    return all(node.labels.get(k) == v for k, v in selector.items())  # type: ignore[attr-defined]


class FreePool:
    """Mutable free capacity of one cycle, with shape buckets kept in sync on take/release."""

    def __init__(self, nodes: Sequence[NodeView]) -> None:
        self.nodes = tuple(nodes)
        self.index_of = {n.id: i for i, n in enumerate(self.nodes)}
        self.cpus = [n.free.cpus for n in self.nodes]
        self.mem = [n.free.memory_bytes for n in self.nodes]
        self.gpus = [n.free.gpus for n in self.nodes]
        self.is_gpu = [n.total.gpus > 0 for n in self.nodes]
        self.generation = 0  # bumped whenever capacity grows, invalidating cached failures
        self.gpu_types: tuple[str | None, ...] = tuple(
            sorted({n.gpu_type for n in self.nodes if n.total.gpus > 0}, key=_type_key)
        )
        self.type_total: dict[str | None, int] = {t: 0 for t in self.gpu_types}
        self.type_free: dict[str | None, int] = {t: 0 for t in self.gpu_types}
        self.type_largest_node: dict[str | None, int] = {t: 0 for t in self.gpu_types}
        self._gpu_buckets: dict[str | None, list[dict[int, None]]] = {}
        for n in self.nodes:
            if n.total.gpus > 0:
                t = n.gpu_type
                self.type_total[t] += n.total.gpus
                self.type_largest_node[t] = max(self.type_largest_node[t], n.total.gpus)
        for t in self.gpu_types:
            self._gpu_buckets[t] = [{} for _ in range(self.type_largest_node[t] + 1)]
        # [cpu-only nodes, gpu nodes]: cpu jobs try cpu-only nodes first to keep GPUs usable.
        self._cpu_buckets = ([{} for _ in range(CPU_BUCKETS)], [{} for _ in range(CPU_BUCKETS)])
        for i, n in enumerate(self.nodes):
            self._insert(i)
            if n.total.gpus > 0:
                self.type_free[n.gpu_type] += max(0, self.gpus[i])

    # -- bucket bookkeeping ---------------------------------------------------------------
    def _keys(self, i: int) -> tuple[int, int]:
        g = min(max(0, self.gpus[i]), self.type_largest_node.get(self.nodes[i].gpu_type, 0))
        c = min(CPU_BUCKETS - 1, max(0, math.floor(self.cpus[i] + 1e-9)))
        return g, c

    def _insert(self, i: int) -> None:
        g, c = self._keys(i)
        if self.is_gpu[i]:
            self._gpu_buckets[self.nodes[i].gpu_type][g][i] = None
        self._cpu_buckets[self.is_gpu[i]][c][i] = None

    def _remove(self, i: int) -> None:
        g, c = self._keys(i)
        if self.is_gpu[i]:
            del self._gpu_buckets[self.nodes[i].gpu_type][g][i]
        del self._cpu_buckets[self.is_gpu[i]][c][i]

    def _adjust(self, i: int, res: Resources, sign: int) -> None:
        self._remove(i)
        self.cpus[i] += sign * res.cpus
        self.mem[i] += sign * res.memory_bytes
        self.gpus[i] += sign * res.gpus
        if self.is_gpu[i]:
            self.type_free[self.nodes[i].gpu_type] += sign * res.gpus
        self._insert(i)

    def take(self, i: int, res: Resources) -> None:
        """Reserve ``res`` on node ``i``."""
        self._adjust(i, res, -1)

    def take_slots(self, alloc: Alloc, per_worker: Resources) -> tuple[WorkerSlot, ...]:
        """Reserve an allocation's workers; their slots with ranks 0..n-1 in node order."""
        slots: list[WorkerSlot] = []
        for i, count in alloc:
            node_id = self.nodes[i].id
            for _ in range(count):
                slots.append(WorkerSlot(node_id, len(slots), per_worker))
            self.take(i, per_worker.scaled(count))
        return tuple(slots)

    def release(self, i: int, res: Resources) -> None:
        """Give ``res`` back to node ``i`` (a preempted worker, held capacity, a what-if)."""
        self._adjust(i, res, +1)
        self.generation += 1

    # -- queries --------------------------------------------------------------------------
    def capacity(self, i: int, per_worker: Resources) -> int:
        """Workers of this shape that node ``i`` can still take."""
        return per_worker.copies_in(Resources(self.cpus[i], self.mem[i], self.gpus[i]))

    def largest_free_block(self, gpu_type: str | None) -> int:
        """Most free gpus on any single node of this type (0 if none)."""
        buckets = self._gpu_buckets.get(gpu_type, [])
        for g in range(len(buckets) - 1, 0, -1):
            if buckets[g]:
                return g
        return 0

    def _families(self, job: JobView, gpu_type: str | None) -> list[tuple[list[dict], int]]:
        """Bucket lists to search, with the bucket unit one worker needs."""
        pw = job.per_worker
        if pw.gpus > 0:
            return [(self._gpu_buckets[gpu_type], pw.gpus)] if gpu_type in self._gpu_buckets else []
        return [(fam, math.floor(pw.cpus + 1e-9)) for fam in self._cpu_buckets]

    def find(self, job: JobView, gpu_type: str | None) -> Alloc | None:
        """Nodes for the gang (or None): one node for all `workers_max` if possible, else the
        fewest large blocks for as many workers as fit, at least `workers_min`.

        Only nodes of ``gpu_type`` are used for GPU jobs, so a gang never mixes GPU types.
        """
        pw, n_max, n_min = job.per_worker, job.workers_max, job.workers_min
        if pw.gpus > 0 and self.type_free.get(gpu_type, 0) < pw.gpus * n_min:
            return None
        families = self._families(job, gpu_type)
        selector = job.label_selector
        # 1. best fit on a single node for the full gang. (Not yet for the minimum: an
        #    elastic job would rather run all its workers on two nodes than half on one.)
        for buckets, unit in families:
            start = unit * n_max
            if start >= len(buckets):
                if pw.gpus > 0:
                    continue  # no node of this type is that large
                start = len(buckets) - 1  # the last cpu bucket holds every big node
            for b in range(start, len(buckets)):
                for i in buckets[b]:
                    if (not selector or labels_match(self.nodes[i], selector)) and (
                        self.capacity(i, pw) >= n_max
                    ):
                        return [(i, n_max)]
        # 2. spread: largest free blocks first, so the gang touches as few nodes as possible.
        alloc: Alloc = []
        remaining = n_max
        for buckets, unit in families:
            for b in range(len(buckets) - 1, max(unit, 1) - 1, -1):
                for i in buckets[b]:
                    if selector and not labels_match(self.nodes[i], selector):
                        continue
                    k = min(self.capacity(i, pw), remaining)
                    if k > 0:
                        alloc.append((i, k))
                        remaining -= k
                        if remaining == 0:
                            return alloc
        return alloc if n_max - remaining >= n_min else None


def _type_key(t: str | None) -> tuple[int, str]:
    return (t is None, t or "")
