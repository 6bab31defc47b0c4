"""Why-pending messages: one short human sentence per waiting job.

The API and CLI show these verbatim, so they name the numbers a user can act on
(how many gpus of which type, the largest free block) rather than internal state.
"""

from __future__ import annotations

from collections.abc import Sequence

from .fit import FreePool, labels_match
from .snapshot import JobView


def demand_text(job: JobView) -> str:
    """E.g. ``8 gpus of type v100 (2 workers x 4)``."""
    pw, n = job.per_worker, job.workers_min
    if pw.gpus > 0:
        kind = f" of type {job.gpu_type}" if job.gpu_type else ""
        split = f" ({n} workers x {pw.gpus})" if n > 1 else ""
        return f"{pw.gpus * n} gpus{kind}{split}"
    split = f" ({n} workers x {pw.cpus:g})" if n > 1 else ""
    return f"{pw.cpus * n:g} cpus{split}"


def never_fits(pool: FreePool, job: JobView, types: Sequence[str | None]) -> bool:
    """True if the gang exceeds what an empty pool of any allowed type could hold."""
    if job.per_worker.gpus == 0:
        return False
    need = job.per_worker.gpus * job.workers_min
    return all(pool.type_total.get(t, 0) < need for t in types)


def explain_no_fit(pool: FreePool, job: JobView, types: Sequence[str | None]) -> str:
    """The most specific reason the gang does not fit the free capacity now."""
    need = demand_text(job)
    if job.per_worker.gpus > 0 and not types:
        return f"needs {need}: no schedulable node has gpu type {job.gpu_type}"
    if job.label_selector and not any(labels_match(n, job.label_selector) for n in pool.nodes):
        sel = ",".join(f"{k}={v}" for k, v in sorted(job.label_selector.items()))
        return f"needs {need}: no schedulable node matches labels {sel}"
    if job.per_worker.gpus == 0:
        return f"needs {need}: not enough free cpus/memory on any node"
    if never_fits(pool, job, types):
        biggest = max(pool.type_total.get(t, 0) for t in types)
        return f"needs {need}: more than the pool has ({biggest} gpus of one type)"
    blocks = ", ".join(
        f"{t or 'gpu'} {pool.largest_free_block(t)}/{pool.type_free.get(t, 0)}" for t in types
    )
    return f"needs {need}, largest free block/free total per type: {blocks}"
