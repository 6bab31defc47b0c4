"""What the bundled examples share: DDP wrapping, evaluation, checkpoint save and resume."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from commonpool.workers import job

CHECKPOINT_FILE = "model.pt"


def prepare(model: nn.Module) -> nn.Module:
    """DDP-wrap under Ray Train, warm-started or under torchrun (gloo on CPU, NCCL on GPU);
    alone, unchanged."""
    if job.context().world_size == 1:
        return model
    if not job.under_ray_train():  # the process group is already initialised
        return nn.parallel.DistributedDataParallel(model)
    import ray.train.torch

    return ray.train.torch.prepare_model(model)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


@torch.no_grad()
def evaluate(model: nn.Module, dataset: TensorDataset, batch_size: int = 512) -> float:
    """Accuracy on the whole held-out set (every rank computes the same number)."""
    net = unwrap(model)
    net.eval()
    correct = total = 0
    for x, y in DataLoader(dataset, batch_size=batch_size):
        correct += int((net(x).argmax(dim=1) == y).sum())
        total += len(y)
    return correct / max(total, 1)


def save_checkpoint(
    directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int
) -> None:
    torch.save(
        {"model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch},
        directory / CHECKPOINT_FILE,
    )


def resume_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Load the latest checkpoint if this attempt has one; returns the epoch to start from.

    A first attempt of a job with `init_from` starts from that model's weights
    (not its optimizer or epoch: it is a new training run).
    """
    directory = job.latest_checkpoint_dir()
    if directory is None or not (Path(directory) / CHECKPOINT_FILE).exists():
        init = job.init_dir()
        if init is not None:
            state = torch.load(init / CHECKPOINT_FILE, weights_only=True)
            model.load_state_dict(state["model"])
            print(f"commonpool: starting from the weights in {init}", flush=True)
        return 0
    state = torch.load(Path(directory) / CHECKPOINT_FILE, weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["epoch"])


def make_optimizer(model: nn.Module, cfg: dict[str, Any]) -> torch.optim.Optimizer:
    """SGD with momentum (the default), or AdamW with `optimizer: adamw` (Transformers)."""
    if cfg.get("optimizer", "sgd") == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg["lr"])
    return torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=0.9)


def fit(
    model: nn.Module, train_set: TensorDataset, test_set: TensorDataset, cfg: dict[str, Any]
) -> dict[str, float]:
    """The DDP training loop both examples share; returns the last epoch's metrics.

    Each worker reads its shard through a DistributedSampler; every epoch
    reports loss, held-out accuracy and samples/s, with a checkpoint from
    rank 0, and a resumed attempt continues from its latest checkpoint.
    """
    ctx = job.context()
    print(f"commonpool: rank {ctx.rank}/{ctx.world_size} on node {ctx.node_label}", flush=True)
    sampler = DistributedSampler(
        train_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=cfg["seed"]
    )
    loader = DataLoader(train_set, batch_size=cfg["batch_size"], sampler=sampler)
    optimizer = make_optimizer(model, cfg)
    start_epoch = resume_state(model, optimizer)
    model = prepare(model)
    loss_fn = nn.CrossEntropyLoss()
    metrics: dict[str, float] = {}
    for epoch in range(start_epoch, cfg["epochs"]):
        sampler.set_epoch(epoch)
        model.train()
        started, seen, total_loss = time.perf_counter(), 0, 0.0
        for x, y in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(y)
            seen += len(y)
        rate = seen * ctx.world_size / (time.perf_counter() - started)
        metrics = {
            "epoch": epoch + 1,
            "loss": total_loss / max(seen, 1),
            "accuracy": evaluate(model, test_set),
            "samples_per_s": rate,
        }
        with tempfile.TemporaryDirectory() as tmp:
            if ctx.rank == 0:
                save_checkpoint(Path(tmp), model, optimizer, epoch + 1)
            job.report(metrics, step=epoch + 1, checkpoint_dir=tmp if ctx.rank == 0 else None)
        if ctx.rank == 0:
            print(
                f"epoch {epoch + 1}/{cfg['epochs']} loss {metrics['loss']:.4f} "
                f"accuracy {metrics['accuracy']:.3f} samples/s {rate:.0f}",
                flush=True,
            )
    return metrics
