"""Knowledge distillation: train a smaller digits-mlp from the teacher's softened outputs.

Loss = alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - alpha) * CE(labels),
Hinton, Vinyals and Dean, "Distilling the Knowledge in a Neural Network" (2015).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from commonpool.workers.examples.digits_mlp import build_model


@dataclass(frozen=True)
class DistilConfig:
    hidden: int = 32
    epochs: int = 40
    batch_size: int = 64
    lr: float = 0.05
    temperature: float = 4.0
    alpha: float = 0.7
    seed: int = 0


def distil_student(
    teacher: nn.Module, train_set: TensorDataset, cfg: DistilConfig = DistilConfig()
) -> nn.Module:
    """A digits-mlp of width `cfg.hidden` trained to match `teacher` on `train_set`."""
    torch.manual_seed(cfg.seed)
    teacher = teacher.eval()
    student = build_model(hidden=cfg.hidden)
    optimizer = torch.optim.SGD(student.parameters(), lr=cfg.lr, momentum=0.9)
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, generator=gen)
    t = cfg.temperature
    for _ in range(cfg.epochs):
        student.train()
        for x, y in loader:
            with torch.no_grad():
                soft_targets = F.softmax(teacher(x) / t, dim=1)
            logits = student(x)
            soft = F.kl_div(F.log_softmax(logits / t, dim=1), soft_targets, reduction="batchmean")
            loss = cfg.alpha * t * t * soft + (1 - cfg.alpha) * F.cross_entropy(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return student.eval()
