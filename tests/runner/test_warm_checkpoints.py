"""A warm-started job's checkpoints (no Ray Train): rank 0's `job.report` keeps each one
in the job's checkpoint folder, and a later attempt resumes from the newest."""

from __future__ import annotations

from pathlib import Path

import pytest

from commonpool.workers import job


@pytest.fixture
def kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "checkpoints" / "job_1" / "warm"
    monkeypatch.setenv(job.ENV_CHECKPOINT_DIR, str(folder))
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv(job.ENV_SERVER, raising=False)  # no API to report to
    return folder


def _checkpoint(tmp_path: Path, step: int) -> Path:
    source = tmp_path / f"step-{step}"
    source.mkdir()
    (source / "model.pt").write_text(f"weights of step {step}")
    return source


def test_each_reported_checkpoint_is_kept_and_the_newest_resumes(
    kept: Path, tmp_path: Path
) -> None:
    assert job.latest_checkpoint_dir() is None  # a first attempt starts from scratch
    assert not job.under_ray_train()
    for step in (1, 2, 999_999, 1_000_000):
        job.report({"loss": 1.0 / step}, step=step, checkpoint_dir=_checkpoint(tmp_path, step))
    assert {p.name for p in kept.iterdir()} == {
        "checkpoint_000001",
        "checkpoint_000002",
        "checkpoint_999999",
        "checkpoint_1000000",
    }
    latest = job.latest_checkpoint_dir()  # by step: by name, 1000000 sorts before 999999
    assert latest is not None and Path(latest).name == "checkpoint_1000000"
    assert (Path(latest) / "model.pt").read_text() == "weights of step 1000000"


def test_a_copy_cut_short_is_never_resumed_from(kept: Path, tmp_path: Path) -> None:
    job.report({"loss": 1.0}, step=1, checkpoint_dir=_checkpoint(tmp_path, 1))
    (kept / ".partial-checkpoint_000002-999").mkdir()  # a rank killed mid-copy
    latest = job.latest_checkpoint_dir()
    assert latest is not None and Path(latest).name == "checkpoint_000001"


def test_a_report_without_a_checkpoint_keeps_nothing(kept: Path) -> None:
    job.report({"loss": 1.0}, step=1)
    assert not kept.exists()


def test_a_warm_rank_knows_its_node_from_the_runner(
    kept: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(job.ENV_NODE_ID, "node_a")
    monkeypatch.setenv("WORLD_SIZE", "2")
    ctx = job.context()
    assert (ctx.rank, ctx.world_size, ctx.node_label) == (0, 2, "node_a")


def test_only_rank_0_keeps_a_checkpoint(
    kept: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RANK", "1")
    job.report({"loss": 1.0}, step=1, checkpoint_dir=_checkpoint(tmp_path, 1))
    assert not kept.exists()
