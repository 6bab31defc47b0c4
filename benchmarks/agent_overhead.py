"""CPU and memory of a real donor agent while it samples energy at 1 Hz.

    python -m benchmarks.agent_overhead [--seconds 60] [--no-job]

Starts a local pool (API + scheduler + Ray head + one agent process, the
same `commonpool agent` a donor runs, sampling at 1 Hz and heartbeating
every 2 s with its energy batch) and measures that agent's own process
(not its Ray node) with psutil:

1. `idle`: no job on the node, for `--seconds`;
2. `job`: a 1-worker digits-mlp job running on the node, for `--seconds`
   (the agent then also scans its Ray workers' environments every 5 s and
   reads their CPU times every sample).

CPU% is (user + system CPU seconds of the agent) / wall seconds x 100, i.e.
percent of one core; RSS is sampled every second (mean and max). It also
times one sampling tick in this process (sample + attribution), which is the
part that scales with the sampling rate. Goal (issue 5): <= 0.5 % of one
core and <= 80 MB RSS. Prints a table on stderr and one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

from commonpool.api.local_pool import LocalPool
from commonpool.scheduler.spec import JobSpec
from commonpool.workers.agent.energy import EnergyRecorder, JobProcesses
from commonpool.workers.telemetry import NodeEnergySampler

GOAL_CPU_PERCENT = 0.5
GOAL_RSS_MB = 80.0


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float
    cpu_percent: float
    rss_mean_mb: float
    rss_max_mb: float

    @property
    def ok(self) -> bool:
        return self.cpu_percent <= GOAL_CPU_PERCENT and self.rss_max_mb <= GOAL_RSS_MB


def measure(pid: int, name: str, seconds: float) -> Phase:
    proc = psutil.Process(pid)
    before, started = proc.cpu_times(), time.monotonic()
    rss: list[float] = []
    while time.monotonic() - started < seconds:
        rss.append(proc.memory_info().rss / 2**20)
        time.sleep(1.0)
    after, wall = proc.cpu_times(), time.monotonic() - started
    cpu = (after.user + after.system) - (before.user + before.system)
    return Phase(name, wall, 100.0 * cpu / wall, statistics.fmean(rss), max(rss))


def tick_cost(ticks: int = 200) -> float:
    """Mean CPU ms of one sampling tick (sample + process scan cache + attribution)."""
    recorder = EnergyRecorder(
        NodeEnergySampler.probe(), JobProcesses(lambda: os.getpid()), interval_s=1.0
    )
    recorder.sampler.start()
    started = time.process_time()
    for _ in range(ticks):
        recorder.tick()
    recorder.take()
    return 1000.0 * (time.process_time() - started) / ticks


def run(seconds: float, with_job: bool) -> dict[str, object]:
    phases: list[Phase] = []
    energy_j: float | None = None
    state = Path(tempfile.mkdtemp(prefix="cp-bench-agent-"))
    with LocalPool(state, agents=1, cpus_per_agent=1.0, log=io.StringIO()) as pool:
        pid = pool.agent_procs[0].pid
        time.sleep(5.0)  # past start-up (imports, enrolment, Ray join)
        phases.append(measure(pid, "idle", seconds))
        if with_job:
            with pool.client() as client:
                spec = JobSpec(
                    name="overhead",
                    entrypoint="commonpool.workers.examples.digits_mlp:train",
                    workers=1,
                    resources={"cpus": 1},
                    args={"epochs": 500},
                )
                job = client.submit_job(spec)
                deadline = time.monotonic() + 180
                while client.get_job(job.id).state != "RUNNING":
                    if time.monotonic() > deadline:
                        raise RuntimeError("the benchmark job never started")
                    time.sleep(0.5)
                phases.append(measure(pid, "job", seconds))
                energy_j = client.job_energy(job.id).energy_j
                client.cancel_job(job.id, "benchmark done")
    return {
        "benchmark": "agent_overhead",
        "sample_s": 1.0,
        "heartbeat_s": 2.0,
        "tick_cpu_ms": tick_cost(),
        "phases": [{**asdict(p), "ok": p.ok} for p in phases],
        "job_energy_j": energy_j,
        "goal": {"cpu_percent": GOAL_CPU_PERCENT, "rss_mb": GOAL_RSS_MB},
        "ok": all(p.ok for p in phases),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="Length of each phase.")
    parser.add_argument("--no-job", action="store_true", help="Only the idle phase.")
    args = parser.parse_args(argv)
    result = run(args.seconds, not args.no_job)
    table = Table(title="agent overhead (its own process, sampling at 1 Hz)")
    for column in ("phase", "seconds", "CPU % of one core", "RSS mean MB", "RSS max MB", "goal"):
        table.add_column(column)
    for phase in result["phases"]:  # type: ignore[attr-defined]
        table.add_row(
            phase["name"],
            f"{phase['seconds']:.0f}",
            f"{phase['cpu_percent']:.3f}",
            f"{phase['rss_mean_mb']:.1f}",
            f"{phase['rss_max_mb']:.1f}",
            "ok" if phase["ok"] else "MISSED",
        )
    console = Console(stderr=True)
    console.print(table)
    console.print(f"one sampling tick: {result['tick_cpu_ms']:.2f} ms CPU")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
