"""Keras, Hugging Face Transformers and compression jobs run to SUCCEEDED on the real pool."""

from __future__ import annotations

import json

import pytest

from commonpool.api.client.sdk import Client
from commonpool.api.local_pool import LocalPool
from commonpool.scheduler.spec import JobSpec
from commonpool.workers.runner.ray_jobs import default_storage

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _run(client: Client, spec: JobSpec, timeout_s: float = 300):
    final = client.wait(client.submit_job(spec).id, timeout_s=timeout_s)
    assert final.state == "SUCCEEDED", final.exit_reason
    return final


def _on_both_nodes(client: Client, pool: LocalPool, job_id: str) -> None:
    assert sorted(a.node_id for a in client.job_allocations(job_id)) == sorted(pool.node_ids)
    logs = "\n".join(line.line for line in client.logs(job_id))
    for rank in (0, 1):
        assert f"rank {rank}/2 on node" in logs


def test_keras_job_trains_data_parallel_on_two_workers(pool: LocalPool, client: Client) -> None:
    spec = JobSpec(name="keras-digits",
                   entrypoint="commonpool.workers.examples.keras_digits:train",
                   workers=2, resources={"cpus": 1}, args={"epochs": 6},
                   env={"KERAS_BACKEND": "torch"})
    final = _run(client, spec)
    _on_both_nodes(client, pool, final.id)
    losses = [m.values["loss"] for m in client.job_metrics(final.id)]
    assert len(losses) == 6 and losses[-1] < losses[0] * 0.5
    assert final.metrics["accuracy"] > 0.8


def test_transformers_job_fine_tunes_offline_on_two_workers(
    pool: LocalPool, client: Client
) -> None:
    spec = JobSpec(name="hf-text",
                   entrypoint="commonpool.workers.examples.hf_text_classification:train",
                   workers=2, resources={"cpus": 1}, args={"epochs": 5},
                   env={"HF_HUB_OFFLINE": "1"})
    final = _run(client, spec)
    _on_both_nodes(client, pool, final.id)
    assert final.metrics["accuracy"] > 0.85


def test_tensorflow_job_trains_with_multiworker_mirrored_strategy(
    pool: LocalPool, client: Client
) -> None:
    pytest.importorskip("tensorflow", reason="the tensorflow extra is not installed")
    spec = JobSpec(name="tf-digits", entrypoint="commonpool.workers.examples.tf_digits:train",
                   framework="tensorflow", workers=2, resources={"cpus": 1},
                   args={"epochs": 6})
    final = _run(client, spec, timeout_s=600)
    _on_both_nodes(client, pool, final.id)
    losses = [m.values["loss"] for m in client.job_metrics(final.id)]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert final.metrics["accuracy"] > 0.8


def test_compression_job_on_a_digits_mlp_checkpoint(pool: LocalPool, client: Client) -> None:
    trained = _run(client, JobSpec(name="digits", workers=2, resources={"cpus": 1},
                                   entrypoint="commonpool.workers.examples.digits_mlp:train",
                                   args={"epochs": 8}))
    spec = JobSpec(name="compress", entrypoint="commonpool.workers.compress.job:run", workers=1,
                   args={"source_job": trained.id, "sparsity": 0.5, "min_seconds": 0.3})
    final = _run(client, spec)
    m = final.metrics
    assert m["fp32_accuracy"] > 0.8
    assert m["int8_dynamic_size_bytes"] * 2 <= m["fp32_size_bytes"]
    assert m["pruned_sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert m["onnx_max_abs_diff"] <= 1e-4
    assert m["distilled_param_ratio"] < 1 and m["distilled_accuracy"] > m["fp32_accuracy"] - 0.05
    logs = "\n".join(line.line for line in client.logs(final.id))
    assert "int8-dynamic" in logs and "onnx" in logs  # the table is in the job's log
    reports = list((default_storage(pool.state_dir) / final.id).glob("checkpoint_*/report.json"))
    assert len(reports) == 1  # the artifacts are the compression job's checkpoint
    assert json.loads(reports[0].read_text())["source"] == trained.id
