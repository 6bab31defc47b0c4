"""DDP training throughput through the pool vs plain `torchrun` on the same machine.

    python -m benchmarks.ddp_throughput [--epochs 5] [--samples 16384] [--starts trainer,warm]
                                        [--agents 1] [--rounds 3]

The same code (`commonpool.workers.examples.synthetic_convnet`, 2 workers,
gloo, 1 CPU each) runs as a pool job on a local pool (by default one agent
sharing this machine's 2 CPUs, as a donor would: torchrun's twin; `--agents
2` makes two nodes of 1 CPU, one rank each) and under
`torchrun --nproc-per-node 2`. This shared machine drifts by 10-30% within
minutes, so the sides are measured in pairs: each round runs, per `ddp_start`
mode asked for, torchrun alone, then the pool job on a fresh pool, then
torchrun once more while that pool is up but idle (which separates the cost
of the pool's resident daemons - Ray head, raylets, agents - from the job
path). A pair's ratio is the pool's figure over the torchrun run just before
it; the result is the median of the rounds' ratios. Modes: `trainer` (Ray
Train's TorchTrainer) and `warm` (one process per rank on the nodes'
executors). Each epoch reports samples/s; the first epoch of a run is warm-up
and dropped; a run's figure is the median of the rest. Prints a table and,
last, one JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

from rich.console import Console
from rich.table import Table

from commonpool.api.local_pool import LocalPool
from commonpool.scheduler.spec import JobSpec

EXAMPLE = "synthetic_convnet"
EPOCH_LINE = re.compile(r"samples/s (\d+)")


class Round(NamedTuple):
    """One paired round of one start mode: steady samples/s of each side."""

    start: str
    torchrun: float
    pool: float
    beside: float


def through_pool(
    config: dict[str, int], ddp_start: str, agents: int
) -> tuple[list[float], list[float]]:
    """The pool job's epochs, and torchrun's while the (then idle) pool still runs."""
    with tempfile.TemporaryDirectory(prefix="cp-ddp-") as work, \
            LocalPool(Path(work), agents=agents, cpus_per_agent=2 / agents, log=io.StringIO(),
                      ddp_start=ddp_start) as pool, \
            pool.client() as client:
        job = client.submit_job(JobSpec(
            name="ddp-throughput", entrypoint=f"commonpool.workers.examples.{EXAMPLE}:train",
            workers=2, args=config))
        final = client.wait(job.id, timeout_s=1800)
        if final.state != "SUCCEEDED":
            raise RuntimeError(f"pool run ended {final.state}: {final.exit_reason}")
        beside = through_torchrun(config)
        return [m.values["samples_per_s"] for m in client.job_metrics(job.id)], beside


def through_torchrun(config: dict[str, int]) -> list[float]:
    torchrun = str(Path(sys.executable).parent / "torchrun")
    args = [torchrun, "--nproc-per-node", "2", "-m", "commonpool.workers.examples.torchrun_entry",
            EXAMPLE, *(f"{k}={v}" for k, v in config.items())]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=1800, check=True)
    return [float(x) for x in EPOCH_LINE.findall(out.stdout)]


def steady(rates: list[float]) -> float:
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--samples", type=int, default=16384, help="Images per epoch.")
    parser.add_argument("--agents", type=int, choices=(1, 2), default=1,
                        help="Agents sharing the 2 CPUs: 1 (this machine as one donor, both "
                        "ranks on its node) or 2 (two nodes of 1 CPU, one rank each).")
    parser.add_argument("--starts", default="trainer,warm",
                        help="The pool's ddp_start modes to measure, comma-separated.")
    parser.add_argument("--rounds", type=int, default=3,
                        help="Paired rounds (torchrun alone, then the pool) per mode.")
    args = parser.parse_args()
    starts = [m for m in args.starts.split(",") if m]
    if not starts or set(starts) - {"trainer", "warm"}:
        parser.error("--starts takes trainer and/or warm")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    config = {"epochs": args.epochs, "samples": args.samples}
    rounds: list[Round] = []
    for _ in range(args.rounds):
        for start in starts:
            alone = steady(through_torchrun(config)[1:])
            pool, beside = through_pool(config, start, args.agents)
            rounds.append(Round(start, alone, steady(pool[1:]), steady(beside[1:])))
    table = Table(title=f"{EXAMPLE}, 2 DDP workers (gloo, 1 CPU each), {args.agents} agent(s): "
                  "steady samples/s per paired round")
    for column in ("mode", "torchrun alone", "pool", "torchrun beside idle pool",
                   "pool / torchrun", "pool / beside"):
        table.add_column(column)
    for r in rounds:
        table.add_row(r.start, f"{r.torchrun:.0f}", f"{r.pool:.0f}", f"{r.beside:.0f}",
                      f"{r.pool / r.torchrun:.3f}", f"{r.pool / r.beside:.3f}")
    Console().print(table)
    ratios = {s: statistics.median(r.pool / r.torchrun for r in rounds if r.start == s)
              for s in starts}  # fmt: skip
    beside_ratios = {
        s: statistics.median(r.pool / r.beside for r in rounds if r.start == s) for s in starts
    }
    for start in starts:
        Console().print(f"pool ({start}) / torchrun = {ratios[start]:.3f}, median of "
                        f"{args.rounds} round(s) (goal >= 0.97); / torchrun beside the idle "
                        f"pool's daemons = {beside_ratios[start]:.3f} (the job path alone)")
    print(json.dumps({"benchmark": "ddp_throughput", "example": EXAMPLE, **config,
                      "agents": args.agents, "ratio": ratios,
                      "ratio_vs_torchrun_beside_idle_pool": beside_ratios,
                      "rounds": [r._asdict() for r in rounds]}))


if __name__ == "__main__":
    main()
