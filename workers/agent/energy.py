"""The agent's energy meter: sample at a fixed rate, attribute to jobs, ship bounded batches.

A background thread calls `NodeEnergySampler.sample()` every `interval_s`
(1 s by default) and attributes each sample at once, because a job's CPU
share must be read over the same interval as the energy. Samples are
folded into one open interval; each heartbeat closes it and sends every
interval not yet acknowledged. If heartbeats fail, closed intervals stay
buffered; past `max_intervals` the two oldest are merged (sums are exact,
only time resolution is lost), so memory and payload stay bounded however
long the server is away.

Which processes belong to which job: the Ray worker processes of this
node are descendants of the agent's own `ray start --block` process, and
every worker of a pool job carries `COMMONPOOL_JOB_ID=<job id>` in its
environment (the launcher sets it through Ray's runtime_env env_vars). So
the job's PIDs are the descendants of our Ray node whose
`/proc/<pid>/environ` names the job. Scoping to our Ray node's tree keeps
two agents on one host (the local pool) from claiming each other's
workers; the environment is used rather than the command line because Ray
renames workers (`ray::RayTrainWorker...`) and never shows the job id
there. Reading another process's environ needs the same user, which the
agent is (it started Ray). The map is refreshed every `refresh_s`.

Joules are sent before PUE: the server applies the node's registered PUE.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import psutil

from commonpool.api.schemas import (
    MAX_ENERGY_INTERVALS,
    MAX_ENERGY_JOBS,
    EnergyIntervalIn,
    EnergyReportIn,
    JobEnergyIn,
)
from commonpool.workers.job import ENV_JOB_ID
from commonpool.workers.telemetry import (
    EnergySample,
    JobUsage,
    NodeAttribution,
    NodeCpuTimes,
    NodeEnergySampler,
    ProcessCpuTracker,
    attribute_interval,
)

log = logging.getLogger(__name__)


class JobProcesses:
    """PIDs of each pool job's processes under one process tree (our Ray node)."""

    def __init__(
        self,
        root_pid: Callable[[], int | None],
        *,
        refresh_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._root_pid = root_pid
        self._refresh_s = refresh_s
        self._clock = clock
        self._cached: dict[str, frozenset[int]] = {}
        self._gpus: dict[str, frozenset[str]] = {}
        self._at: float | None = None

    def pids(self) -> dict[str, frozenset[int]]:
        self._refresh()
        return self._cached

    def gpus(self) -> dict[str, frozenset[str]]:
        """Each job's GPU devices (`gpu<N>`, as the samplers name them)."""
        self._refresh()
        return self._gpus

    def _refresh(self) -> None:
        now = self._clock()
        if self._at is None or now - self._at >= self._refresh_s:
            self._cached, self._gpus = self.scan_with_gpus()
            self._at = now

    def scan(self) -> dict[str, frozenset[int]]:
        return self.scan_with_gpus()[0]

    def scan_with_gpus(self) -> tuple[dict[str, frozenset[int]], dict[str, frozenset[str]]]:
        """PIDs per job and, from the workers' CUDA_VISIBLE_DEVICES (set by Ray to the
        GPUs it assigned), the job's GPUs."""
        root = self._root_pid()
        if root is None:
            return {}, {}
        try:
            children = psutil.Process(root).children(recursive=True)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return {}, {}
        found: dict[str, set[int]] = {}
        gpus: dict[str, set[str]] = {}
        for child in children:
            try:
                env = child.environ()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            job_id = env.get(ENV_JOB_ID)
            if job_id:
                found.setdefault(job_id, set()).add(child.pid)
                gpus.setdefault(job_id, set()).update(gpu_devices(env))
        return (
            {job: frozenset(p) for job, p in found.items()},
            {job: frozenset(g) for job, g in gpus.items() if g},
        )


def gpu_devices(env: Mapping[str, str]) -> set[str]:
    """`gpu<N>` for each index in CUDA_VISIBLE_DEVICES; UUID entries are not mapped (yet)."""
    visible = env.get("CUDA_VISIBLE_DEVICES", "")
    return {f"gpu{item.strip()}" for item in visible.split(",") if item.strip().isdigit()}


@dataclass
class OpenInterval:
    """Energy folded from consecutive samples; becomes one `EnergyIntervalIn`."""

    start: datetime
    end: datetime
    total_j: float = 0.0
    idle_j: float = 0.0
    other_j: float = 0.0
    estimated_j: float = 0.0
    busy_cpu_s: float = 0.0
    elapsed_cpu_s: float = 0.0
    jobs: dict[str, list[float]] = field(default_factory=dict)

    def add(
        self, samples: Sequence[EnergySample], shares: NodeAttribution, cpu: tuple[float, float]
    ) -> None:
        self.end = max(s.end for s in samples)
        self.total_j += sum(s.joules for s in samples)
        self.estimated_j += sum(s.joules for s in samples if s.is_estimated)
        self.idle_j += shares.idle_joules
        self.other_j += shares.other_joules
        self.busy_cpu_s += cpu[0]
        self.elapsed_cpu_s += cpu[1]
        for job_id, part in shares.jobs.items():
            acc = self.jobs.setdefault(job_id, [0.0, 0.0])
            acc[0] += part.joules
            acc[1] += part.estimated_joules

    def merge(self, later: OpenInterval) -> OpenInterval:
        """One interval spanning both; every sum is preserved."""
        jobs = {job: list(v) for job, v in self.jobs.items()}
        for job, (joules, estimated) in later.jobs.items():
            acc = jobs.setdefault(job, [0.0, 0.0])
            acc[0] += joules
            acc[1] += estimated
        return OpenInterval(
            self.start,
            later.end,
            self.total_j + later.total_j,
            self.idle_j + later.idle_j,
            self.other_j + later.other_j,
            self.estimated_j + later.estimated_j,
            self.busy_cpu_s + later.busy_cpu_s,
            self.elapsed_cpu_s + later.elapsed_cpu_s,
            jobs,
        )

    def to_schema(self, max_jobs: int = MAX_ENERGY_JOBS) -> EnergyIntervalIn:
        """The wire form; beyond `max_jobs` the smallest jobs' joules go to other."""
        ranked = sorted(self.jobs.items(), key=lambda kv: kv[1][0], reverse=True)
        kept, dropped = ranked[:max_jobs], ranked[max_jobs:]
        util = self.busy_cpu_s / self.elapsed_cpu_s if self.elapsed_cpu_s > 0 else None
        return EnergyIntervalIn(
            start=self.start,
            end=self.end,
            total_j=self.total_j,
            idle_j=self.idle_j,
            other_j=self.other_j + sum(v[0] for _, v in dropped),
            estimated_j=self.estimated_j,
            cpu_utilization=None if util is None else min(max(util, 0.0), 1.0),
            jobs={job: JobEnergyIn(joules=v[0], estimated_j=v[1]) for job, v in kept},
        )


class EnergyRecorder:
    """Samples on its own thread; `take()`/`ack()` hand batches to the heartbeat."""

    def __init__(
        self,
        sampler: NodeEnergySampler,
        processes: JobProcesses,
        *,
        interval_s: float = 1.0,
        max_intervals: int = MAX_ENERGY_INTERVALS,
        node_cpu: NodeCpuTimes | None = None,
        tracker: ProcessCpuTracker | None = None,
    ) -> None:
        self.sampler = sampler
        self.processes = processes
        self.interval_s = interval_s
        self.max_intervals = max_intervals
        self._node_cpu = node_cpu or NodeCpuTimes()
        self._tracker = tracker or ProcessCpuTracker()
        self._open: OpenInterval | None = None
        self._closed: deque[OpenInterval] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def is_estimated(self) -> bool:
        return any(method.is_estimated for method in self.sampler.methods.values())

    def describe(self) -> str:
        """One line for the agent's log: method per device and why."""
        methods = ", ".join(f"{d}={m.value}" for d, m in self.sampler.methods.items())
        notes = "; ".join(f"{d}: {n}" for d, n in self.sampler.notes.items())
        return f"energy methods {methods} ({notes})"

    # -- sampling thread ------------------------------------------------------
    def start(self) -> None:
        self.sampler.start()
        self._node_cpu.delta()
        self._thread = threading.Thread(target=self._run, name="energy-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.sampler.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.tick()
            except Exception:  # telemetry must never take the agent down
                log.exception("energy sampling failed")

    def tick(self) -> None:
        """One sample of every device, attributed to the jobs running here."""
        samples = self.sampler.sample()
        cpu = self._node_cpu.delta()
        pids = self.processes.pids()
        cpu_s = self._tracker.delta(pids)
        if not samples:
            return
        gpus = self.processes.gpus()
        usage = [
            JobUsage(job, cpu_s.get(job, 0.0), gpus=gpus.get(job, frozenset()), pids=p)
            for job, p in pids.items()
        ]
        shares = attribute_interval(samples, usage, cpu[0], pue=1.0)
        with self._lock:
            if self._open is None:
                start = min(s.start for s in samples)
                self._open = OpenInterval(start=start, end=start)
            self._open.add(samples, shares, cpu)

    # -- heartbeat side -------------------------------------------------------
    def take(self) -> EnergyReportIn | None:
        """Close the open interval and return every unacknowledged one (None if nothing)."""
        with self._lock:
            if self._open is not None and self._open.end > self._open.start:
                self._closed.append(self._open)
                self._open = None
            while len(self._closed) > self.max_intervals:
                first, second = self._closed.popleft(), self._closed.popleft()
                self._closed.appendleft(first.merge(second))
            intervals = []
            for interval in list(self._closed):
                try:
                    intervals.append(interval.to_schema())
                except ValueError as exc:  # pydantic's ValidationError: never send, never crash
                    log.warning("dropping an energy interval the API would refuse: %s", exc)
                    self._closed.remove(interval)
            if not intervals:
                return None
        return EnergyReportIn(
            methods={d: m.value for d, m in self.sampler.methods.items()},
            is_estimated=self.is_estimated,
            note=_note(self.sampler.notes)[:1000] or None,
            intervals=intervals,
        )

    def ack(self, report: EnergyReportIn | None) -> None:
        """The server stored `report`: forget those intervals (newer ones stay)."""
        if report is None:
            return
        sent_until = report.intervals[-1].end
        with self._lock:
            while self._closed and self._closed[0].end <= sent_until:
                self._closed.popleft()

    @property
    def buffered(self) -> int:
        with self._lock:
            return len(self._closed)


def _note(notes: Mapping[str, str]) -> str:
    return "; ".join(f"{device}: {text}" for device, text in notes.items())
