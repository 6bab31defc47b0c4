"""A model artifact as a batch predict function: PyTorch checkpoint, TorchScript or ONNX.

What format an artifact holds is read from its files, so the same artifact
serves whatever published it: an `*.onnx` file runs on onnxruntime, a
`*.ts` / `*.torchscript` file with `torch.jit.load`, and a training
checkpoint (`model.pt`, a state dict under `model` as the examples save it)
loads into the nn.Module that the service's `builder` returns.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

Predict = Callable[[np.ndarray], np.ndarray]

CHECKPOINT_FILE = "model.pt"
TORCHSCRIPT_SUFFIXES = (".ts", ".torchscript")


class ModelLoadError(ValueError):
    """The artifact's files are not a model this service can load (and why)."""


def load_predictor(directory: Path, builder: str | None = None, threads: int = 1) -> Predict:
    """float32 rows in, the model's outputs (one row each) out."""
    onnx = sorted(directory.rglob("*.onnx"))
    if onnx:
        return _onnx(onnx[0], threads)
    scripted = sorted(p for p in directory.rglob("*") if p.suffix in TORCHSCRIPT_SUFFIXES)
    if scripted:
        import torch

        return _torch(torch.jit.load(str(scripted[0])), threads)
    checkpoint = next(iter(sorted(directory.rglob(CHECKPOINT_FILE))), None)
    if checkpoint is None:
        raise ModelLoadError(
            f"no *.onnx, *.ts or {CHECKPOINT_FILE} in the artifact ({_listing(directory)})"
        )
    if builder is None:
        raise ModelLoadError(
            f"the artifact is a training checkpoint ({CHECKPOINT_FILE}): give the service a "
            "`builder` (module:function returning the nn.Module its weights load into)"
        )
    return _torch(_load_checkpoint(checkpoint, builder), threads)


def _load_checkpoint(checkpoint: Path, builder: str):  # type: ignore[no-untyped-def]
    import torch

    module_name, _, attr = builder.partition(":")
    model = getattr(importlib.import_module(module_name), attr)()
    state = torch.load(checkpoint, weights_only=True, map_location="cpu")
    model.load_state_dict(state.get("model", state))
    return model


def _torch(model, threads: int) -> Predict:  # type: ignore[no-untyped-def]
    import torch

    torch.set_num_threads(threads)
    model.eval()

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    return predict


def _onnx(path: Path, threads: int) -> Predict:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def predict(x: np.ndarray) -> np.ndarray:
        return session.run(None, {name: x})[0]

    return predict


def _listing(directory: Path) -> str:
    names = sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())
    return ", ".join(names[:10]) or "empty"
