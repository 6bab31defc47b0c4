"""A model artifact served by Ray Serve on the pool's nodes, reached through the API."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from commonpool.api.client.sdk import Client
from commonpool.api.local_pool import LocalPool
from commonpool.scheduler.spec import JobSpec
from commonpool.workers.examples.digits_mlp import quick_model

pytestmark = [pytest.mark.ray, pytest.mark.slow]

BUILDER = "commonpool.workers.examples.digits_mlp:build_model"
REQUESTS = 1000
IDLE_S = 5


def _wait_running(client: Client, job_id: str, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while (job := client.get_job(job_id)).state != "RUNNING":
        assert job.state in {"QUEUED", "PLACED", "STARTING"}, (job.state, job.exit_reason)
        assert time.monotonic() < deadline, "the service never started"
        time.sleep(0.5)


def test_serve_two_replicas_answer_1000_requests_like_the_model_then_stop(
    pool: LocalPool, client: Client, tmp_path: Path
) -> None:
    model = quick_model()
    (tmp_path / "ckpt").mkdir()
    torch.save({"model": model.state_dict()}, tmp_path / "ckpt" / "model.pt")
    artifact = client.upload_artifact(tmp_path / "ckpt", "digits-served", kind="model")
    job = client.submit_job(JobSpec.model_validate({
        "name": "digits-api", "kind": "service", "workers": 2, "resources": {"cpus": 1},
        "service": {"model": artifact.ref, "builder": BUILDER, "idle_timeout_s": IDLE_S},
    }))  # fmt: skip
    try:
        _wait_running(client, job.id)
        assert {a.node_id for a in client.job_allocations(job.id)} == set(pool.node_ids)
        digits = load_digits()
        rows = (digits.data[:REQUESTS] / 16.0).astype(np.float32)
        with torch.inference_mode():
            expected = model(torch.from_numpy(rows)).numpy()
        token = client.authorization or ""
        url = f"{pool.url}/api/v1/services/{job.id}/predict"

        def ask(i: int) -> dict:
            with httpx.Client(headers={"Authorization": token}, timeout=60) as http:
                response = http.post(url, json={"inputs": [rows[i].tolist()]})
            assert response.status_code == 200, response.text
            return response.json()

        with ThreadPoolExecutor(8) as threads:
            answers = list(threads.map(ask, range(REQUESTS)))
        outputs = np.array([a["outputs"][0] for a in answers])
        np.testing.assert_allclose(outputs, expected, rtol=1e-4, atol=1e-5)
        assert [a["predictions"][0] for a in answers] == expected.argmax(axis=1).tolist()
        assert {a["model"] for a in answers} == {artifact.ref}

        bad = httpx.post(url, json={"inputs": [[1.0, 2.0], [3.0]]},
                         headers={"Authorization": token})
        assert bad.status_code == 422
        service = client.get_service(job.id)
        assert service.requests == REQUESTS and service.latency_p99_ms is not None
        assert service.serve_status == "RUNNING"

        # Idle: the replicas scale to zero; the next request brings one back.
        deadline = time.monotonic() + 120
        while client.get_service(job.id).replicas_running != 0:
            assert time.monotonic() < deadline, "the service never scaled to zero"
            time.sleep(2)
        assert ask(0)["predictions"][0] == expected[0].argmax()
        assert client.get_service(job.id).replicas_running >= 1
    finally:
        client.cancel_job(job.id, "test done")
    assert client.get_job(job.id).state == "CANCELLED"
    assert client.pool_summary().free.cpus == 2.0
    assert all(a.released_at is not None for a in client.job_allocations(job.id))
    stopped = httpx.post(url, json={"inputs": [rows[0].tolist()]},
                         headers={"Authorization": token})
    assert stopped.status_code == 409
    # The Serve application itself is deleted: its route no longer exists on Serve's proxy.
    direct = f"{pool.settings.ray_serve_url}/{job.id}"
    deadline = time.monotonic() + 60
    while httpx.post(direct, json={"inputs": [rows[0].tolist()]}).status_code != 404:
        assert time.monotonic() < deadline, "the Serve application outlived its service"
        time.sleep(1)


def test_a_killed_service_driver_fails_the_job_and_its_application_is_deleted(
    pool: LocalPool, client: Client, tmp_path: Path
) -> None:
    """SIGKILL leaves the driver no chance to delete its Serve application: the scheduler
    does it once it has recorded the job's end, so no replica serves for a dead job."""
    from ray.job_submission import JobSubmissionClient

    (tmp_path / "ckpt").mkdir()
    torch.save({"model": quick_model().state_dict()}, tmp_path / "ckpt" / "model.pt")
    artifact = client.upload_artifact(tmp_path / "ckpt", "digits-orphan", kind="model")
    job = client.submit_job(JobSpec.model_validate({
        "name": "digits-orphan", "kind": "service", "workers": 1, "resources": {"cpus": 1},
        "service": {"model": artifact.ref, "builder": BUILDER},
    }))  # fmt: skip
    _wait_running(client, job.id)
    direct = f"{pool.settings.ray_serve_url}/{job.id}"
    row = {"inputs": [[0.0] * 64]}
    assert httpx.post(direct, json=row, timeout=60).status_code == 200
    ray_jobs = JobSubmissionClient(
        pool.settings.ray_dashboard_url,
        headers={"Authorization": f"Bearer {pool.settings.ray_auth_token}"},
    )
    driver = ray_jobs.get_job_info(f"{job.id}-a1").driver_info
    assert driver is not None
    os.kill(int(driver.pid), signal.SIGKILL)
    deadline = time.monotonic() + 120
    while (state := client.get_job(job.id).state) == "RUNNING":
        assert time.monotonic() < deadline, "the killed driver's job never ended"
        time.sleep(1)
    assert state == "FAILED"
    while httpx.post(direct, json=row, timeout=60).status_code != 404:
        assert time.monotonic() < deadline, "the Serve application outlived its killed driver"
        time.sleep(1)
    assert all(a.released_at is not None for a in client.job_allocations(job.id))
