"""ONNX export of a torch model, verified against PyTorch with onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | Path) -> Path:
    """Write `model` as ONNX with a dynamic batch dimension (input `x`, output `logits`)."""
    path = Path(path)
    torch.onnx.export(
        model.eval(),
        (example,),
        str(path),
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
        dynamo=False,
    )
    return path


def onnx_session(path: str | Path, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_predict(session: ort.InferenceSession, x: torch.Tensor) -> torch.Tensor:
    (logits,) = session.run(["logits"], {"x": x.numpy().astype(np.float32)})
    return torch.from_numpy(logits)


@torch.no_grad()
def max_abs_diff(model: nn.Module, session: ort.InferenceSession, x: torch.Tensor) -> float:
    """Largest |PyTorch - onnxruntime| over the outputs for `x`."""
    return float((model.eval()(x) - onnx_predict(session, x)).abs().max())
