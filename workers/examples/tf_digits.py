"""tf-digits: a Keras MLP on scikit-learn's digits, trained with TensorFlow's
MultiWorkerMirroredStrategy under Ray Train's TensorflowTrainer.

Entry point `commonpool.workers.examples.tf_digits:train`, with the job spec's
`framework: tensorflow` (needs the `tensorflow` extra on every node). Ray sets
TF_CONFIG on each worker; the strategy reads it and all-reduces gradients
between the workers on the allocated nodes.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from commonpool.workers import job
from commonpool.workers.examples.digits_mlp import datasets

DEFAULTS: dict[str, Any] = {"epochs": 8, "batch_size": 32, "lr": 0.05, "hidden": 64, "seed": 0}


def train(config: dict[str, Any]) -> dict[str, float]:
    cfg = {**DEFAULTS, **(config or {})}
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import tensorflow as tf

    tf.random.set_seed(cfg["seed"])
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    ctx = job.context()
    train_set, test_set = datasets(cfg["seed"])
    x_train, y_train = (t.numpy() for t in train_set.tensors)
    x_test, y_test = (t.numpy() for t in test_set.tensors)
    global_batch = cfg["batch_size"] * strategy.num_replicas_in_sync
    data = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(len(x_train), seed=cfg["seed"])
        .batch(global_batch)
    )
    with strategy.scope():
        model = tf.keras.Sequential(
            [
                tf.keras.Input(shape=(64,)),
                tf.keras.layers.Dense(cfg["hidden"], activation="relu"),
                tf.keras.layers.Dense(10),
            ]
        )
        model.compile(
            optimizer=tf.keras.optimizers.SGD(cfg["lr"], momentum=0.9),
            loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    metrics: dict[str, float] = {}
    for epoch in range(cfg["epochs"]):
        started = time.perf_counter()
        loss = float(model.fit(data, epochs=1, verbose=0).history["loss"][-1])
        rate = len(x_train) / (time.perf_counter() - started)
        predicted = np.argmax(model.predict(x_test, verbose=0), axis=1)
        metrics = {
            "epoch": epoch + 1,
            "loss": loss,
            "accuracy": float((predicted == y_test).mean()),
            "samples_per_s": rate,
        }
        job.report(metrics, step=epoch + 1)
        if ctx.rank == 0:
            print(
                f"epoch {epoch + 1} loss {loss:.4f} accuracy {metrics['accuracy']:.3f}", flush=True
            )
    return metrics
