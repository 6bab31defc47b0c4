"""A steady fake CPU meter and a manual clock for the agent's energy recorder."""

from __future__ import annotations

import os

from commonpool.workers.agent.energy import EnergyRecorder, JobProcesses
from commonpool.workers.telemetry import NodeEnergySampler
from commonpool.workers.telemetry.sample import EnergyMethod, MeterDelta


class SteadyMeter:
    """A CPU drawing a constant 100 W of which 20 W is idle (an estimate, like the model)."""

    device = "cpu"
    method = EnergyMethod.MODEL

    def __init__(self) -> None:
        self.last = 0.0

    def start(self, now: float) -> None:
        self.last = now

    def read(self, now: float) -> MeterDelta:
        seconds, self.last = now - self.last, now
        return MeterDelta(joules=100.0 * seconds, utilization=0.5, idle_watts=20.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def steady_recorder(clock: Clock, **kw: object) -> EnergyRecorder:
    """A recorder over `SteadyMeter`, finding job processes under this test process."""
    sampler = NodeEnergySampler([SteadyMeter()], clock=clock, notes={"cpu": "steady test"})
    processes = JobProcesses(lambda: os.getpid(), refresh_s=0)
    return EnergyRecorder(sampler, processes, **kw)  # type: ignore[arg-type]
