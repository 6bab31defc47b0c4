"""The Ray Jobs entrypoint of one pool job: a TorchTrainer pinned to the allocated nodes.

Run by Ray Jobs as `python -m commonpool.workers.runner.driver` on the head,
with the launch in `COMMONPOOL_LAUNCH`. Worker rank i gets the label
selector `commonpool/node=<node of rank i>`, so Ray can only start it on
the node the scheduler allocated. The backend is gloo on CPU and NCCL on
GPU. The run is named after the job, so a later attempt of the same job
resumes from the latest checkpoint in the shared storage path.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from commonpool.scheduler.ports import InputArtifact, LaunchRequest
from commonpool.workers import job
from commonpool.workers.artifacts import job_client, stage
from commonpool.workers.ray_node import NODE_LABEL
from commonpool.workers.runner import launch_spec


def resolve(entrypoint: str) -> Callable[[dict[str, Any]], Any]:
    module_name, _, attr = entrypoint.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def with_inputs(
    loop: Callable[[dict[str, Any]], Any], inputs: tuple[InputArtifact, ...]
) -> Callable[[dict[str, Any]], Any]:
    """The loop, preceded on every worker by staging the job's artifacts on its node
    (`job.input_dir(name)`, `job.init_dir()` find them)."""
    if not inputs:
        return loop

    def staged_loop(config: dict[str, Any]) -> Any:
        with job_client() as client:
            paths = {a.name: str(stage(client, a)) for a in inputs}
        init = next((paths[a.name] for a in inputs if a.role == "init"), None)
        os.environ[job.ENV_INPUTS] = json.dumps({"inputs": paths, "init": init})
        return loop(config)

    return staged_loop


def publish_checkpoint(result: Any, name: str) -> None:
    """Publish the run's final checkpoint as the next version of model `name`; a run
    that asked to publish and has no checkpoint fails: its user expects the model."""
    if result.checkpoint is None:
        raise RuntimeError(f"publish {name!r}: the run reported no checkpoint (job.report(...,"
                           " checkpoint_dir=...)); nothing to publish")
    with result.checkpoint.as_directory() as directory, job_client() as client:
        published = client.upload_artifact(Path(directory), name, kind="model", format="tar")
    print(f"commonpool: published model {published.ref} (sha256 {published.sha256})", flush=True)


def build_trainer(request: LaunchRequest, storage_path: str) -> Any:
    """A TorchTrainer (default) or TensorflowTrainer, pinned rank by rank to the allocation."""
    import ray.train

    workers = sorted(request.workers, key=lambda w: w.rank)
    use_gpu = any(w.gpus for w in workers)
    first = workers[0]
    per_worker: dict[str, float] = {"CPU": first.cpus}
    if use_gpu:
        per_worker["GPU"] = first.gpus
    if first.memory_bytes:
        per_worker["memory"] = first.memory_bytes
    common: dict[str, Any] = {
        "train_loop_config": request.args,
        "scaling_config": ray.train.ScalingConfig(
            num_workers=len(workers),
            use_gpu=use_gpu,
            resources_per_worker=per_worker,
            label_selector=[{NODE_LABEL: w.node_id} for w in workers],
        ),
        "run_config": ray.train.RunConfig(
            name=request.job_id,
            storage_path=storage_path,
            # The pool, not Ray, decides about retries: a failure ends this run.
            failure_config=ray.train.FailureConfig(
                max_failures=0, controller_failure_limit=0, max_preemption_failures=0
            ),
        ),
    }
    loop = with_inputs(resolve(request.entrypoint), request.inputs)
    if request.framework == "tensorflow":
        # Ray sets TF_CONFIG on each worker; the loop builds MultiWorkerMirroredStrategy.
        from ray.train.tensorflow import TensorflowTrainer

        return TensorflowTrainer(loop, **common)
    from ray.train.torch import TorchConfig, TorchTrainer

    return TorchTrainer(
        loop, torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"), **common
    )


def main() -> int:
    import ray

    request = launch_spec.load(os.environ[launch_spec.ENV_LAUNCH])
    storage = os.environ[launch_spec.ENV_STORAGE]
    ray.init(logging_level="WARNING")
    print(
        f"commonpool: job {request.job_id} attempt {request.attempt} on "
        + ", ".join(f"rank {w.rank}->{w.node_id}" for w in request.workers),
        flush=True,
    )
    try:
        result = build_trainer(request, storage).fit()
    except Exception:
        traceback.print_exc()
        return 1
    if result.error is not None:
        print("".join(traceback.format_exception(result.error)), file=sys.stderr, flush=True)
        return 1
    print(f"commonpool: finished; final metrics {result.metrics}", flush=True)
    if request.publish:
        try:
            publish_checkpoint(result, request.publish)
        except Exception:
            traceback.print_exc()
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
