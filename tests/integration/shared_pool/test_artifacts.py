"""Artifacts through real jobs on real Ray: a dataset staged on two nodes, a model published
by one job and fine-tuned by the next from its weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from commonpool.api.client.sdk import Client
from commonpool.api.local_pool import LocalPool
from commonpool.scheduler.spec import JobSpec
from commonpool.workers.examples.digits_mlp import DATA_FILE

pytestmark = [pytest.mark.ray, pytest.mark.slow]

DIGITS = "commonpool.workers.examples.digits_mlp:train"


def _losses(client: Client, job_id: str) -> list[float]:
    return [m.values["loss"] for m in client.job_metrics(job_id)]


def test_publish_then_fine_tune_from_it_with_a_dataset_fetched_once_per_node(
    pool: LocalPool, client: Client, tmp_path: Path
) -> None:
    data = tmp_path / "digits-data"
    data.mkdir()
    digits = load_digits()
    np.savez(data / DATA_FILE, x=digits.data, y=digits.target)
    dataset = client.upload_artifact(data, "digits-data", kind="dataset", format="npz")

    trained = client.wait(client.submit_job(JobSpec(
        name="digits-base", entrypoint=DIGITS, workers=2, resources={"cpus": 1},
        args={"epochs": 4, "dataset": "digits-data"}, datasets=[dataset.ref],
        publish="digits-mlp",
    )).id, timeout_s=300)
    assert trained.state == "SUCCEEDED", trained.exit_reason
    nodes = {a.node_id for a in client.job_allocations(trained.id)}
    assert nodes == set(pool.node_ids)
    assert client.get_artifact(dataset.ref).downloads == 2  # one per node, not per worker
    model = client.get_artifact("digits-mlp")
    assert (model.ref, model.kind, model.produced_by_job) == ("digits-mlp@1", "model", trained.id)
    logs = "\n".join(line.line for line in client.logs(trained.id))
    assert "published model digits-mlp@1" in logs

    tuned = client.wait(client.submit_job(JobSpec(
        name="digits-tuned", entrypoint=DIGITS, workers=2, resources={"cpus": 1},
        args={"epochs": 1, "dataset": "digits-data", "seed": 1}, datasets=[dataset.ref],
        init_from=model.ref,
    )).id, timeout_s=300)
    assert tuned.state == "SUCCEEDED", tuned.exit_reason
    base, fine = _losses(client, trained.id), _losses(client, tuned.id)
    # It starts from the published weights: its first epoch is as good as the base's last,
    # far below where training from scratch starts.
    assert fine[0] < base[0] * 0.5 and fine[0] < base[-1] * 1.5, (base, fine)
    assert client.get_artifact(dataset.ref).downloads == 2  # cached on both nodes
    assert client.get_artifact(model.ref).downloads == 2

    card = client.get_artifact(model.ref).card
    assert card["lineage"]["datasets"] == [dataset.ref]
    assert card["training"]["job"] == trained.id
    assert sorted(card["training"]["nodes"]) == sorted(nodes)
    assert card["training"]["energy"]["method"]
    assert card["reuse"]["jobs_started_from_it"] == 1
