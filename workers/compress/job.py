"""Compression as a pool job: entrypoint `commonpool.workers.compress.job:run`.

    JobSpec(name="compress", entrypoint="commonpool.workers.compress.job:run",
            workers=1, args={"source_job": "job_...", "sparsity": 0.5})

`source_job` names a finished digits-mlp job; its latest checkpoint is read
from the pool's checkpoint storage (`COMMONPOOL_CHECKPOINT_STORAGE`, which
the launcher gives every job), or `checkpoint` gives a `model.pt` path.
The report's numbers go through `job.report` like any job's metrics, the
table is printed to the job's log, and the artifacts with `report.json`
become this job's checkpoint (`<storage>/<this job id>/checkpoint_*/`),
or are written to `out_dir` when given.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Any

from commonpool.workers import job
from commonpool.workers.compress.checkpoint import find_latest_checkpoint
from commonpool.workers.compress.pipeline import PipelineConfig, run_pipeline
from commonpool.workers.runner.launch_spec import ENV_STORAGE


def resolve_checkpoint(args: dict[str, Any]) -> tuple[Path, str]:
    """(model.pt path, source label) from `checkpoint` or `source_job` (+ `storage`)."""
    if args.get("checkpoint"):
        return Path(args["checkpoint"]), str(args["checkpoint"])
    source = args.get("source_job")
    storage = args.get("storage") or os.environ.get(ENV_STORAGE)
    if not source or not storage:
        raise ValueError("compress needs `source_job` (and a checkpoint storage) or `checkpoint`")
    if "://" in str(storage):
        raise ValueError(f"compress reads checkpoints from a folder, not {storage}: "
                         "give `checkpoint` (a copied model.pt)")
    return find_latest_checkpoint(storage, source), source


def pipeline_config(args: dict[str, Any]) -> PipelineConfig:
    known = {f.name for f in fields(PipelineConfig)}
    return PipelineConfig(**{k: v for k, v in args.items() if k in known})


def run(config: dict[str, Any]) -> dict[str, float]:
    args = dict(config or {})
    ctx = job.context()
    if ctx.rank != 0:  # one process does the work; the others only keep Ray Train in step
        job.report({}, step=1)
        return {}
    checkpoint, source = resolve_checkpoint(args)
    print(f"commonpool: compressing {source} from {checkpoint}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.get("out_dir") or tmp)
        report = run_pipeline(checkpoint, out, pipeline_config(args), source=source)
        report.print()
        metrics = report.metrics()
        job.report(metrics, step=1, checkpoint_dir=None if args.get("out_dir") else out)
    return metrics
