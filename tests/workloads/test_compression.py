"""The compression pipeline has the effects it claims, on a real digits-mlp checkpoint (no Ray)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from commonpool.workers.compress.checkpoint import (
    CheckpointNotFound,
    find_latest_checkpoint,
    load_digits_mlp,
)
from commonpool.workers.compress.distil import DistilConfig, distil_student
from commonpool.workers.compress.export import export_onnx, max_abs_diff, onnx_session
from commonpool.workers.compress.measure import evaluate
from commonpool.workers.compress.pipeline import PipelineConfig, run_pipeline
from commonpool.workers.compress.prune import count_params, linear_sparsity, prune_magnitude
from commonpool.workers.compress.quantize import linear_weight_bytes, quantize_int8
from commonpool.workers.examples import ddp, digits_mlp

DISTIL_ACCURACY_BOUND = 0.05
"""The distilled student (hidden 32, 7.5x fewer parameters) may lose at most 5 points."""


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Small models on a shared 2-core box: one intra-op thread is several times faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint storage as a pool job leaves it: two checkpoints of job_test, 12 epochs."""
    root = tmp_path_factory.mktemp("storage")
    torch.manual_seed(0)
    train_set, test_set = digits_mlp.datasets(0)
    model = digits_mlp.build_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    early = root / "job_test" / "checkpoint_2026-01-01_00-00-00.000001"
    early.mkdir(parents=True)
    ddp.save_checkpoint(early, model, optimizer, 0)  # untrained: must not be picked
    ddp.fit(model, train_set, test_set, {**digits_mlp.DEFAULTS, "epochs": 12})
    latest = root / "job_test" / "checkpoint_2026-01-01_00-00-09.000001"
    latest.mkdir()
    ddp.save_checkpoint(latest, model, optimizer, 12)
    return root


@pytest.fixture(scope="module")
def teacher(storage: Path) -> torch.nn.Module:
    return load_digits_mlp(find_latest_checkpoint(storage, "job_test"))


@pytest.fixture(scope="module")
def test_set() -> torch.utils.data.TensorDataset:
    return digits_mlp.datasets(0)[1]


def test_latest_checkpoint_is_found_and_missing_job_says_where(storage: Path) -> None:
    path = find_latest_checkpoint(storage, "job_test")
    assert path.parent.name == "checkpoint_2026-01-01_00-00-09.000001"
    assert torch.load(path, weights_only=True)["epoch"] == 12
    with pytest.raises(CheckpointNotFound, match="job_missing"):
        find_latest_checkpoint(storage, "job_missing")


def test_int8_linear_layers_are_at_least_twice_smaller(teacher, test_set, tmp_path) -> None:
    quantized = quantize_int8(teacher)
    assert linear_weight_bytes(teacher) / linear_weight_bytes(quantized) >= 2
    torch.save(teacher.state_dict(), tmp_path / "fp32.pt")
    torch.save(quantized.state_dict(), tmp_path / "int8.pt")
    assert (tmp_path / "fp32.pt").stat().st_size >= 2 * (tmp_path / "int8.pt").stat().st_size
    assert evaluate(quantized, test_set)[0] >= evaluate(teacher, test_set)[0] - 0.02


@pytest.mark.parametrize("sparsity", [0.5, 0.8])
def test_pruned_model_reaches_requested_sparsity(teacher, sparsity: float) -> None:
    pruned = prune_magnitude(teacher, sparsity)
    assert linear_sparsity(pruned) == pytest.approx(sparsity, abs=1e-3)
    assert linear_sparsity(teacher) < 0.01  # the original is untouched
    assert not any(name.endswith("_orig") for name in pruned.state_dict())  # masks made permanent


def test_onnx_outputs_match_pytorch(teacher, test_set, tmp_path) -> None:
    path = export_onnx(teacher, test_set.tensors[0][:2], tmp_path / "model.onnx")
    session = onnx_session(path)
    assert max_abs_diff(teacher, session, test_set.tensors[0]) <= 1e-4  # batch 360 != export's 2


def test_distilled_student_is_smaller_and_close_to_teacher(teacher, test_set) -> None:
    train_set = digits_mlp.datasets(0)[0]
    student = distil_student(teacher, train_set, DistilConfig(hidden=32, epochs=30))
    assert count_params(student) < count_params(teacher) / 5
    teacher_acc, student_acc = evaluate(teacher, test_set)[0], evaluate(student, test_set)[0]
    assert student_acc >= teacher_acc - DISTIL_ACCURACY_BOUND


def test_pipeline_report_lays_every_variant_beside_the_original(storage, tmp_path) -> None:
    cfg = PipelineConfig(sparsity=0.6, distil_epochs=30, min_seconds=0.1)
    report = run_pipeline(find_latest_checkpoint(storage, "job_test"), tmp_path, cfg,
                          source="job_test", log=lambda _: None)
    by_name = {v.name: v for v in report.variants}
    assert list(by_name) == ["fp32", "int8-dynamic", "pruned", "distilled", "onnx"]
    original = by_name["fp32"]
    assert original.accuracy > 0.9 and original.accuracy_delta == 0
    assert by_name["int8-dynamic"].size_bytes * 2 <= original.size_bytes
    assert by_name["pruned"].extra["sparsity"] == pytest.approx(0.6, abs=1e-3)
    assert by_name["pruned"].gzip_bytes < original.gzip_bytes  # zeros compress
    assert by_name["distilled"].params < original.params
    assert by_name["onnx"].extra["max_abs_diff"] <= 1e-4
    for v in report.variants:
        assert v.energy_j_per_1000 > 0 and v.latency_ms_per_batch > 0
        assert (tmp_path / v.artifact).stat().st_size == v.size_bytes
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["source"] == "job_test" and len(saved["variants"]) == 5
    assert report.metrics()["int8_dynamic_accuracy"] == by_name["int8-dynamic"].accuracy


def test_compress_command_runs_the_pipeline_here(storage, tmp_path) -> None:
    import typer
    from typer.testing import CliRunner

    from commonpool.api.cli.compress import compress

    app = typer.Typer()
    app.command()(compress)
    app.command("version")(lambda: None)  # two commands: `compress` stays a sub-command
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["compress", "job_test", "--storage", str(storage),
                                      "--out", str(out), "--sparsity", "0.7", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["source"] == "job_test"
    pruned = next(v for v in report["variants"] if v["name"] == "pruned")
    assert pruned["extra"]["sparsity"] == pytest.approx(0.7, abs=1e-3)
    assert (out / "report.json").exists() and (out / "fp32.onnx").exists()
