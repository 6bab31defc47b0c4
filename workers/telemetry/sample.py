"""The vocabulary every sampler speaks: methods, per-interval samples, the meter protocol.

Kept apart from the samplers so that NVML, RAPL and the model can be swapped
per device while the agent, the attribution and the heartbeat only ever see
`EnergySample`s that say *how* each joule was obtained.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol


class EnergyMethod(StrEnum):
    """How a device's energy was obtained, best first.

    The order matters: the sampler prefers a hardware energy counter (no
    sampling error), then polled power (integration error), then the
    utilisation model (an estimate, flagged as such).
    """

    NVML_ENERGY = "nvml_energy"
    NVML_POWER = "nvml_power"
    RAPL = "rapl"
    MODEL = "model"

    @property
    def is_estimated(self) -> bool:
        """Only the model invents watts; the others read them from hardware."""
        return self is EnergyMethod.MODEL


class MeterLost(Exception):
    """A device stopped answering mid-run (GPU fell off the bus, sysfs vanished).

    Raised by `Meter.read` so the sampler can drop or replace the meter
    instead of the agent crashing.
    """


@dataclass(frozen=True)
class MeterDelta:
    """What one meter saw since its previous read.

    `process_shares` maps PID -> fraction of the device's activity (sums to
    1 when non-empty); only GPUs fill it, for attributing a shared GPU.
    `idle_watts` is the device's modelled idle draw, used to split busy from
    idle energy even when the total is measured.
    """

    joules: float
    utilization: float | None
    idle_watts: float
    process_shares: Mapping[int, float] = field(default_factory=dict)


class Meter(Protocol):
    """One device's energy source. `start` sets the baseline, `read` returns the delta."""

    device: str
    method: EnergyMethod

    def start(self, now: float) -> None: ...

    def read(self, now: float) -> MeterDelta: ...


@dataclass(frozen=True)
class EnergySample:
    """Energy of one device over one interval, with its provenance.

    `device` is `cpu` or `gpu<N>`; `idle_joules` is the part of `joules`
    the device would have drawn idle (modelled), reported so the pool can
    separate busy from idle energy.
    """

    start: datetime
    end: datetime
    joules: float
    method: EnergyMethod
    is_estimated: bool
    device: str
    utilization: float | None
    idle_joules: float = 0.0
    process_shares: Mapping[int, float] = field(default_factory=dict)

    @property
    def is_gpu(self) -> bool:
        return self.device.startswith("gpu")

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()
