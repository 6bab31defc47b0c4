"""Where jobs checkpoint: a shared folder, or an object store URI handed to Ray Train as is."""

from __future__ import annotations

from pathlib import Path

import pytest

from commonpool.workers.compress.job import resolve_checkpoint
from commonpool.workers.runner.ray_jobs import default_storage, is_uri


def test_without_configuration_checkpoints_go_under_the_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COMMONPOOL_CHECKPOINT_STORAGE", raising=False)
    assert default_storage(tmp_path) == tmp_path / "checkpoints"


def test_a_shared_folder_is_a_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMMONPOOL_CHECKPOINT_STORAGE", "/srv/commonpool/checkpoints")
    storage = default_storage(tmp_path)
    assert storage == Path("/srv/commonpool/checkpoints") and not is_uri(storage)


@pytest.mark.parametrize("uri", ["s3://pool-ckpt/prod", "gs://bucket/a/b", "file:///tmp/x"])
def test_an_object_store_uri_is_kept_verbatim(
    uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Path would fold "s3://b" into "s3:/b", which Ray Train can no longer read.
    monkeypatch.setenv("COMMONPOOL_CHECKPOINT_STORAGE", uri)
    storage = default_storage(tmp_path)
    assert storage == uri and is_uri(storage)


def test_compress_refuses_an_object_store_with_a_way_out() -> None:
    with pytest.raises(ValueError, match="give `checkpoint`"):
        resolve_checkpoint({"source_job": "job_1", "storage": "s3://pool-ckpt/prod"})
