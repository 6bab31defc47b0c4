"""Split a node's interval energy among the jobs running on it (pure: numbers in, joules out).

Rules, per `EnergySample`:

* Idle energy (`idle_joules`, the device's modelled idle draw) goes to the
  pool's **idle** bucket, not to jobs. The donor's machine would draw it
  whether or not the pool ran anything, and charging it to jobs would make a
  job's energy depend on how many neighbours it happened to have. Reporting
  it apart keeps `sum(jobs) + idle + other == node total`, which is what
  `/pool/summary`'s busy-vs-idle split needs.
* CPU active energy is split by each job's CPU seconds over the node's busy
  CPU seconds; the remainder (the donor's own processes, the agent, Ray's
  daemons) goes to **other**.
* GPU active energy goes wholly to the one job holding that GPU; a GPU held
  by several jobs is split by per-process utilisation shares (PIDs mapped to
  jobs; unmapped PIDs to other), or equally if NVML gave no shares. A GPU
  that no job holds goes to other.
* Everything is multiplied by the node's PUE (default 1.0, donor-set).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from commonpool.workers.telemetry.sample import EnergySample


@dataclass(frozen=True)
class JobUsage:
    """What one job used on this node during the interval."""

    job_id: str
    cpu_seconds: float
    gpus: frozenset[str] = frozenset()
    pids: frozenset[int] = frozenset()


@dataclass(frozen=True)
class JobEnergy:
    joules: float = 0.0
    estimated_joules: float = 0.0


@dataclass(frozen=True)
class NodeAttribution:
    """A node's interval energy (PUE applied): per job, idle, and non-pool activity."""

    jobs: dict[str, JobEnergy] = field(default_factory=dict)
    idle_joules: float = 0.0
    other_joules: float = 0.0
    pue: float = 1.0

    @property
    def total_joules(self) -> float:
        return sum(j.joules for j in self.jobs.values()) + self.idle_joules + self.other_joules


def split_cpu(
    active_joules: float, cpu_seconds: Mapping[str, float], node_busy_seconds: float
) -> tuple[dict[str, float], float]:
    """Active CPU energy by CPU-time share; returns (per job, other).

    The denominator is never below the jobs' own sum, so clock skew between
    the two psutil reads cannot hand out more than was measured.
    """
    denominator = max(node_busy_seconds, sum(cpu_seconds.values()))
    if denominator <= 0:
        return {}, active_joules
    shares = {job: active_joules * s / denominator for job, s in cpu_seconds.items()}
    return shares, active_joules - sum(shares.values())


def split_gpu(
    active_joules: float,
    holders: Sequence[JobUsage],
    process_shares: Mapping[int, float],
) -> tuple[dict[str, float], float]:
    """Active energy of one GPU among the jobs holding it; returns (per job, other)."""
    if not holders:
        return {}, active_joules
    if len(holders) == 1:
        return {holders[0].job_id: active_joules}, 0.0
    owner = {pid: job.job_id for job in holders for pid in job.pids}
    by_job: dict[str, float] = defaultdict(float)
    for pid, share in process_shares.items():
        if pid in owner:
            by_job[owner[pid]] += share
    if not by_job:
        equal = active_joules / len(holders)
        return {job.job_id: equal for job in holders}, 0.0
    parts = {job: active_joules * share for job, share in by_job.items()}
    return parts, active_joules - sum(parts.values())


def attribute_interval(
    samples: Sequence[EnergySample],
    jobs: Sequence[JobUsage],
    node_busy_cpu_seconds: float,
    pue: float = 1.0,
) -> NodeAttribution:
    """Attribute one interval's samples (one per device) to jobs, idle and other."""
    joules: dict[str, float] = defaultdict(float)
    estimated: dict[str, float] = defaultdict(float)
    idle = other = 0.0
    for sample in samples:
        active = max(sample.joules - sample.idle_joules, 0.0)
        idle += sample.joules - active
        if sample.is_gpu:
            holders = [job for job in jobs if sample.device in job.gpus]
            parts, rest = split_gpu(active, holders, sample.process_shares)
        else:
            cpu = {job.job_id: job.cpu_seconds for job in jobs}
            parts, rest = split_cpu(active, cpu, node_busy_cpu_seconds)
        other += rest
        for job_id, part in parts.items():
            joules[job_id] += part
            if sample.is_estimated:
                estimated[job_id] += part
    per_job = {
        job.job_id: JobEnergy(joules[job.job_id] * pue, estimated[job.job_id] * pue) for job in jobs
    }
    return NodeAttribution(per_job, idle * pue, other * pue, pue)
