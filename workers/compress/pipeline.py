"""The compression pipeline on a digits-mlp checkpoint: build each variant, measure, report.

Variants, each saved under `out_dir` and measured on the held-out split the
training job evaluated on (same seed), with the same thread count:

- `fp32`: the original checkpoint;
- `int8-dynamic`: dynamic int8 quantization of the Linear layers;
- `pruned`: global magnitude pruning to the requested sparsity;
- `distilled`: a narrower digits-mlp trained from the teacher;
- `onnx`: the fp32 model exported to ONNX and run with onnxruntime, checked
  to match PyTorch within `onnx_tolerance`.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from commonpool.workers.compress.checkpoint import load_digits_mlp
from commonpool.workers.compress.distil import DistilConfig, distil_student
from commonpool.workers.compress.export import (
    export_onnx,
    max_abs_diff,
    onnx_predict,
    onnx_session,
)
from commonpool.workers.compress.measure import EnergyMeter, Measurement, Predict, measure
from commonpool.workers.compress.prune import (
    count_params,
    linear_sparsity,
    nonzero_params,
    prune_magnitude,
)
from commonpool.workers.compress.quantize import linear_weight_bytes, quantize_int8
from commonpool.workers.compress.report import CompressionReport, VariantReport
from commonpool.workers.examples.digits_mlp import datasets


class OnnxMismatch(AssertionError):
    """onnxruntime's outputs differ from PyTorch's by more than the tolerance."""


@dataclass(frozen=True)
class PipelineConfig:
    sparsity: float = 0.5
    student_hidden: int = 32
    distil_epochs: int = 40
    batch_size: int = 64
    threads: int = 1
    seed: int = 0
    min_seconds: float = 0.5
    onnx_tolerance: float = 1e-4


def _file_sizes(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    return len(data), len(gzip.compress(data, compresslevel=9))


def run_pipeline(
    checkpoint: str | Path,
    out_dir: str | Path,
    cfg: PipelineConfig = PipelineConfig(),
    *,
    source: str | None = None,
    meter: EnergyMeter | None = None,
    log: Callable[[str], None] = print,
) -> CompressionReport:
    """Compress the digits-mlp in `checkpoint`; artifacts and `report.json` go to `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    meter = meter or EnergyMeter()
    train_set, test_set = datasets(cfg.seed)
    original = load_digits_mlp(checkpoint)
    variants: list[VariantReport] = []
    baseline: Measurement | None = None

    def add(name: str, artifact: Path, model: nn.Module, predict: Predict,
            extra: dict[str, float]) -> None:
        """Measure one variant; `model` gives the parameter counts (the fp32 one for int8)."""
        nonlocal baseline
        result = measure(predict, test_set, meter, batch_size=cfg.batch_size,
                         min_seconds=cfg.min_seconds)
        baseline = baseline or result
        size, gz = _file_sizes(artifact)
        variants.append(VariantReport(
            name=name,
            artifact=artifact.name,
            size_bytes=size,
            gzip_bytes=gz,
            params=count_params(model),
            nonzero_params=nonzero_params(model),
            accuracy=result.accuracy,
            accuracy_delta=result.accuracy - baseline.accuracy,
            loss=result.loss,
            loss_delta=result.loss - baseline.loss,
            latency_ms_per_batch=result.latency_ms_per_batch,
            energy_j_per_1000=result.energy_j_per_1000,
            energy_estimated=result.energy_estimated,
            extra=extra,
        ))
        log(f"compress: {name}: accuracy {result.accuracy:.4f}, {size} bytes")

    path = out / "fp32.pt"
    torch.save(original.state_dict(), path)
    add("fp32", path, original, original, {})

    quantized = quantize_int8(original)
    path = out / "int8_dynamic.pt"
    torch.save(quantized.state_dict(), path)
    ratio = linear_weight_bytes(original) / linear_weight_bytes(quantized)
    # Packed int8 weights are not nn.Parameters: count the original's (same shapes).
    add("int8-dynamic", path, original, quantized, {"linear_weight_ratio": ratio})

    pruned = prune_magnitude(original, cfg.sparsity)
    path = out / "pruned.pt"
    torch.save(pruned.state_dict(), path)
    add("pruned", path, pruned, pruned,
        {"requested_sparsity": cfg.sparsity, "sparsity": linear_sparsity(pruned)})

    student = distil_student(
        original, train_set,
        DistilConfig(hidden=cfg.student_hidden, epochs=cfg.distil_epochs, seed=cfg.seed),
    )
    path = out / "distilled.pt"
    torch.save(student.state_dict(), path)
    add("distilled", path, student, student,
        {"student_hidden": cfg.student_hidden,
         "param_ratio": count_params(student) / count_params(original)})

    path = export_onnx(original, test_set.tensors[0][:2], out / "fp32.onnx")
    session = onnx_session(path, cfg.threads)
    diff = max_abs_diff(original, session, test_set.tensors[0])
    if diff > cfg.onnx_tolerance:
        raise OnnxMismatch(f"onnxruntime differs from PyTorch by {diff:.3g} > {cfg.onnx_tolerance}")
    add("onnx", path, original, lambda x: onnx_predict(session, x), {"max_abs_diff": diff})

    report = CompressionReport(
        source=source or str(checkpoint),
        checkpoint=str(checkpoint),
        held_out=f"digits test split, seed {cfg.seed} ({len(test_set)} images)",
        batch_size=cfg.batch_size,
        threads=cfg.threads,
        energy_method=str(meter.method),
        energy_note=meter.note,
        variants=variants,
    )
    report.write_json(out / "report.json")
    return report
