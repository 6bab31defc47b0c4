"""Post-training dynamic int8 quantization of the Linear layers (torch.ao)."""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy whose Linear weights are int8 (activations quantized per batch at run time).

    torch.ao.quantization warns that it is deprecated in favour of torchao; it
    still ships with and works in the pinned torch, so the warnings are muted.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(copy.deepcopy(model).eval(), {nn.Linear}, dtype=torch.qint8)


def linear_weight_bytes(model: nn.Module) -> int:
    """Bytes of the Linear layers' weights, fp32 or packed int8, as stored in the state dict."""
    total = 0
    for key, value in model.state_dict().items():
        if key.endswith("_packed_params._packed_params"):
            weight, _bias = value
            total += weight.int_repr().numel() * weight.int_repr().element_size()
        elif key.endswith(".weight") and isinstance(value, torch.Tensor):
            total += value.numel() * value.element_size()
    return total
