"""One rank of a warm-started ddp job: the training loop in a plain process, torchrun-style.

A cold Ray Train run spends ~10 s here before its first step: a Ray Jobs
driver process, Train's controller actor, a placement group, one worker
actor per rank, then the process group. A pool that starts ddp jobs warm
(`ddp_start = "warm"`) skips all of that: the scheduler asks the warm
`CommandExecutor` already running on each allocated node to start this
module once per rank (one actor call per rank), with the rank's place in
the environment the way torchrun gives it:

- `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`;
- `MASTER_ADDR`, `MASTER_PORT`: rank 0's node and a port free on it;
- `COMMONPOOL_LAUNCH`: the launch (entrypoint, config, allocations);
- `COMMONPOOL_NODE_ID`: the registry node (`job.context().node_label`);
- `COMMONPOOL_CHECKPOINT_DIR`: where rank 0's checkpoints are kept and a
  later attempt resumes from (`job.report`, `job.latest_checkpoint_dir`).

The same loop runs (job code sees the same `commonpool.workers.job` API);
the exit code is the rank's verdict and its traceback ends its output,
which the runner turns into the job's exit reason.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from datetime import timedelta

from commonpool.workers.runner import launch_spec
from commonpool.workers.runner.driver import resolve

# How long a rank waits for its peers to join the process group: every rank is
# started within one scheduler step, so minutes mean a peer that never came.
RENDEZVOUS_TIMEOUT_S = 300.0


def main() -> int:
    request = launch_spec.load(os.environ[launch_spec.ENV_LAUNCH])
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    worker = next(w for w in request.workers if w.rank == rank)
    backend = "nccl" if worker.gpus else "gloo"
    print(
        f"commonpool: job {request.job_id} attempt {request.attempt} rank {rank}/{world} on "
        f"node {worker.node_id} (warm start, {backend})",
        flush=True,
    )
    import torch
    import torch.distributed as dist

    if worker.gpus:  # the executor made only this rank's GPUs visible: the first is ours
        torch.cuda.set_device(0)
    started = time.monotonic()
    dist.init_process_group(backend, timeout=timedelta(seconds=RENDEZVOUS_TIMEOUT_S))
    if rank == 0:
        print(f"commonpool: process group of {world} up in "
              f"{time.monotonic() - started:.2f} s", flush=True)
    try:
        result = resolve(str(request.entrypoint))(request.args)
    except Exception:
        traceback.print_exc()
        return 1
    finally:
        if dist.is_initialized():  # the loop may have torn it down itself
            dist.destroy_process_group()
    if rank == 0:
        print(f"commonpool: finished; final metrics {result}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
