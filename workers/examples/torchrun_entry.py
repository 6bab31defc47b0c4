"""Run a bundled example under plain `torchrun`, outside the pool, for comparison.

    torchrun --nproc-per-node 2 -m commonpool.workers.examples.torchrun_entry digits_mlp epochs=5

Initialises the gloo process group from torchrun's environment and calls the
example's `train` with the same code path the pool runs.
"""

from __future__ import annotations

import importlib
import json
import sys

import torch.distributed as dist


def main(argv: list[str]) -> None:
    example, *pairs = argv
    config = {k: json.loads(v) for k, v in (p.split("=", 1) for p in pairs)}
    dist.init_process_group("gloo")
    try:
        module = importlib.import_module(f"commonpool.workers.examples.{example}")
        metrics = module.train(config)
        if dist.get_rank() == 0:
            print("RESULT " + json.dumps(metrics), flush=True)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
