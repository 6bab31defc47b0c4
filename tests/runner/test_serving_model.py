"""Model artifacts as predict functions: a checkpoint with its builder, TorchScript, ONNX."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from commonpool.workers.compress.export import export_onnx
from commonpool.workers.examples.digits_mlp import build_model
from commonpool.workers.serving.model import ModelLoadError, load_predictor

BUILDER = "commonpool.workers.examples.digits_mlp:build_model"


@pytest.fixture
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model().eval()


@pytest.fixture
def rows() -> np.ndarray:
    return np.random.default_rng(0).random((5, 64), dtype=np.float32)


def _expected(model: torch.nn.Module, rows: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(rows)).numpy()


def test_a_checkpoint_loads_into_its_builder(model, rows, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    torch.save({"model": model.state_dict(), "epoch": 3}, tmp_path / "model.pt")
    predict = load_predictor(tmp_path, BUILDER)
    np.testing.assert_allclose(predict(rows), _expected(model, rows), rtol=1e-6)
    with pytest.raises(ModelLoadError, match="builder"):
        load_predictor(tmp_path)


def test_torchscript_and_onnx_need_no_builder(model, rows, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    scripted = tmp_path / "ts"
    scripted.mkdir()
    torch.jit.save(torch.jit.script(model), str(scripted / "model.ts"))
    np.testing.assert_allclose(load_predictor(scripted)(rows), _expected(model, rows), rtol=1e-6)
    onnx = tmp_path / "onnx"
    onnx.mkdir()
    export_onnx(model, torch.from_numpy(rows), onnx / "model.onnx")
    np.testing.assert_allclose(
        load_predictor(onnx)(rows), _expected(model, rows), rtol=1e-4, atol=1e-6
    )


def test_an_artifact_without_a_model_says_what_it_holds(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ModelLoadError, match=r"notes\.txt"):
        load_predictor(tmp_path)
