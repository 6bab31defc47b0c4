"""Serving a model on the pool: requests/s, latency and energy per 1,000 requests, PyTorch vs ONNX.

    python -m benchmarks.serving [--requests 3000] [--concurrency 8] [--replicas 2]

One local pool (Ray head + 2 agents of 1 CPU, token auth). The same
digits-mlp (fitted in this process) is published twice, as a PyTorch
checkpoint and as ONNX, and each is served in turn with the same replicas
and batching. Clients (threads, one keep-alive connection each) send
one-row requests through the API (`POST /api/v1/services/{id}/predict`),
the path a user takes; latency is measured at the client. Energy is the
service job's metered energy (the agents' attribution to its replicas'
processes) over the load, read after a heartbeat on either side, divided
by the requests. Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from sklearn.datasets import load_digits

from commonpool.api.client.sdk import Client
from commonpool.api.local_pool import LocalPool
from commonpool.scheduler.spec import JobSpec
from commonpool.workers.compress.export import export_onnx
from commonpool.workers.examples.digits_mlp import quick_model

BUILDER = "commonpool.workers.examples.digits_mlp:build_model"
HEARTBEAT_WAIT_S = 12.0  # two agent heartbeats: the energy read covers the load's end
WARMUP = 100


def publish_models(client: Client, work: Path) -> dict[str, str]:
    """The same fitted model as a PyTorch checkpoint and as ONNX: variant -> artifact ref."""
    model = quick_model()
    torch_dir, onnx_dir = work / "torch", work / "onnx"
    torch_dir.mkdir()
    onnx_dir.mkdir()
    torch.save({"model": model.state_dict()}, torch_dir / "model.pt")
    export_onnx(model, torch.zeros(1, 64), onnx_dir / "model.onnx")
    return {
        "pytorch": client.upload_artifact(torch_dir, "bench-digits-torch", kind="model").ref,
        "onnx": client.upload_artifact(
            onnx_dir, "bench-digits-onnx", kind="model", format="onnx"
        ).ref,
    }


def wait_running(client: Client, job_id: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while (job := client.get_job(job_id)).state != "RUNNING":
        if job.state not in {"QUEUED", "PLACED", "STARTING"} or time.monotonic() > deadline:
            raise RuntimeError(f"service {job_id} did not start: {job.state} {job.exit_reason}")
        time.sleep(0.5)


def load(url: str, token: str, rows: np.ndarray, requests: int, concurrency: int) -> list[float]:
    """Latencies (s) of `requests` one-row predicts from `concurrency` keep-alive clients."""
    per_client = [list(range(i, requests, concurrency)) for i in range(concurrency)]

    def run(indices: list[int]) -> list[float]:
        latencies = []
        headers = {"Authorization": token} if token else {}
        with httpx.Client(headers=headers, timeout=120) as http:
            for i in indices:
                started = time.perf_counter()
                response = http.post(url, json={"inputs": [rows[i % len(rows)].tolist()]})
                latencies.append(time.perf_counter() - started)
                response.raise_for_status()
        return latencies

    with ThreadPoolExecutor(concurrency) as threads:
        return [t for part in threads.map(run, per_client) for t in part]


def measure(pool: LocalPool, client: Client, ref: str, args: argparse.Namespace) -> dict:
    job = client.submit_job(JobSpec.model_validate({
        "name": f"bench-{ref.partition('@')[0]}", "kind": "service", "workers": args.replicas,
        "resources": {"cpus": 1},
        "service": {"model": ref, "builder": BUILDER, "idle_timeout_s": 0,
                    "max_batch_size": args.max_batch},
    }))  # fmt: skip
    try:
        wait_running(client, job.id)
        token = client.authorization or ""
        url = f"{pool.url}/api/v1/services/{job.id}/predict"
        rows = (load_digits().data / 16.0).astype(np.float32)
        load(url, token, rows, WARMUP, args.concurrency)
        time.sleep(HEARTBEAT_WAIT_S)
        before = client.get_service(job.id)
        started = time.perf_counter()
        latencies = np.array(load(url, token, rows, args.requests, args.concurrency))
        wall = time.perf_counter() - started
        time.sleep(HEARTBEAT_WAIT_S)
        after = client.get_service(job.id)
        direct = _direct(pool, job.id, rows, args) if args.direct else {}
    finally:
        client.cancel_job(job.id, "benchmark done")
    per_thousand = 1000 / args.requests
    return {
        **direct,
        "artifact": ref,
        "requests_per_s": args.requests / wall,
        "p50_ms": float(np.percentile(latencies, 50) * 1000),
        "p99_ms": float(np.percentile(latencies, 99) * 1000),
        # The load's energy only: the metered total after minus before, plus the idle wait's
        # share is inside both reads alike (each is read HEARTBEAT_WAIT_S after activity).
        "kwh_per_1000": (after.energy_kwh - before.energy_kwh) * per_thousand,
        "gco2e_per_1000": (after.co2e_g - before.co2e_g) * per_thousand,
    }


def _direct(pool: LocalPool, job_id: str, rows: np.ndarray, args: argparse.Namespace) -> dict:
    """The same load straight at Serve's proxy (internal; no API hop, no auth): what the API
    adds."""
    assert pool.settings is not None
    started = time.perf_counter()
    latencies = np.array(
        load(f"{pool.settings.ray_serve_url}/{job_id}", "", rows, args.requests, args.concurrency)
    )
    return {
        "direct_requests_per_s": args.requests / (time.perf_counter() - started),
        "direct_p50_ms": float(np.percentile(latencies, 50) * 1000),
        "direct_p99_ms": float(np.percentile(latencies, 99) * 1000),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--direct", action="store_true",
                        help="Also load Serve's proxy directly (no API hop) for comparison.")
    args = parser.parse_args(argv)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp, LocalPool(
        Path(tmp) / "pool", agents=2, cpus_per_agent=1.0, log=io.StringIO()
    ) as pool, pool.client() as client:
        refs = publish_models(client, Path(tmp))
        for variant, ref in refs.items():
            results[variant] = measure(pool, client, ref, args)
            deadline = time.monotonic() + 60  # the stopped service's replicas leave
            while client.pool_summary().free.cpus < 2.0 and time.monotonic() < deadline:
                time.sleep(0.5)
    table = Table(title=f"serving digits-mlp: {args.requests} one-row requests, "
                        f"{args.concurrency} clients, {args.replicas} replicas, via the API")
    for column in ("variant", "requests/s", "p50 ms", "p99 ms", "kWh / 1,000 req",
                   "gCO2e / 1,000 req"):
        table.add_column(column, justify="right")
    for variant, r in results.items():
        table.add_row(variant, f"{r['requests_per_s']:.0f}", f"{r['p50_ms']:.1f}",
                      f"{r['p99_ms']:.1f}", f"{r['kwh_per_1000']:.2e}",
                      f"{r['gco2e_per_1000']:.4f}")
        if "direct_requests_per_s" in r:
            table.add_row(f"{variant}, Serve port", f"{r['direct_requests_per_s']:.0f}",
                          f"{r['direct_p50_ms']:.1f}", f"{r['direct_p99_ms']:.1f}", "", "")
    Console().print(table)
    print(json.dumps({"benchmark": "serving", "cpus": os.cpu_count(), **vars(args),
                      "results": results}), flush=True)


if __name__ == "__main__":
    main()
