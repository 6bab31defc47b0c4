"""Time from submit to the first training step: through the pool vs a direct Ray Train run.

    python -m benchmarks.e2e_start [--runs 3]

One local pool (Ray head + 2 agents, token auth, `ddp_start = "warm"`) serves
every side, so all use the same cluster and 2 workers pinned to the same nodes:
- pool:   POST /api/v1/jobs -> scheduler places -> Ray Jobs driver -> TorchTrainer -> first
  step (the payload ships as the job's working_dir, so the job takes Ray Train's path);
- pool warm: the same job without a working_dir (the payload is on the nodes' PYTHONPATH):
  scheduler places -> one process per rank on the nodes' warm executors -> first step;
- direct: a fresh `python` driver process -> ray.init -> TorchTrainer(...).fit() -> first step.
The first step writes a timestamp file; latency = stamp - submit time. Runs
rotate between the sides so machine noise hits all alike; the first warm run also
starts the nodes' executors (a pool keeps them), and is counted. Prints a table and,
last, one JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from commonpool.api.client.sdk import Client
from commonpool.api.local_pool import LocalPool
from commonpool.scheduler.spec import JobSpec
from commonpool.workers.ray_node import NODE_LABEL, auth_env

PAYLOAD = Path(__file__).with_name("e2e_payload.py")
DIRECT_DRIVER = """
import json, os, sys
import ray, ray.train
from ray.train.torch import TorchConfig, TorchTrainer
sys.path.insert(0, os.environ["PAYLOAD_DIR"])
from e2e_payload import first_step
ray.init(address=os.environ["POOL_RAY_ADDRESS"], logging_level="ERROR",
         runtime_env={"working_dir": os.environ["PAYLOAD_DIR"]})
nodes = json.loads(os.environ["POOL_NODES"])
TorchTrainer(first_step, train_loop_config={"stamp_file": os.environ["STAMP"]},
             torch_config=TorchConfig(backend="gloo"),
             scaling_config=ray.train.ScalingConfig(num_workers=len(nodes),
                 resources_per_worker={"CPU": 1},
                 label_selector=[{os.environ["NODE_LABEL"]: n} for n in nodes]),
             run_config=ray.train.RunConfig(storage_path=os.environ["STORAGE"],
                 failure_config=ray.train.FailureConfig(max_failures=0))).fit()
"""


def _stamp(path: Path, timeout: float = 300) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return float(path.read_text())
        time.sleep(0.05)
    raise TimeoutError(f"no first step stamped in {path}")


def run_pool(client: Client, payload_dir: Path | None, stamp: Path) -> float:
    """Ray Train's path with the payload as working_dir; warm without (`payload_dir` None)."""
    spec = JobSpec(name="e2e", entrypoint="e2e_payload:first_step",
                   working_dir=str(payload_dir) if payload_dir else None,
                   workers=2, args={"stamp_file": str(stamp)})
    submitted = time.time()
    job = client.submit_job(spec)
    latency = _stamp(stamp) - submitted
    final = client.wait(job.id, timeout_s=300)
    if final.state != "SUCCEEDED":
        raise RuntimeError(f"pool run ended {final.state}: {final.exit_reason}")
    return latency


def run_direct(pool: LocalPool, payload_dir: Path, stamp: Path) -> float:
    assert pool.head is not None
    env = {**os.environ, **auth_env(pool.ray_temp / "auth_token"),
           "PAYLOAD_DIR": str(payload_dir), "POOL_RAY_ADDRESS": pool.head.address,
           "POOL_NODES": json.dumps(pool.node_ids), "STAMP": str(stamp),
           "STORAGE": str(pool.state_dir / "direct-runs"), "NODE_LABEL": NODE_LABEL}
    submitted = time.time()
    subprocess.run([sys.executable, "-c", DIRECT_DRIVER, repr(submitted)], env=env, check=True,
                   capture_output=True, timeout=600)
    return _stamp(stamp) - submitted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="Runs per side (alternating).")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cp-e2e-"))
    payload_dir = work / "payload"
    payload_dir.mkdir()
    shutil.copy(PAYLOAD, payload_dir / PAYLOAD.name)
    sides = ("direct", "pool", "pool warm")
    results: dict[str, list[float]] = {side: [] for side in sides}
    console = Console()
    # The warm side's payload is importable on the nodes: agents (so their Ray nodes and
    # executors) inherit this environment.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(payload_dir), os.environ.get("PYTHONPATH", "")) if p)
    try:
        with LocalPool(work / "pool", agents=2, log=io.StringIO(), ddp_start="warm") as pool, \
                pool.client() as client:
            for i in range(args.runs):
                for side in sides[i % 3:] + sides[:i % 3]:
                    stamp = work / f"{side}-{i}.stamp".replace(" ", "-")
                    if side == "direct":
                        value = run_direct(pool, payload_dir, stamp)
                    else:
                        value = run_pool(client, payload_dir if side == "pool" else None, stamp)
                    results[side].append(value)
                    console.print(f"run {i} {side}: {value:.2f} s to first step")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    medians = {side: statistics.median(results[side]) for side in sides}
    table = Table(title="submit -> first training step (2 workers, same cluster)")
    for column in ("side", "median s", "min s", "max s", "/ direct"):
        table.add_column(column)
    for side in sides:
        values = results[side]
        table.add_row(side, f"{medians[side]:.2f}", f"{min(values):.2f}", f"{max(values):.2f}",
                      f"{medians[side] / medians['direct']:.2f}x")
    console.print(table)
    ratio, warm_ratio = (medians[s] / medians["direct"] for s in ("pool", "pool warm"))
    console.print(f"pool / direct = {ratio:.2f}x (goal <= 1.2x); pool warm / direct = "
                  f"{warm_ratio:.2f}x (goal <= 0.3x)")
    print(json.dumps({"benchmark": "e2e_start", "runs": args.runs,
                      "pool_median_s": medians["pool"], "pool_warm_median_s": medians["pool warm"],
                      "direct_median_s": medians["direct"], "ratio": ratio,
                      "warm_ratio": warm_ratio, "pool_s": results["pool"],
                      "pool_warm_s": results["pool warm"], "direct_s": results["direct"]}))

if __name__ == "__main__":
    main()
