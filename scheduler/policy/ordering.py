"""Queue orders shared by several policies."""

from __future__ import annotations

from collections.abc import Iterable

from .snapshot import JobView


def fifo_key(job: JobView) -> tuple[int, float, str]:
    """Higher priority first, then earlier submission, then id (a total, stable order)."""
    return (-job.priority, job.submitted_at, job.id)


def fifo_order(jobs: Iterable[JobView]) -> list[JobView]:
    return sorted(jobs, key=fifo_key)


def gpu_demand(job: JobView) -> int:
    """GPUs of the gang at its minimum size (the unit fairness and LAS count in)."""
    return job.per_worker.gpus * job.workers_min
