"""Tiny builders with valid defaults for hand-made snapshots."""

from __future__ import annotations

from commonpool.scheduler.policy import ClusterSnapshot, JobView, NodeView, Resources

GIB = 2**30


def node(
    node_id: str, gpus: int = 4, gpu_type: str | None = "v100", free_gpus: int | None = None,
    cpus: float = 32, **kw: object,
) -> NodeView:
    total = Resources(cpus, 256 * GIB, gpus)
    free_g = gpus if free_gpus is None else free_gpus
    free = Resources(cpus * (free_g / gpus) if gpus else cpus, 256 * GIB, free_g)
    return NodeView(node_id, total, free, gpu_type if gpus else None, **kw)  # type: ignore[arg-type]


def job(
    job_id: str, gpus: int = 1, workers: int = 1, submitted_at: float = 0.0, **kw: object
) -> JobView:
    return JobView(
        job_id, Resources(1, GIB, gpus), workers, workers, submitted_at=submitted_at, **kw  # type: ignore[arg-type]
    )


def snapshot(nodes: list[NodeView], queued: list[JobView], **kw: object) -> ClusterSnapshot:
    return ClusterSnapshot(0.0, tuple(nodes), tuple(queued), **kw)  # type: ignore[arg-type]
