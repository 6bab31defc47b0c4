"""Global magnitude (L1) pruning of the Linear weights with torch.nn.utils.prune."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import prune


def prune_magnitude(model: nn.Module, sparsity: float) -> nn.Module:
    """A copy with the smallest `sparsity` fraction of all Linear weights set to zero.

    Global rather than per layer, so small layers keep more of their weights.
    The masks are made permanent (`prune.remove`): the result is a plain model.
    """
    pruned = copy.deepcopy(model).eval()
    linears = [(m, "weight") for m in pruned.modules() if isinstance(m, nn.Linear)]
    prune.global_unstructured(linears, pruning_method=prune.L1Unstructured, amount=sparsity)
    for module, name in linears:
        prune.remove(module, name)
    return pruned


def linear_sparsity(model: nn.Module) -> float:
    """Fraction of exactly-zero Linear weights."""
    weights = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    zeros = sum(int((w == 0).sum()) for w in weights)
    return zeros / max(sum(w.numel() for w in weights), 1)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def nonzero_params(model: nn.Module) -> int:
    return sum(int((p != 0).sum()) for p in model.parameters())
