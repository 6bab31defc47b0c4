"""`commonpool compress`: quantize, prune, distil and ONNX-export a finished job's model.

Runs the pipeline here (reading the pool's checkpoint storage) or, with
`--submit`, as a pool job (`commonpool.workers.compress.job:run`) through
the SDK, so it is placed, metered and logged like any job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from commonpool.scheduler.config import get_settings
from commonpool.scheduler.spec import JobSpec

from . import render
from .context import EXIT_USAGE, JsonOption, state

JOB_ENTRYPOINT = "commonpool.workers.compress.job:run"


def compress(
    source_job: str | None = typer.Argument(
        None, help="Finished digits-mlp job whose latest checkpoint is compressed."
    ),
    checkpoint: Path | None = typer.Option(
        None, exists=True, dir_okay=False, help="A model.pt to compress instead of a job's."
    ),
    storage: Path | None = typer.Option(
        None, help="Checkpoint storage (default: COMMONPOOL_CHECKPOINT_STORAGE or "
        "<state_dir>/checkpoints)."
    ),
    out: Path | None = typer.Option(
        None, help="Where artifacts and report.json go (default ./compressed-<job>)."
    ),
    sparsity: float = typer.Option(0.5, min=0.0, max=0.99, help="Pruning: fraction zeroed."),
    student_hidden: int = typer.Option(32, min=1, help="Distillation: student's hidden width."),
    batch_size: int = typer.Option(64, min=1, help="Batch size for latency and energy."),
    threads: int = typer.Option(1, min=1, help="Inference threads (torch and onnxruntime)."),
    submit: bool = typer.Option(False, help="Run it as a pool job instead of here."),
    as_json: bool = JsonOption,
) -> None:
    """Compress a trained model and report size, accuracy, latency and energy side by side."""
    if not source_job and not checkpoint:
        render.err_console.print("[red]give a SOURCE_JOB or --checkpoint[/]")
        raise typer.Exit(EXIT_USAGE)
    args: dict[str, Any] = {
        "sparsity": sparsity,
        "student_hidden": student_hidden,
        "batch_size": batch_size,
        "threads": threads,
    }
    if submit:
        _submit(args, source_job, checkpoint, storage, as_json)
        return

    from commonpool.workers.compress.job import pipeline_config, resolve_checkpoint
    from commonpool.workers.compress.pipeline import run_pipeline
    from commonpool.workers.runner.ray_jobs import default_storage, is_uri

    store = storage or default_storage(get_settings().state_dir)
    if checkpoint is None and is_uri(store):
        raise typer.BadParameter(
            f"checkpoint storage {store} is an object store: copy the job's checkpoint "
            "folder here and give it with --checkpoint", param_hint="--storage",
        )
    path, source = resolve_checkpoint(
        {"checkpoint": checkpoint, "source_job": source_job, "storage": str(store)}
    )
    target = out or Path(f"compressed-{source_job or path.parent.name}")
    report = run_pipeline(
        path, target, pipeline_config(args), source=source,
        log=(lambda _: None) if as_json else render.console.print,
    )
    if as_json:
        render.print_json(report.to_dict())
        return
    report.print(render.console)
    render.console.print(f"report: {target / 'report.json'}")


def _submit(args: dict[str, Any], source_job: str | None, checkpoint: Path | None,
            storage: Path | None, as_json: bool) -> None:
    if checkpoint:
        args["checkpoint"] = str(checkpoint.resolve())
    if source_job:
        args["source_job"] = source_job
    if storage:
        args["storage"] = str(storage)
    name = f"compress-{source_job}"[:60] if source_job else "compress"
    spec = JobSpec(name=name, entrypoint=JOB_ENTRYPOINT, workers=1, args=args)
    with state.client() as client:
        job = client.submit_job(spec)
    if as_json:
        render.print_json(job)
        return
    render.console.print(f"submitted {job.id} ({job.state})")
    render.next_steps(follow=f"commonpool logs -f {job.id}", metrics=f"commonpool job {job.id}")
