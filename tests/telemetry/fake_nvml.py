"""FakeNvml: a stand-in for the `pynvml` module (nvidia-ml-py) with the same call signatures.

Only the functions the telemetry code calls exist. Errors are the real
`pynvml.NVMLError` subclasses (built from the NVML return codes, exactly as
the real binding raises them), so the code under test catches what it
would catch on a GPU node. Tests mutate `FakeGpu` fields between samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pynvml
from pynvml import NVMLError


@dataclass
class FakeGpu:
    name: str = "NVIDIA A100-SXM4-40GB"
    energy_mj: int | None = 1_000_000
    """Total energy counter; None = NVML_ERROR_NOT_SUPPORTED (pre-Volta)."""
    power_mw: int | None = 100_000
    power_limit_mw: int | None = 400_000
    utilization: int = 0
    process_samples: list[tuple[int, int]] | None = field(default_factory=list)
    """(pid, smUtil) samples; None = per-process utilisation not supported."""
    running_pids: list[int] = field(default_factory=list)
    lost: bool = False


class FakeNvml:
    """Module-like object: pass it where the code expects `pynvml`."""

    NVMLError = NVMLError
    NVMLError_GpuIsLost = pynvml.NVMLError_GpuIsLost
    NVMLError_GpuNotFound = pynvml.NVMLError_GpuNotFound
    NVMLError_NotFound = pynvml.NVMLError_NotFound
    NVMLError_NotSupported = pynvml.NVMLError_NotSupported
    NVMLError_Uninitialized = pynvml.NVMLError_Uninitialized

    def __init__(self, gpus: list[FakeGpu] | None = None, init_error: int | None = None) -> None:
        self.gpus = gpus if gpus is not None else []
        self.init_error = init_error
        self.initialized = False
        self.shutdowns = 0
        self.process_utilization_calls: list[int] = []

    def _gpu(self, handle: int) -> FakeGpu:
        if not self.initialized:
            raise NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)
        gpu = self.gpus[handle]
        if gpu.lost:
            raise NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        return gpu

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.initialized = True

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1
        self.initialized = False

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        self._gpu(index)
        return index

    def nvmlDeviceGetName(self, handle: int) -> str:
        return self._gpu(handle).name

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        gpu = self._gpu(handle)
        if gpu.energy_mj is None:
            raise NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return gpu.energy_mj

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        gpu = self._gpu(handle)
        if gpu.power_mw is None:
            raise NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return gpu.power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: int) -> int:
        gpu = self._gpu(handle)
        if gpu.power_limit_mw is None:
            raise NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return gpu.power_limit_mw

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(gpu=self._gpu(handle).utilization, memory=0)

    def nvmlDeviceGetProcessUtilization(
        self, handle: int, timeStamp: int
    ) -> list[SimpleNamespace]:
        gpu = self._gpu(handle)
        self.process_utilization_calls.append(timeStamp)
        if gpu.process_samples is None:
            raise NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        if not gpu.process_samples:
            raise NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
        return [
            SimpleNamespace(pid=pid, timeStamp=timeStamp, smUtil=sm, memUtil=0, decUtil=0)
            for pid, sm in gpu.process_samples
        ]

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[SimpleNamespace]:
        return [SimpleNamespace(pid=pid, usedGpuMemory=0) for pid in self._gpu(handle).running_pids]
