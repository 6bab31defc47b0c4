"""synthetic-convnet: a small CNN classifying generated 16x16 shapes, trained with DDP.

Entry point `commonpool.workers.examples.synthetic_convnet:train`. The data
set (squares, crosses, horizontal and vertical bars, with noise and random
positions) is generated from the seed, so every worker builds the same one
without any download.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from commonpool.workers.examples.ddp import fit

DEFAULTS: dict[str, Any] = {"epochs": 8, "batch_size": 64, "lr": 0.02, "samples": 2048, "seed": 0}
SIZE = 16
CLASSES = 4


def make_images(n: int, seed: int) -> TensorDataset:
    """`n` noisy 1x16x16 images of four shape classes at random positions."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (n,), generator=gen)
    images = torch.rand((n, 1, SIZE, SIZE), generator=gen) * 0.3
    offsets = torch.randint(2, SIZE - 8, (n, 2), generator=gen)
    for i in range(n):
        r, c = int(offsets[i, 0]), int(offsets[i, 1])
        kind = int(labels[i])
        if kind == 0:
            images[i, 0, r : r + 6, c : c + 6] += 1.0
        elif kind == 1:
            images[i, 0, r + 2 : r + 4, c : c + 6] += 1.0
            images[i, 0, r : r + 6, c + 2 : c + 4] += 1.0
        elif kind == 2:
            images[i, 0, r + 2 : r + 4, c : c + 8] += 1.0
        else:
            images[i, 0, r : r + 8, c + 2 : c + 4] += 1.0
    return TensorDataset(images.clamp(0, 1), labels)


def build_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, CLASSES),
    )


def train(config: dict[str, Any]) -> dict[str, float]:
    cfg = {**DEFAULTS, **(config or {})}
    torch.manual_seed(cfg["seed"])
    train_set = make_images(cfg["samples"], cfg["seed"])
    test_set = make_images(max(cfg["samples"] // 4, 64), cfg["seed"] + 1)
    return fit(build_model(), train_set, test_set, cfg)
