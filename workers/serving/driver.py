"""The Ray Jobs entrypoint of a `service` job: deploy its Serve application, hold it, delete it.

Run by Ray Jobs as `python -m commonpool.workers.serving.driver` on the
head, like a training job's driver. It starts Serve's HTTP proxy on the
head at the pool's Serve address (internal to the pool: users reach a
service through the API, which checks who may), deploys the application
under the route `/<job id>`, reports step 1 once it answers (the job turns
RUNNING), and then stays up as long as the service should exist. Stopping
the Ray job (cancel) sends SIGTERM: the application is deleted, its
replicas stop, and the job's allocation is released by the scheduler.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from commonpool.workers import job
from commonpool.workers.runner import launch_spec

ENV_SERVE_HOST = "COMMONPOOL_SERVE_HOST"
ENV_SERVE_PORT = "COMMONPOOL_SERVE_PORT"
STATUS_EVERY_S = 5.0


def route_of(job_id: str) -> str:
    return f"/{job_id}"


def main() -> int:
    import ray
    from ray import serve

    from commonpool.workers.serving.app import build_app

    request = launch_spec.load(os.environ[launch_spec.ENV_LAUNCH])
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    ray.init(logging_level="WARNING")
    serve.start(
        http_options={"host": os.environ[ENV_SERVE_HOST], "port": int(os.environ[ENV_SERVE_PORT])},
        proxy_location="HeadOnly",
    )
    try:
        serve.run(
            build_app(request), name=request.job_id, route_prefix=route_of(request.job_id),
            blocking=False,
        )
        replicas = len(request.workers)
        print(f"commonpool: serving {request.inputs[0].ref} with {replicas} replicas at "
              f"{route_of(request.job_id)}", flush=True)
        job.post_metrics({"replicas": float(replicas)}, step=1)
        while not stopping.wait(STATUS_EVERY_S):
            status = serve.status().applications.get(request.job_id)
            if status is None or status.status in ("DEPLOY_FAILED", "UNHEALTHY"):
                message = status.message if status else "the application disappeared"
                print(f"commonpool: service failed: {message}", file=sys.stderr, flush=True)
                return 1
    finally:
        serve.delete(request.job_id, _blocking=False)
    print("commonpool: service stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
