"""Accuracy, loss, latency and energy per 1,000 inferences of one model on a held-out split.

Energy uses the pool's own telemetry, as the agent does for jobs: a
`NodeEnergySampler` (RAPL package counters when readable, else the
utilisation power model of `docs/energy.md`) is sampled around the timed
loop, and `attribute_interval` gives this process its share of the
active energy by CPU seconds; idle power is not charged. On a node
without RAPL every joule is estimated, and the report says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from commonpool.workers.telemetry import (
    JobUsage,
    NodeCpuTimes,
    NodeEnergySampler,
    attribute_interval,
)

Predict = Callable[[torch.Tensor], torch.Tensor]
"""A batch of inputs -> logits; wraps a torch module or an onnxruntime session alike."""


@dataclass(frozen=True)
class Measurement:
    accuracy: float
    loss: float
    latency_ms_per_batch: float
    energy_j_per_1000: float
    energy_estimated: bool
    inferences: int


class EnergyMeter:
    """This process's attributed energy over an interval, from the node's sampler."""

    def __init__(self, sampler: NodeEnergySampler | None = None) -> None:
        self.sampler = sampler or NodeEnergySampler.probe(nvml=None)
        self._process = psutil.Process()

    @property
    def method(self) -> str:
        return self.sampler.methods.get("cpu", "unknown")

    @property
    def note(self) -> str:
        return self.sampler.notes.get("cpu", "")

    def measure(self, work: Callable[[], None]) -> tuple[float, bool]:
        """Run `work`; returns (joules attributed to this process, whether estimated)."""
        node = NodeCpuTimes()
        self.sampler.sample()  # baseline: the next sample covers exactly `work`
        before = sum(self._process.cpu_times()[:2])
        work()
        cpu_seconds = sum(self._process.cpu_times()[:2]) - before
        samples = self.sampler.sample()
        busy, _ = node.delta()
        energy = attribute_interval(samples, [JobUsage("self", cpu_seconds)], busy).jobs["self"]
        return energy.joules, energy.estimated_joules > 0 or not samples


@torch.no_grad()
def evaluate(predict: Predict, test_set: TensorDataset) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) over the whole held-out set."""
    x, y = test_set.tensors
    logits = predict(x)
    accuracy = float((logits.argmax(dim=1) == y).float().mean())
    return accuracy, float(F.cross_entropy(logits, y))


@torch.no_grad()
def measure(
    predict: Predict,
    test_set: TensorDataset,
    meter: EnergyMeter,
    *,
    batch_size: int = 64,
    min_seconds: float = 0.5,
) -> Measurement:
    """Evaluate, then time batches of `batch_size` for at least `min_seconds` and meter them."""
    accuracy, loss = evaluate(predict, test_set)
    x = test_set.tensors[0]
    batches = [x[i : i + batch_size] for i in range(0, len(x) - batch_size + 1, batch_size)]
    batches = batches or [x]
    for batch in batches[:3]:  # warm-up: allocators, onnxruntime's first run
        predict(batch)
    done = {"batches": 0, "inferences": 0, "seconds": 0.0}

    def work() -> None:
        started = time.perf_counter()
        while time.perf_counter() - started < min_seconds:
            for batch in batches:
                predict(batch)
                done["batches"] += 1
                done["inferences"] += len(batch)
        done["seconds"] = time.perf_counter() - started

    joules, estimated = meter.measure(work)
    return Measurement(
        accuracy=accuracy,
        loss=loss,
        latency_ms_per_batch=1000 * done["seconds"] / done["batches"],
        energy_j_per_1000=1000 * joules / done["inferences"],
        energy_estimated=estimated,
        inferences=int(done["inferences"]),
    )
