"""Time from submit to the first training step: through the pool vs a direct Ray Train run.

    python -m benchmarks.e2e_start [--runs 3]

One local pool (Ray head + 2 agents, token auth) serves both sides, so both
use the same warm cluster and the same 2-worker TorchTrainer pinned to the
same nodes:
- pool:   POST /api/v1/jobs -> scheduler places -> Ray Jobs driver -> TorchTrainer -> first step;
- direct: a fresh `python` driver process -> ray.init -> TorchTrainer(...).fit() -> first step.
The first step writes a timestamp file; latency = stamp - submit time. Runs
alternate between the two sides so machine noise hits both alike. Prints a
table and, last, one JSON line.
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


def run_pool(client: Client, payload_dir: Path, stamp: Path) -> float:
    spec = JobSpec(name="e2e", entrypoint="e2e_payload:first_step", working_dir=str(payload_dir),
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
    results: dict[str, list[float]] = {"pool": [], "direct": []}
    console = Console()
    try:
        with LocalPool(work / "pool", agents=2, log=io.StringIO()) as pool, \
                pool.client() as client:
            for i in range(args.runs):
                for side in ("direct", "pool") if i % 2 == 0 else ("pool", "direct"):
                    stamp = work / f"{side}-{i}.stamp"
                    value = (run_pool(client, payload_dir, stamp) if side == "pool"
                             else run_direct(pool, payload_dir, stamp))
                    results[side].append(value)
                    console.print(f"run {i} {side}: {value:.2f} s to first step")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    pool_med, direct_med = (statistics.median(results[s]) for s in ("pool", "direct"))
    table = Table(title="submit -> first training step (2 workers, same warm cluster)")
    for column in ("side", "median s", "min s", "max s"):
        table.add_column(column)
    for side in ("pool", "direct"):
        values = results[side]
        table.add_row(side, f"{statistics.median(values):.2f}", f"{min(values):.2f}",
                      f"{max(values):.2f}")
    console.print(table)
    console.print(f"pool / direct = {pool_med / direct_med:.2f}x (goal <= 1.2x)")
    print(json.dumps({"benchmark": "e2e_start", "runs": args.runs, "pool_median_s": pool_med,
                      "direct_median_s": direct_med, "ratio": pool_med / direct_med,
                      "pool_s": results["pool"], "direct_s": results["direct"]}))


if __name__ == "__main__":
    main()
