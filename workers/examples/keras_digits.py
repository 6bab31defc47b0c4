"""keras-digits: a Keras 3 MLP on scikit-learn's bundled digits, trained data-parallel with DDP.

Entry point `commonpool.workers.examples.keras_digits:train`. Keras runs on
its torch backend (`KERAS_BACKEND=torch`, the default here), so TensorFlow
is not needed.

Why the shared torch loop and not `model.fit()`: with the torch backend a
Keras model *is* a `torch.nn.Module` whose Keras variables are registered
`torch.nn.Parameter`s, so DDP (through `ray.train.torch.prepare_model`)
sees them, broadcasts rank 0's initial weights and averages gradients like
for any torch model. Keras' own multi-worker data parallelism
(`keras.distribution`) exists only for the JAX backend, and `fit()` knows
nothing of DDP. So the model is defined with Keras layers and trained by
the same loop as the other examples (`ddp.fit`: DistributedSampler shards,
per-epoch `job.report`, rank-0 checkpoints, resume). Layers are named, so
the checkpoint's state-dict keys are the same in every process.
"""

from __future__ import annotations

import os
import random
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import torch
from torch import nn

from commonpool.workers.examples.ddp import fit
from commonpool.workers.examples.digits_mlp import datasets

DEFAULTS: dict[str, Any] = {"epochs": 12, "batch_size": 64, "lr": 0.05, "hidden": 64, "seed": 0}


def build_model(hidden: int = 64) -> nn.Module:
    """A Keras Sequential MLP (64 -> hidden -> hidden -> 10 logits); a torch module here."""
    if keras.backend.backend() != "torch":
        raise RuntimeError(
            f"keras_digits needs KERAS_BACKEND=torch (Keras was imported with "
            f"{keras.backend.backend()!r}); set it in the job's env"
        )
    return keras.Sequential(
        [
            keras.Input(shape=(64,)),
            keras.layers.Dense(hidden, activation="relu", name="hidden_1"),
            keras.layers.Dense(hidden, activation="relu", name="hidden_2"),
            keras.layers.Dense(10, name="logits"),
        ],
        name="keras_digits",
    )


def train(config: dict[str, Any]) -> dict[str, float]:
    cfg = {**DEFAULTS, **(config or {})}
    # Not keras.utils.set_random_seed: it imports TensorFlow whenever that is installed.
    # Keras draws unseeded initializer seeds from Python's `random`.
    random.seed(cfg["seed"])
    torch.manual_seed(cfg["seed"])
    train_set, test_set = datasets(cfg["seed"])
    return fit(build_model(cfg["hidden"]), train_set, test_set, cfg)
