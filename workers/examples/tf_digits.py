"""tf-digits: an MLP on scikit-learn's digits, trained with TensorFlow's
MultiWorkerMirroredStrategy under Ray Train's TensorflowTrainer.

Entry point `commonpool.workers.examples.tf_digits:train`, with the job spec's
`framework: tensorflow` (needs the `tensorflow` extra on every node). Ray sets
TF_CONFIG on each worker; the strategy reads it and all-reduces gradients
between the workers on the allocated nodes.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from commonpool.workers import job
from commonpool.workers.examples.digits_mlp import datasets

DEFAULTS: dict[str, Any] = {"epochs": 8, "batch_size": 32, "lr": 0.1, "hidden": 64, "seed": 0}


def train(config: dict[str, Any]) -> dict[str, float]:
    cfg = {**DEFAULTS, **(config or {})}
    import tensorflow as tf

    tf.random.set_seed(cfg["seed"])
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    ctx = job.context()
    print(f"commonpool: rank {ctx.rank}/{ctx.world_size} on node {ctx.node_label}", flush=True)
    train_set, test_set = datasets(cfg["seed"])
    x_train, y_train = (t.numpy() for t in train_set.tensors)
    x_test, y_test = (t.numpy() for t in test_set.tensors)
    global_batch = cfg["batch_size"] * strategy.num_replicas_in_sync
    data = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices((x_train, y_train.astype("int64")))
        .shuffle(len(x_train), seed=cfg["seed"]).batch(global_batch))
    with strategy.scope():
        model = _Mlp(64, cfg["hidden"], 10, seed=cfg["seed"])
    step = _train_step(tf, strategy, model, cfg["lr"], global_batch)
    metrics: dict[str, float] = {}
    for epoch in range(cfg["epochs"]):
        started, total, batches = time.perf_counter(), 0.0, 0
        for x, y in data:
            total += float(step(x, y))
            batches += 1
        rate = len(x_train) / (time.perf_counter() - started)
        predicted = np.argmax(model(tf.constant(x_test)).numpy(), axis=1)
        metrics = {"epoch": epoch + 1, "loss": total / max(batches, 1),
                   "accuracy": float((predicted == y_test).mean()), "samples_per_s": rate}
        job.report(metrics, step=epoch + 1)
        if ctx.rank == 0:
            print(f"epoch {epoch + 1} loss {metrics['loss']:.4f} "
                  f"accuracy {metrics['accuracy']:.3f}", flush=True)
    return metrics


class _Mlp:
    """Two dense layers as plain mirrored variables: `MEAN` aggregation makes every
    replica's update the average of all replicas' (synchronous data parallelism)."""

    def __init__(self, inputs: int, hidden: int, outputs: int, seed: int) -> None:
        import tensorflow as tf

        init = tf.keras.initializers.GlorotUniform(seed=seed)
        mean = tf.VariableAggregation.MEAN
        self.variables = [
            tf.Variable(init((inputs, hidden)), aggregation=mean),
            tf.Variable(tf.zeros(hidden), aggregation=mean),
            tf.Variable(init((hidden, outputs)), aggregation=mean),
            tf.Variable(tf.zeros(outputs), aggregation=mean),
        ]

    def __call__(self, x: Any) -> Any:
        import tensorflow as tf

        w1, b1, w2, b2 = self.variables
        return tf.matmul(tf.nn.relu(tf.matmul(x, w1) + b1), w2) + b2


def _train_step(tf: Any, strategy: Any, model: _Mlp, lr: float, global_batch: int) -> Any:
    @tf.function
    def step(x: Any, y: Any) -> Any:
        def replica_step(x: Any, y: Any) -> Any:
            with tf.GradientTape() as tape:
                per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(y, model(x))
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
            grads = tape.gradient(loss, model.variables)
            for variable, grad in zip(model.variables, grads, strict=True):
                variable.assign_sub(lr * grad * strategy.num_replicas_in_sync)
            return loss

        per_replica = strategy.run(replica_step, args=(x, y))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    return step
