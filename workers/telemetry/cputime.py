"""CPU-time bookkeeping from psutil: node utilisation and per-job CPU seconds.

Each object keeps its own previous reading, unlike `psutil.cpu_percent(None)`
whose hidden module state would be skewed by any other caller in the agent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import psutil


def _busy_and_total(times: Any) -> tuple[float, float]:
    """Busy and total CPU seconds; guest time is already inside user, steal is not ours."""
    busy = times.user + times.nice + times.system
    busy += getattr(times, "irq", 0.0) + getattr(times, "softirq", 0.0)
    idle = times.idle + getattr(times, "iowait", 0.0) + getattr(times, "steal", 0.0)
    return busy, busy + idle


class NodeCpuTimes:
    """Busy CPU seconds (summed over CPUs) and utilisation since the previous call."""

    def __init__(self, cpu_times: Callable[[], Any] = psutil.cpu_times) -> None:
        self._cpu_times = cpu_times
        self._last = _busy_and_total(cpu_times())

    def delta(self) -> tuple[float, float]:
        """(busy seconds, elapsed CPU seconds) since the previous call."""
        current = _busy_and_total(self._cpu_times())
        busy, total = current[0] - self._last[0], current[1] - self._last[1]
        self._last = current
        return max(busy, 0.0), max(total, 0.0)

    def utilization(self) -> float | None:
        """Mean busy fraction since the previous call; None if no time has passed."""
        busy, total = self.delta()
        return busy / total if total > 0 else None


class ProcessCpuTracker:
    """CPU seconds used by each job's processes between calls of `delta`.

    Keyed by (pid, create_time) so a recycled PID is not mistaken for the old
    process. A process first seen after the previous call counts from its
    start; one that exits between calls loses its last partial interval
    (psutil cannot read a dead process), which polling at 1 Hz keeps small.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._last: dict[tuple[int, float], float] = {}
        self._last_call: float | None = None

    def delta(self, jobs: Mapping[str, Iterable[int]]) -> dict[str, float]:
        now = self._clock()
        seen: dict[tuple[int, float], float] = {}
        used: dict[str, float] = {}
        for job, pids in jobs.items():
            used[job] = 0.0
            for pid in pids:
                try:
                    proc = psutil.Process(pid)
                    with proc.oneshot():
                        key = (pid, proc.create_time())
                        times = proc.cpu_times()
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
                cpu = times.user + times.system
                seen[key] = cpu
                if key in self._last:
                    base = self._last[key]
                elif self._last_call is not None and key[1] >= self._last_call:
                    base = 0.0
                else:
                    base = cpu
                used[job] += max(cpu - base, 0.0)
        self._last = seen
        self._last_call = now
        return used
