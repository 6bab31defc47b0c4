"""Where a run keeps its checkpoints (the job's `checkpoint_uri`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from commonpool.workers.runner.ray_jobs import train_run_location


@pytest.mark.parametrize(
    ("storage", "expected"),
    [(Path("/srv/cp/checkpoints"), "/srv/cp/checkpoints/job_1"),
     ("s3://bucket/pool/", "s3://bucket/pool/job_1"),
     ("gs://bucket", "gs://bucket/job_1")],
)
def test_ray_train_keeps_a_jobs_runs_in_a_folder_named_after_it(
    storage: Path | str, expected: str
) -> None:
    assert train_run_location(storage, "job_1") == expected
