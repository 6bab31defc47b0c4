"""The Ray Serve application of one `service` job: replicas of a model behind HTTP.

Each replica stages the model artifact on its node (the same cache and
checks as a training job's inputs), loads it once, and answers
`PredictRequest` bodies; concurrent requests are batched into one model
call (`serve.batch`). Replicas may only start on the nodes the scheduler
allocated (a label selector over their node ids), holding the allocation's
CPUs, GPUs and memory; with an idle timeout they scale to zero and come
back on the next request.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from commonpool.api.schemas import PredictRequest, PredictResponse
from commonpool.scheduler.ports import InputArtifact, LaunchRequest
from commonpool.workers.artifacts import job_client, stage
from commonpool.workers.ray_node import NODE_LABEL
from commonpool.workers.serving.model import load_predictor

BATCH_WAIT_S = 0.002
TARGET_ONGOING_REQUESTS = 8
DEFAULT_LOOK_BACK_S = 30.0  # Serve's own default


@serve.deployment(name="model")
class ModelReplica:
    def __init__(self, model: InputArtifact, builder: str | None, max_batch_size: int) -> None:
        with job_client() as client:
            directory = stage(client, model)
        self.predict = load_predictor(directory, builder)
        self.model = model.ref
        self.width: int | None = None  # input features, known from the first request
        self.batched.set_max_batch_size(max_batch_size)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=BATCH_WAIT_S)
    async def batched(self, requests: list[np.ndarray]) -> list[np.ndarray]:
        """One model call for the rows of every request waiting now."""
        sizes = np.cumsum([len(rows) for rows in requests])[:-1]
        return np.split(self.predict(np.concatenate(requests)), sizes)

    async def __call__(self, request: Request) -> Any:
        try:
            body = PredictRequest.model_validate_json(await request.body())
        except ValueError as exc:  # the API validates first; a direct caller gets a 422 too
            return JSONResponse({"detail": str(exc)[:2000]}, status_code=422)
        rows = np.asarray(body.inputs, dtype=np.float32)
        self.width = rows.shape[1]
        outputs = await self.batched(rows)
        return PredictResponse(
            outputs=outputs.tolist(),
            predictions=outputs.argmax(axis=1).tolist() if outputs.ndim == 2 else [],
            model=self.model,
        ).model_dump()

    def check_health(self) -> None:
        """Serve restarts a replica whose model no longer answers."""
        if self.width is not None:
            self.predict(np.zeros((1, self.width), dtype=np.float32))


def build_app(request: LaunchRequest) -> Any:
    """The application for a service launch: its model, replicas and their placement."""
    (model,) = [a for a in request.inputs if a.role == "init"]
    config = request.args
    replicas = len(request.workers)
    first = request.workers[0]
    nodes = sorted({w.node_id for w in request.workers})
    actor_options: dict[str, Any] = {
        "num_cpus": first.cpus,
        "num_gpus": first.gpus,
        "label_selector": {NODE_LABEL: f"in({','.join(nodes)})"},
        "runtime_env": {"env_vars": dict(request.env)},
    }
    if first.memory_bytes:
        actor_options["memory"] = first.memory_bytes
    idle = int(config.get("idle_timeout_s", 0))
    scaling: dict[str, Any] = (
        {
            "autoscaling_config": {
                "min_replicas": 0,
                "initial_replicas": replicas,
                "max_replicas": replicas,
                "downscale_delay_s": idle,
                # Serve averages load over this window before it decides: at most the idle
                # timeout, so replicas go about `idle` s after the last request, not 30 s later.
                "look_back_period_s": min(DEFAULT_LOOK_BACK_S, idle),
                "upscale_delay_s": 0,
                "target_ongoing_requests": TARGET_ONGOING_REQUESTS,
            }
        }
        if idle
        else {"num_replicas": replicas}
    )
    return ModelReplica.options(ray_actor_options=actor_options, **scaling).bind(
        model, config.get("builder"), int(config.get("max_batch_size", 32))
    )
