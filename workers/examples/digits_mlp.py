"""digits-mlp: an MLP on scikit-learn's bundled 8x8 digits (no download), trained with DDP.

Entry point `commonpool.workers.examples.digits_mlp:train`. Every worker
reads its shard through a DistributedSampler; gradients are averaged by
DDP (gloo on CPU, NCCL on GPU). Rank 0 writes a checkpoint each epoch, and
a resumed attempt continues from the latest one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import TensorDataset

from commonpool.workers.examples.ddp import fit

DEFAULTS: dict[str, Any] = {"epochs": 20, "batch_size": 64, "lr": 0.05, "hidden": 128, "seed": 0}


def build_model(hidden: int = 128) -> nn.Module:
    return nn.Sequential(
        nn.Linear(64, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, 10),
    )


def datasets(seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """Train/test split of the 1,797 digits, scaled to [0, 1]."""
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.2, random_state=seed, stratify=digits.target
    )
    return (
        TensorDataset(torch.from_numpy(x_train), torch.from_numpy(y_train)),
        TensorDataset(torch.from_numpy(x_test), torch.from_numpy(y_test)),
    )


def train(config: dict[str, Any]) -> dict[str, float]:
    cfg = {**DEFAULTS, **(config or {})}
    torch.manual_seed(cfg["seed"])
    train_set, test_set = datasets(cfg["seed"])
    return fit(build_model(cfg["hidden"]), train_set, test_set, cfg)
