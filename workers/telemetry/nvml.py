"""GPU energy through NVML (the `pynvml` module of the `nvidia-ml-py` package).

Per GPU, the best of: the total-energy counter (`nvmlDeviceGetTotalEnergyConsumption`,
mJ since driver load, Volta and newer) as a delta; polled power
(`nvmlDeviceGetPowerUsage`, mW) integrated with the trapezoid rule; the
utilisation model. Per-process SM utilisation (`nvmlDeviceGetProcessUtilization`,
else an equal split over `nvmlDeviceGetComputeRunningProcesses`) lets the
attribution split a GPU shared by several jobs.

The NVML module is passed in, never imported at module level, so tests hand
in a fake with the same call signatures and nodes without NVML still import
this file. A GPU that stops answering raises `MeterLost` from `read`.
"""

from __future__ import annotations

import importlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from commonpool.workers.telemetry.model import PowerModel, TdpTable, gpu_power_model
from commonpool.workers.telemetry.sample import EnergyMethod, MeterDelta, MeterLost

_LOST_ERRORS = ("NVMLError_GpuIsLost", "NVMLError_GpuNotFound", "NVMLError_Uninitialized")


def load_nvml() -> Any | None:
    """The real `pynvml` module, or None when nvidia-ml-py is not installed."""
    try:
        return importlib.import_module("pynvml")
    except ImportError:
        return None


def _errors(nvml: Any, names: tuple[str, ...]) -> tuple[type[BaseException], ...]:
    return tuple(getattr(nvml, n) for n in names if hasattr(nvml, n))


@dataclass
class GpuDiscovery:
    """What NVML offered at start-up: meters, or why there are none / why a GPU was skipped."""

    meters: list[NvmlGpuMeter] = field(default_factory=list)
    unavailable: str | None = None
    skipped: dict[int, str] = field(default_factory=dict)


class NvmlGpuMeter:
    """One GPU as a `Meter`; its method is fixed at start-up by `probe_method`."""

    def __init__(
        self, nvml: Any, index: int, handle: Any, method: EnergyMethod, model: PowerModel
    ) -> None:
        self.nvml = nvml
        self.index = index
        self.handle = handle
        self.method = method
        self.model = model
        self.device = f"gpu{index}"
        self._last_time = 0.0
        self._last_energy_mj = 0
        self._last_power_w = 0.0

    def _power_w(self) -> float:
        return self.nvml.nvmlDeviceGetPowerUsage(self.handle) / 1000.0

    def start(self, now: float) -> None:
        try:
            if self.method is EnergyMethod.NVML_ENERGY:
                self._last_energy_mj = self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
            elif self.method is EnergyMethod.NVML_POWER:
                self._last_power_w = self._power_w()
        except self.nvml.NVMLError as exc:
            raise MeterLost(f"{self.device}: {exc}") from exc
        self._last_time = now

    def read(self, now: float) -> MeterDelta:
        seconds = max(now - self._last_time, 0.0)
        try:
            utilization = self._utilization()
            joules = self._joules(seconds, utilization)
            shares = self._process_shares()
        except self.nvml.NVMLError as exc:
            raise MeterLost(f"{self.device}: {exc}") from exc
        self._last_time = now
        return MeterDelta(joules, utilization, self.model.idle_w, shares)

    def _joules(self, seconds: float, utilization: float | None) -> float:
        if self.method is EnergyMethod.NVML_ENERGY:
            current = self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
            previous, self._last_energy_mj = self._last_energy_mj, current
            if current >= previous:
                return (current - previous) / 1000.0
            # The counter restarts when the driver reloads: bridge the gap with power.
            return self._power_w() * seconds
        if self.method is EnergyMethod.NVML_POWER:
            power = self._power_w()
            previous_w, self._last_power_w = self._last_power_w, power
            return (previous_w + power) / 2.0 * seconds
        return self.model.watts(utilization or 0.0) * seconds

    def _utilization(self) -> float | None:
        try:
            return self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu / 100.0
        except _errors(self.nvml, _LOST_ERRORS):
            raise
        except self.nvml.NVMLError:
            return None

    def _process_shares(self) -> dict[int, float]:
        """PID -> share of this GPU's work since the previous read (empty when idle)."""
        since_us = int(self._last_time * 1e6)
        try:
            samples = self.nvml.nvmlDeviceGetProcessUtilization(self.handle, since_us)
        except _errors(self.nvml, _LOST_ERRORS):
            raise
        except _errors(self.nvml, ("NVMLError_NotFound",)):
            return {}
        except self.nvml.NVMLError:
            return self._equal_shares()
        busy: dict[int, float] = defaultdict(float)
        for sample in samples:
            busy[sample.pid] += sample.smUtil
        total = sum(busy.values())
        if total <= 0:
            return {pid: 1.0 / len(busy) for pid in busy}
        return {pid: value / total for pid, value in busy.items()}

    def _equal_shares(self) -> dict[int, float]:
        """Fallback when per-process utilisation is unsupported: split among running processes."""
        try:
            pids = {p.pid for p in self.nvml.nvmlDeviceGetComputeRunningProcesses(self.handle)}
        except _errors(self.nvml, _LOST_ERRORS):
            raise
        except self.nvml.NVMLError:
            return {}
        return {pid: 1.0 / len(pids) for pid in pids}


def probe_method(nvml: Any, handle: Any) -> EnergyMethod:
    """Best method this GPU supports: energy counter, else power, else the model."""
    for method, call in (
        (EnergyMethod.NVML_ENERGY, nvml.nvmlDeviceGetTotalEnergyConsumption),
        (EnergyMethod.NVML_POWER, nvml.nvmlDeviceGetPowerUsage),
    ):
        try:
            call(handle)
            return method
        except _errors(nvml, _LOST_ERRORS):
            raise
        except nvml.NVMLError:
            continue
    return EnergyMethod.MODEL


def discover_gpus(nvml: Any | None, table: TdpTable | None = None) -> GpuDiscovery:
    """Initialise NVML and build one meter per GPU; never raises for a missing driver or GPU."""
    if nvml is None:
        return GpuDiscovery(unavailable="nvidia-ml-py not installed")
    try:
        nvml.nvmlInit()
        count = nvml.nvmlDeviceGetCount()
    except nvml.NVMLError as exc:
        return GpuDiscovery(unavailable=f"NVML unavailable: {exc}")
    found = GpuDiscovery(unavailable=None if count else "no GPU")
    for index in range(count):
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            name = nvml.nvmlDeviceGetName(handle)
            method = probe_method(nvml, handle)
        except nvml.NVMLError as exc:
            found.skipped[index] = str(exc)
            continue
        try:
            limit_w: float | None = nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0
        except nvml.NVMLError:
            limit_w = None
        model = gpu_power_model(name, limit_w, table)
        found.meters.append(NvmlGpuMeter(nvml, index, handle, method, model))
    return found
