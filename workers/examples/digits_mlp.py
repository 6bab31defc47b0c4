"""digits-mlp: an MLP on scikit-learn's bundled 8x8 digits (no download), trained with DDP.

Entry point `commonpool.workers.examples.digits_mlp:train`. Every worker
reads its shard through a DistributedSampler; gradients are averaged by
DDP (gloo on CPU, NCCL on GPU). Rank 0 writes a checkpoint each epoch, and
a resumed attempt continues from the latest one. `dataset: NAME` reads the
digits from a dataset artifact the job names (`datasets: [NAME@V]`) instead
of scikit-learn's copy; `init_from: MODEL@V` starts from a published model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import TensorDataset

from commonpool.workers import job
from commonpool.workers.examples.ddp import fit

DATA_FILE = "digits.npz"
DEFAULTS: dict[str, Any] = {"epochs": 20, "batch_size": 64, "lr": 0.05, "hidden": 128, "seed": 0}


def build_model(hidden: int = 128) -> nn.Module:
    return nn.Sequential(
        nn.Linear(64, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, 10),
    )


def load_arrays(dataset: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels): scikit-learn's copy, or `DATA_FILE` of the dataset artifact
    `dataset` (arrays `x`, 64 pixels 0-16, and `y`), staged on this node by the pool."""
    if dataset is None:
        digits = load_digits()
        return digits.data, digits.target
    with np.load(job.input_dir(dataset) / DATA_FILE) as data:
        return data["x"], data["y"]


def datasets(seed: int = 0, dataset: str | None = None) -> tuple[TensorDataset, TensorDataset]:
    """Train/test split of the 1,797 digits, scaled to [0, 1]."""
    images, labels = load_arrays(dataset)
    x = (images / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, labels, test_size=0.2, random_state=seed, stratify=labels
    )
    return (
        TensorDataset(torch.from_numpy(x_train), torch.from_numpy(y_train)),
        TensorDataset(torch.from_numpy(x_test), torch.from_numpy(y_test)),
    )


def train(config: dict[str, Any]) -> dict[str, float]:
    cfg = {**DEFAULTS, **(config or {})}
    torch.manual_seed(cfg["seed"])
    train_set, test_set = datasets(cfg["seed"], cfg.get("dataset"))
    return fit(build_model(cfg["hidden"]), train_set, test_set, cfg)


def quick_model(steps: int = 60, seed: int = 0) -> nn.Module:
    """A digits-mlp fitted full-batch in this process in about a second: a model to serve
    in tests, demos and benchmarks (not a training run: that is `train`, on the pool)."""
    images, labels = load_arrays()
    x = torch.from_numpy((images / 16.0).astype(np.float32))
    y = torch.from_numpy(labels)
    torch.manual_seed(seed)
    model = build_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.eval()
