"""One object per node that owns every energy meter and turns them into `EnergySample`s.

At start-up it picks the best method per device (GPU: nvml_energy >
nvml_power > model; CPU: rapl > model) and records it with a note saying
why, so a job's report can say "estimated from utilisation: no power
counter on this node". Afterwards `sample()` yields one `EnergySample` per
device for the interval since the previous call; the agent calls it at its
sampling rate (e.g. 1 Hz) and aggregates for heartbeats.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from commonpool.workers.telemetry.cputime import NodeCpuTimes
from commonpool.workers.telemetry.model import (
    ModelMeter,
    PowerCurve,
    TdpTable,
    cpu_model_name,
    cpu_power_model,
)
from commonpool.workers.telemetry.nvml import discover_gpus, load_nvml
from commonpool.workers.telemetry.rapl import (
    POWERCAP_ROOT,
    RaplMeter,
    RaplUnavailable,
    Reader,
    find_package_domains,
    read_sysfs,
)
from commonpool.workers.telemetry.sample import EnergyMethod, EnergySample, Meter, MeterLost

log = logging.getLogger(__name__)

AUTO: Any = object()
"""Sentinel for `probe(nvml=...)`: import the real pynvml if installed."""


class NodeEnergySampler:
    """Reads a node's meters; drops lost GPUs, swaps a lost CPU counter for a model."""

    def __init__(
        self,
        meters: Sequence[Meter],
        *,
        clock: Callable[[], float] = time.time,
        notes: dict[str, str] | None = None,
        cpu_fallback: Callable[[], Meter] | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.meters: list[Meter] = list(meters)
        self.notes = dict(notes or {})
        self.lost: dict[str, str] = {}
        self._clock = clock
        self._cpu_fallback = cpu_fallback
        self._on_close = on_close
        self._last: float | None = None

    @classmethod
    def probe(
        cls,
        *,
        nvml: Any = AUTO,
        powercap_root: Path = POWERCAP_ROOT,
        reader: Reader = read_sysfs,
        cpuinfo: str | None = None,
        logical_cpus: int | None = None,
        cpu_utilization: Callable[[], float | None] | None = None,
        table: TdpTable | None = None,
        curve: PowerCurve = PowerCurve.LINEAR,
        clock: Callable[[], float] = time.time,
    ) -> NodeEnergySampler:
        """Discover devices and choose each one's method; never raises for missing hardware.

        `nvml=None` disables GPUs; `cpuinfo` is the text of /proc/cpuinfo.
        """
        if cpuinfo is None:
            cpuinfo = _read_text(Path("/proc/cpuinfo"))
        cpus = logical_cpus or os.cpu_count() or 1
        utilization = cpu_utilization or NodeCpuTimes().utilization
        cpu_model = cpu_power_model(cpu_model_name(cpuinfo), cpus, table, curve)
        notes: dict[str, str] = {}

        def model_cpu() -> Meter:
            return ModelMeter("cpu", cpu_model, utilization)

        meters: list[Meter] = []
        try:
            domains = find_package_domains(powercap_root, reader)
            meters.append(RaplMeter(domains, cpu_model.idle_w, utilization, reader))
            notes["cpu"] = f"RAPL packages {[d.name for d in domains]}"
        except RaplUnavailable as exc:
            meters.append(model_cpu())
            notes["cpu"] = f"estimated from utilisation ({exc}); {cpu_model.basis}"

        module = load_nvml() if nvml is AUTO else nvml
        gpus = discover_gpus(module, table)
        for gpu in gpus.meters:
            meters.append(gpu)
            if gpu.method is EnergyMethod.MODEL:
                reason = "estimated from utilisation (no power counter)"
                notes[gpu.device] = f"{reason}; {gpu.model.basis}"
            else:
                notes[gpu.device] = f"NVML {gpu.method.value}"
        if gpus.unavailable:
            notes["gpu"] = gpus.unavailable
        for index, reason in gpus.skipped.items():
            notes[f"gpu{index}"] = f"skipped at start-up: {reason}"
        on_close = module.nvmlShutdown if gpus.meters and module is not None else None
        return cls(meters, clock=clock, notes=notes, cpu_fallback=model_cpu, on_close=on_close)

    @property
    def methods(self) -> dict[str, EnergyMethod]:
        """Device -> method currently in use; store it with the node at enrolment."""
        return {m.device: m.method for m in self.meters}

    def start(self) -> None:
        """Take every meter's baseline; the first `sample()` covers the time since."""
        now = self._clock()
        for meter in list(self.meters):
            self._guard(meter, lambda m: m.start(now), now)
        self._last = now

    def sample(self) -> list[EnergySample]:
        """One sample per live device for the interval since the previous call (or `start`)."""
        if self._last is None:
            self.start()
            return []
        now = self._clock()
        if now <= self._last:
            return []
        start, end = _utc(self._last), _utc(now)
        samples = []
        for meter in list(self.meters):
            delta = self._guard(meter, lambda m: m.read(now), now)
            if delta is None:
                continue
            idle = min(delta.joules, delta.idle_watts * (now - self._last))
            samples.append(
                EnergySample(
                    start=start,
                    end=end,
                    joules=delta.joules,
                    method=meter.method,
                    is_estimated=meter.method.is_estimated,
                    device=meter.device,
                    utilization=delta.utilization,
                    idle_joules=idle,
                    process_shares=delta.process_shares,
                )
            )
        self._last = now
        return samples

    def _guard(self, meter: Meter, call: Callable[[Meter], Any], now: float) -> Any:
        """Run a meter call; on `MeterLost` drop the meter (or swap the CPU to the model)."""
        try:
            return call(meter)
        except MeterLost as exc:
            log.warning("energy meter %s lost: %s", meter.device, exc)
            self.lost[meter.device] = str(exc)
            self.meters.remove(meter)
            if meter.device == "cpu" and self._cpu_fallback is not None:
                replacement = self._cpu_fallback()
                replacement.start(now)
                self.meters.append(replacement)
                self.notes["cpu"] = f"estimated from utilisation after {meter.method}: {exc}"
            return None

    def close(self) -> None:
        if self._on_close is not None:
            self._on_close()
            self._on_close = None


def _utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
