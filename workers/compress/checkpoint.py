"""Find and load the model a finished pool job left in the checkpoint storage.

Ray Train names each checkpoint `checkpoint_<UTC timestamp>` under the run
dir `<storage>/<job id>/`, and rank 0 of the bundled examples writes
`model.pt` into it (`workers/examples/ddp.py`), so the latest checkpoint
is the last name in sort order.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from commonpool.workers.examples.ddp import CHECKPOINT_FILE
from commonpool.workers.examples.digits_mlp import build_model


class CheckpointNotFound(FileNotFoundError):
    """No checkpoint with a model file under the job's run dir."""


def find_latest_checkpoint(storage: str | Path, job_id: str) -> Path:
    """`<storage>/<job id>/checkpoint_*/model.pt` of the newest checkpoint."""
    run_dir = Path(storage) / job_id
    candidates = sorted(
        run_dir.glob(f"checkpoint_*/{CHECKPOINT_FILE}"),
        key=lambda p: (p.parent.name, p.stat().st_mtime),
    )
    if not candidates:
        raise CheckpointNotFound(f"no checkpoint_*/{CHECKPOINT_FILE} under {run_dir}")
    return candidates[-1]


def load_digits_mlp(path: str | Path) -> nn.Module:
    """The digits-mlp of a checkpoint file, in eval mode; the hidden width is read from it."""
    state = torch.load(Path(path), weights_only=True)
    weights = state["model"]
    model = build_model(hidden=int(weights["0.weight"].shape[0]))
    model.load_state_dict(weights)
    return model.eval()
