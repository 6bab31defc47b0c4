"""The helper API for job code running inside a pool job.

A training loop calls `report()` once per epoch (or step) on every worker:
the metrics go to Ray Train (which keeps checkpoints and drives the run)
and, from rank 0, to the pool's API, so progress shows in `commonpool logs
-f`, `commonpool job ID` and the dashboard. Reporting to the API is best
effort with a short timeout: an unreachable server never fails training.

    from commonpool.workers import job

    def train(config):
        ctx = job.context()
        ...
        job.report({"loss": loss, "samples_per_s": rate}, step=epoch, checkpoint_dir=tmp)

A job that names artifacts (`datasets:`, `init_from:`) finds them unpacked on
its node with `input_dir(name)` and `init_dir()`.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ENV_SERVER = "COMMONPOOL_SERVER_URL"
ENV_JOB_ID = "COMMONPOOL_JOB_ID"
ENV_ATTEMPT = "COMMONPOOL_JOB_ATTEMPT"
ENV_TOKEN = "COMMONPOOL_JOB_TOKEN"
ENV_CA_PEM = "COMMONPOOL_CA_PEM"  # the pool's CA (PEM text) when its API uses a private CA
ENV_INPUTS = "COMMONPOOL_INPUTS"  # the staged artifacts of this worker (JSON, set by the runner)
REPORT_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class JobContext:
    job_id: str | None
    attempt: int
    rank: int
    world_size: int
    local_rank: int
    node_label: str | None


def context() -> JobContext:
    """Who and where this worker is: under Ray Train, under torchrun (RANK/WORLD_SIZE), or alone."""
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    node_label = None
    try:
        import ray.train

        ctx = ray.train.get_context()
        rank, world, local = ctx.get_world_rank(), ctx.get_world_size(), ctx.get_local_rank()
        import ray

        node_label = ray.get_runtime_context().get_node_labels().get("commonpool/node")
    except Exception:  # not inside a Ray Train worker: torchrun or a plain local run
        pass
    return JobContext(
        job_id=os.environ.get(ENV_JOB_ID),
        attempt=int(os.environ.get(ENV_ATTEMPT, "1")),
        rank=rank,
        world_size=world,
        local_rank=local,
        node_label=node_label,
    )


def report(
    metrics: dict[str, float], *, step: int, checkpoint_dir: str | Path | None = None
) -> None:
    """Report metrics (all ranks must call it, as Ray Train requires) and an optional checkpoint."""
    clean = {k: float(v) for k, v in metrics.items()}
    _report_to_ray(clean, step, checkpoint_dir)
    if context().rank == 0:
        post_metrics(clean, step)


def latest_checkpoint_dir() -> str | None:
    """The directory of the checkpoint to resume from, if this attempt has one."""
    try:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
    except Exception:
        return None
    if checkpoint is None:
        return None
    return checkpoint.to_directory()


def input_dir(name: str) -> Path:
    """Where artifact `name` (a `datasets:` entry or the `init_from` model) is unpacked on
    this worker's node; KeyError names the inputs the job has."""
    inputs = _staged()["inputs"]
    if name not in inputs:
        raise KeyError(f"artifact {name!r} is not an input of this job (inputs: {sorted(inputs)})")
    return Path(inputs[name])


def init_dir() -> Path | None:
    """The files of the job's `init_from` model, or None when it starts from scratch."""
    init = _staged()["init"]
    return Path(init) if init else None


def _staged() -> dict:
    return json.loads(os.environ.get(ENV_INPUTS) or '{"inputs": {}, "init": null}')


def _report_to_ray(metrics: dict[str, float], step: int, checkpoint_dir: str | Path | None) -> None:
    try:
        import ray.train
        from ray.train import Checkpoint

        ray.train.get_context()
    except Exception:
        return
    checkpoint = Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
    ray.train.report({**metrics, "step": step}, checkpoint=checkpoint)


def post_metrics(metrics: dict[str, float], step: int) -> None:
    """Send metrics to the pool's API only (no Ray Train): what a service's driver reports."""
    server, job_id = os.environ.get(ENV_SERVER), os.environ.get(ENV_JOB_ID)
    if not server or not job_id:
        return
    body = json.dumps(
        {"step": step, "values": metrics, "attempt": int(os.environ.get(ENV_ATTEMPT, "1"))}
    ).encode()
    headers = {"Content-Type": "application/json"}
    if token := os.environ.get(ENV_TOKEN):
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        f"{server.rstrip('/')}/api/v1/jobs/{job_id}/metrics",
        data=body,
        headers=headers,
        method="POST",
    )

    context = (
        ssl.create_default_context(cadata=os.environ[ENV_CA_PEM])
        if ENV_CA_PEM in os.environ
        else None
    )
    try:
        urllib.request.urlopen(request, timeout=REPORT_TIMEOUT_S, context=context).close()
    except (urllib.error.URLError, OSError) as exc:  # progress display only: never fatal
        print(f"commonpool: metrics report failed: {exc}", flush=True)
