"""Node-side energy telemetry: samplers (NVML, RAPL, utilisation model) and job attribution.

Library code only (no HTTP, no database): the agent owns a `NodeEnergySampler`,
calls `sample()` at its sampling rate and `attribute_interval()` with the
jobs it runs, and ships the results in its heartbeat.
"""

from commonpool.workers.telemetry.attribution import (
    JobEnergy,
    JobUsage,
    NodeAttribution,
    attribute_interval,
)
from commonpool.workers.telemetry.cputime import NodeCpuTimes, ProcessCpuTracker
from commonpool.workers.telemetry.sample import EnergyMethod, EnergySample
from commonpool.workers.telemetry.sampler import NodeEnergySampler

__all__ = [
    "EnergyMethod",
    "EnergySample",
    "JobEnergy",
    "JobUsage",
    "NodeAttribution",
    "NodeCpuTimes",
    "NodeEnergySampler",
    "ProcessCpuTracker",
    "attribute_interval",
]
