"""The helper API for job code running inside a pool job.

A training loop calls `report()` once per epoch (or step) on every worker:
the metrics go to Ray Train (which keeps checkpoints and drives the run) or,
in a warm-started job (no Ray Train, see `runner/warm_ddp.py`), the pool
keeps the checkpoint in the job's checkpoint folder; and, from rank 0, the
metrics go to the pool's API, so progress shows in `commonpool logs
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
import shutil
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
# Set on the ranks of a warm-started job (no Ray Train): the worker's node, and where the
# pool keeps the job's checkpoints (a path every rank's node sees).
ENV_NODE_ID = "COMMONPOOL_NODE_ID"
ENV_CHECKPOINT_DIR = "COMMONPOOL_CHECKPOINT_DIR"
CHECKPOINT_PREFIX = "checkpoint_"
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
    """Who and where this worker is: under Ray Train, warm-started or under torchrun
    (RANK/WORLD_SIZE), or alone."""
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    node_label = os.environ.get(ENV_NODE_ID)
    if under_ray_train():
        import ray
        import ray.train

        ctx = ray.train.get_context()
        rank, world, local = ctx.get_world_rank(), ctx.get_world_size(), ctx.get_local_rank()
        node_label = ray.get_runtime_context().get_node_labels().get("commonpool/node")
    return JobContext(
        job_id=os.environ.get(ENV_JOB_ID),
        attempt=int(os.environ.get(ENV_ATTEMPT, "1")),
        rank=rank,
        world_size=world,
        local_rank=local,
        node_label=node_label,
    )


def under_ray_train() -> bool:
    """Whether this process is a Ray Train worker. A warm-started rank answers without
    importing Ray (a second of start-up it does not need)."""
    if os.environ.get(ENV_CHECKPOINT_DIR):
        return False
    try:
        import ray.train

        ray.train.get_context()
    except Exception:  # torchrun or a plain local run
        return False
    return True


def report(
    metrics: dict[str, float], *, step: int, checkpoint_dir: str | Path | None = None
) -> None:
    """Report metrics (all ranks must call it, as Ray Train requires) and an optional
    checkpoint. A warm-started job (no Ray Train) keeps rank 0's checkpoint only."""
    clean = {k: float(v) for k, v in metrics.items()}
    rank = context().rank
    if under_ray_train():
        _report_to_ray(clean, step, checkpoint_dir)
    elif rank == 0 and checkpoint_dir and os.environ.get(ENV_CHECKPOINT_DIR):
        _keep_checkpoint(Path(checkpoint_dir), Path(os.environ[ENV_CHECKPOINT_DIR]), step)
    if rank == 0:
        post_metrics(clean, step)


def latest_checkpoint_dir() -> str | None:
    """The directory of the checkpoint to resume from, if this attempt has one."""
    kept = os.environ.get(ENV_CHECKPOINT_DIR)
    if kept:
        steps = {
            int(path.name.removeprefix(CHECKPOINT_PREFIX)): path
            for path in (Path(kept).glob(f"{CHECKPOINT_PREFIX}*") if Path(kept).is_dir() else ())
            if path.name.removeprefix(CHECKPOINT_PREFIX).isdigit()
        }
        return str(steps[max(steps)]) if steps else None
    if not under_ray_train():
        return None
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    return checkpoint.to_directory()


def _keep_checkpoint(source: Path, kept: Path, step: int) -> None:
    """A warm-started job's checkpoint, copied where a later attempt finds it. Copied
    aside and renamed into place, so a crash mid-copy never leaves a half checkpoint
    that `latest_checkpoint_dir` would pick."""
    kept.mkdir(parents=True, exist_ok=True)
    target = kept / f"{CHECKPOINT_PREFIX}{step:06d}"
    partial = kept / f".partial-{target.name}-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(source, partial)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)


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
    import ray.train
    from ray.train import Checkpoint

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
