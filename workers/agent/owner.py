"""The owner's activity on a donated machine, as `OwnerSample`s for `reclaim.py`.

Two signals:

* **the busy file**: the node is busy while it exists. A hook for screen
  lock or user-presence tools (touch it on unlock, remove it on lock), and
  deterministic for tests.
* **the owner's CPU use**: the machine's busy CPU time minus the CPU time of
  the agent's own process tree (the agent, the Ray worker node it started
  with `ray start --block`, and so every pool job's worker, which Ray starts
  under that node), in percent of all logical CPUs. The machine's side is
  the energy split's `NodeCpuTimes` (`workers/telemetry/cputime.py`); the
  tree's side differs from its `ProcessCpuTracker` in one rule: a process
  first seen in the tree counts from its start. The tracker instead asks
  whether the process was born after its previous call, which psutil cannot
  tell within a second (its start times derive from the boot time in whole
  seconds), so a Ray worker started just now would count as the owner's.

The process tree is rescanned every `refresh_s` (a scan reads every
process's `/proc` entry), and at once whenever the owner looked busy at the
previous sample or the agent (re)started its Ray node: a pool worker
started since the last scan would otherwise count as the owner's until the
next one. What cannot be told apart counts as the owner's: other services,
kernel time, and a pool process that lived less than one sample.
`busy_after_s` (sustained use) absorbs such blips.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from commonpool.workers.telemetry import NodeCpuTimes

from .reclaim import OwnerSample

OWNER_CHECK_S = 1.0
"""How often the agent samples the owner's activity."""


class OwnerProbe:
    def __init__(
        self,
        *,
        busy_file: Path | None = None,
        watch_cpu: bool = False,
        root_pid: int | None = None,
        refresh_s: float = 5.0,
        suspicious_percent: float = 100.0,
        cpu_times: Callable[[], Any] = psutil.cpu_times,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`suspicious_percent`: owner CPU at which the next sample rescans the tree first."""
        self.busy_file = busy_file
        self.watch_cpu = watch_cpu
        self._root_pid = root_pid if root_pid is not None else os.getpid()
        self._refresh_s = refresh_s
        self._suspicious = suspicious_percent
        self._clock = clock
        self._node = NodeCpuTimes(cpu_times) if watch_cpu else None
        self._cpu_s: dict[tuple[int, float], float] | None = None  # None: not read yet
        self._tree: frozenset[int] = frozenset()
        self._scanned_at: float | None = None
        self._rescan = True
        if watch_cpu:
            self._cpu_percent()  # the first reading starts every counter

    def sample(self) -> OwnerSample:
        busy = self.busy_file is not None and self.busy_file.exists()
        return OwnerSample(
            at=self._clock(),
            cpu_percent=self._cpu_percent() if self.watch_cpu else None,
            busy_file=busy,
        )

    def invalidate(self) -> None:
        """The agent's process tree changed (its Ray node started or stopped): rescan it."""
        self._rescan = True

    def describe(self) -> str:
        signals = []
        if self.busy_file is not None:
            signals.append(f"busy file {self.busy_file}")
        if self.watch_cpu:
            signals.append("owner CPU use (outside the agent, its Ray node and pool jobs)")
        return " and ".join(signals)

    def _cpu_percent(self) -> float | None:
        assert self._node is not None
        now = self._clock()
        if self._rescan or self._scanned_at is None or now - self._scanned_at >= self._refresh_s:
            self._tree = self._scan()
            self._scanned_at = now
        ours = self._tree_cpu_s()
        busy, elapsed = self._node.delta()
        if elapsed <= 0:
            return None
        percent = min(max(busy - ours, 0.0) / elapsed * 100.0, 100.0)
        self._rescan = percent >= self._suspicious
        return percent

    def _tree_cpu_s(self) -> float:
        """CPU seconds the agent's tree used since the previous call."""
        seen: dict[tuple[int, float], float] = {}
        used = 0.0
        for pid in self._tree:
            try:
                process = psutil.Process(pid)
                with process.oneshot():
                    key = (pid, process.create_time())
                    times = process.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue  # gone: its last partial interval counts as the owner's
            seen[key] = times.user + times.system
            if self._cpu_s is not None:
                used += max(seen[key] - self._cpu_s.get(key, 0.0), 0.0)
        self._cpu_s = seen
        return used

    def _scan(self) -> frozenset[int]:
        try:
            root = psutil.Process(self._root_pid)
            return frozenset([root.pid, *(p.pid for p in root.children(recursive=True))])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return frozenset()
