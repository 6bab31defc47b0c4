"""Utilisation power model for devices that have no power or energy counter.

    P(u) = P_idle + (P_max - P_idle) * f(u),   u in [0, 1]

`f` is linear by default, the model of Cloud Carbon Footprint's compute
estimate (`minWatts + avgCpuUtilization * (maxWatts - minWatts)`, whose
coefficients come from SPECpower_ssj2008 results). `fan2007` is the
concave curve `f(u) = 2u - u**1.4` that Fan, Weber and Barroso fitted to
measured servers ("Power provisioning for a warehouse-sized computer",
ISCA 2007); it reads higher at partial load, so it is the cautious choice
when under-reporting matters more than over-reporting.

P_max is the TDP from `data/tdp.csv` (or the GPU's NVML power limit), and
P_idle a fixed fraction of it. Every joule from here is flagged estimated.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path

from commonpool.workers.telemetry.sample import EnergyMethod, MeterDelta

TDP_CSV = Path(__file__).parent / "data" / "tdp.csv"

CPU_IDLE_FRACTION = 0.74 / 3.5
"""Idle/max per vCPU in Cloud Carbon Footprint's AWS coefficients (0.74 W / 3.5 W)."""

GPU_IDLE_FRACTION = 0.15
"""Assumption, not a measurement: data-centre GPUs idle at roughly 10-20% of board power."""

DEFAULT_CPU_WATTS_PER_THREAD = 8.0
"""Unknown CPU: near the top of the table's W/thread (desktop parts, ~6-11 W) so we over- rather
than under-report; server parts sit at 2-5 W/thread."""

DEFAULT_GPU_TDP_W = 300.0
"""Unknown GPU without an NVML power limit: the common data-centre board power (V100/A100 PCIe)."""


class PowerCurve(StrEnum):
    LINEAR = "linear"
    FAN2007 = "fan2007"


def utilization_factor(u: float, curve: PowerCurve = PowerCurve.LINEAR) -> float:
    """f(u) for the chosen curve; u is clamped to [0, 1] since psutil/NVML can overshoot."""
    u = min(max(u, 0.0), 1.0)
    if curve is PowerCurve.FAN2007:
        return 2 * u - u**1.4
    return u


@dataclass(frozen=True)
class PowerModel:
    """Idle and max watts of one device, plus a human note saying where they came from."""

    idle_w: float
    max_w: float
    basis: str
    curve: PowerCurve = PowerCurve.LINEAR

    def watts(self, utilization: float) -> float:
        return self.idle_w + (self.max_w - self.idle_w) * utilization_factor(
            utilization, self.curve
        )


@dataclass(frozen=True)
class TdpEntry:
    kind: str
    pattern: str
    tdp_w: float
    threads: int | None
    source: str


def normalize_model_name(name: str) -> str:
    """Lower-case, drop (R)/(TM) and the clock suffix, so ARK names and cpuinfo agree."""
    text = re.sub(r"\((r|tm)\)", " ", name.lower())
    text = text.split("@")[0]
    return " ".join(text.split())


class TdpTable:
    """Device TDPs from a CSV; lookup by longest word-bounded pattern in the model name."""

    def __init__(self, entries: list[TdpEntry]) -> None:
        self._entries = sorted(entries, key=lambda e: len(e.pattern), reverse=True)

    @classmethod
    def load(cls, path: Path = TDP_CSV) -> TdpTable:
        lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
        entries = [
            TdpEntry(
                kind=row["kind"],
                pattern=row["pattern"].lower(),
                tdp_w=float(row["tdp_w"]),
                threads=int(row["threads"]) if row["threads"] else None,
                source=row["source"],
            )
            for row in csv.DictReader(lines)
        ]
        return cls(entries)

    def find(self, kind: str, model_name: str) -> TdpEntry | None:
        name = normalize_model_name(model_name)
        for entry in self._entries:
            bounded = rf"(?<![a-z0-9]){re.escape(entry.pattern)}(?![a-z0-9])"
            if entry.kind == kind and re.search(bounded, name):
                return entry
        return None


@cache
def default_table() -> TdpTable:
    return TdpTable.load()


def cpu_model_name(cpuinfo_text: str) -> str | None:
    """First "model name" of /proc/cpuinfo (x86); None on CPUs that do not publish one."""
    for line in cpuinfo_text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return None


def cpu_power_model(
    model_name: str | None,
    logical_cpus: int,
    table: TdpTable | None = None,
    curve: PowerCurve = PowerCurve.LINEAR,
) -> PowerModel:
    """Power model for the logical CPUs this node sees.

    The package TDP is scaled by visible/package threads: a 4-vCPU VM on a
    64-thread host must not be charged the whole socket, and a dual-socket
    box gets two.
    """
    entry = (table or default_table()).find("cpu", model_name) if model_name else None
    if entry is not None and entry.threads:
        max_w = entry.tdp_w * logical_cpus / entry.threads
        basis = (
            f"{entry.pattern}: {entry.tdp_w:g} W TDP / {entry.threads} threads "
            f"x {logical_cpus} logical CPUs ({entry.source})"
        )
    else:
        max_w = DEFAULT_CPU_WATTS_PER_THREAD * logical_cpus
        basis = (
            f"unknown CPU {model_name!r}: default {DEFAULT_CPU_WATTS_PER_THREAD:g} W "
            f"x {logical_cpus} logical CPUs"
        )
    return PowerModel(idle_w=max_w * CPU_IDLE_FRACTION, max_w=max_w, basis=basis, curve=curve)


def gpu_power_model(
    name: str | None,
    power_limit_w: float | None = None,
    table: TdpTable | None = None,
    curve: PowerCurve = PowerCurve.LINEAR,
) -> PowerModel:
    """Power model for one GPU: the board's own power limit beats the table, the table a default.

    The enforced limit reflects how the donor actually configured the card.
    """
    entry = (table or default_table()).find("gpu", name) if name else None
    if power_limit_w:
        max_w, basis = power_limit_w, f"{name}: NVML enforced power limit {power_limit_w:g} W"
    elif entry is not None:
        max_w, basis = entry.tdp_w, f"{entry.pattern}: {entry.tdp_w:g} W ({entry.source})"
    else:
        max_w, basis = DEFAULT_GPU_TDP_W, f"unknown GPU {name!r}: default {DEFAULT_GPU_TDP_W:g} W"
    return PowerModel(idle_w=max_w * GPU_IDLE_FRACTION, max_w=max_w, basis=basis, curve=curve)


class ModelMeter:
    """A `Meter` that estimates energy as P(u) x dt from a utilisation callable.

    `utilization` returns the mean busy fraction since its previous call
    (psutil.cpu_percent(None) semantics), so P is evaluated once per
    interval on the interval's mean load.
    """

    method = EnergyMethod.MODEL

    def __init__(
        self, device: str, model: PowerModel, utilization: Callable[[], float | None]
    ) -> None:
        self.device = device
        self.model = model
        self._utilization = utilization
        self._last: float | None = None

    def start(self, now: float) -> None:
        self._utilization()
        self._last = now

    def read(self, now: float) -> MeterDelta:
        seconds = max(now - self._last, 0.0) if self._last is not None else 0.0
        self._last = now
        util = self._utilization()
        return MeterDelta(
            joules=self.model.watts(util or 0.0) * seconds,
            utilization=util,
            idle_watts=self.model.idle_w,
        )
