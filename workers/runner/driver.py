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
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

from commonpool.scheduler.ports import LaunchRequest
from commonpool.workers.ray_node import NODE_LABEL
from commonpool.workers.runner import launch_spec


def resolve(entrypoint: str) -> Callable[[dict[str, Any]], Any]:
    module_name, _, attr = entrypoint.partition(":")
    return getattr(importlib.import_module(module_name), attr)


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
    loop = resolve(request.entrypoint)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
