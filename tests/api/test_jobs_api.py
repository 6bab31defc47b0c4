"""The jobs routes over a real app and a real database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

SPEC = {"name": "mnist", "entrypoint": "examples.mlp:train", "workers": 2,
        "resources": {"cpus": 1, "memory_bytes": "1GiB"}, "project": "vision", "owner": "ada"}


@pytest.fixture
def client(app: FastAPI, admin_headers: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(app, headers=admin_headers) as c:
        for project in ("vision", "a", "b"):
            assert c.post("/api/v1/admin/projects", json={"name": project}).status_code == 201
        yield c


def test_submit_get_and_events(client: TestClient) -> None:
    created = client.post("/api/v1/jobs", json=SPEC)
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["state"] == "QUEUED" and job["memory_bytes_per_worker"] == 2**30
    assert job["workers_min"] == job["workers_max"] == 2
    fetched = client.get(f"/api/v1/jobs/{job['id']}").json()
    assert fetched == job
    events = client.get(f"/api/v1/jobs/{job['id']}/events").json()
    assert [(e["from_state"], e["to_state"]) for e in events] == [(None, "QUEUED")]


def test_list_filters_and_cursor_pagination(client: TestClient) -> None:
    ids = [client.post("/api/v1/jobs", json={**SPEC, "project": p}).json()["id"]
           for p in ["a", "b", "a", "a", "b"]]
    client.post(f"/api/v1/jobs/{ids[0]}/cancel")
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, "project": "a", **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/jobs", params=params).json()
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [ids[3], ids[2], ids[0]]
    queued = client.get("/api/v1/jobs", params={"state": "QUEUED", "project": "a"}).json()
    assert [j["id"] for j in queued["items"]] == [ids[3], ids[2]]
    by_owner = client.get("/api/v1/jobs", params={"owner": "nobody"}).json()
    assert by_owner["items"] == []


def test_cancel_then_cancel_again_is_409(client: TestClient) -> None:
    job_id = client.post("/api/v1/jobs", json=SPEC).json()["id"]
    first = client.post(f"/api/v1/jobs/{job_id}/cancel", json={"reason": "typo"})
    assert first.status_code == 200 and first.json()["state"] == "CANCELLED"
    assert first.json()["exit_reason"] == "typo"
    again = client.post(f"/api/v1/jobs/{job_id}/cancel")
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    body = again.json()
    assert body["code"] == "invalid-transition" and body["current"] == "CANCELLED"


def test_unknown_job_is_404_problem(client: TestClient) -> None:
    for path in ["/api/v1/jobs/job_nope", "/api/v1/jobs/job_nope/events",
                 "/api/v1/jobs/job_nope/logs", "/api/v1/jobs/job_nope/metrics"]:
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json()["code"] == "not-found"
    assert client.post("/api/v1/jobs/job_nope/cancel").status_code == 404


def test_logs_tail_after_and_follow(client: TestClient) -> None:
    job_id = client.post("/api/v1/jobs", json=SPEC).json()["id"]
    lines = [{"line": f"epoch {i}"} for i in range(5)]
    assert client.post(f"/api/v1/jobs/{job_id}/logs", json={"lines": lines}).status_code == 201
    tail = client.get(f"/api/v1/jobs/{job_id}/logs", params={"tail": 2}).json()
    assert [x["line"] for x in tail] == ["epoch 3", "epoch 4"]
    after = client.get(f"/api/v1/jobs/{job_id}/logs", params={"after": tail[0]["id"]}).json()
    assert [x["line"] for x in after] == ["epoch 4"]
    client.post(f"/api/v1/jobs/{job_id}/cancel")
    with client.stream("GET", f"/api/v1/jobs/{job_id}/logs", params={"follow": "true"}) as r:
        streamed = [line for line in r.iter_lines() if line]
    assert len(streamed) == 6 and streamed[-1] == '{"end": true}'


def test_metrics_are_stored_and_summarised(client: TestClient) -> None:
    job_id = client.post("/api/v1/jobs", json=SPEC).json()["id"]
    for step, loss in [(1, 2.0), (2, 1.5)]:
        r = client.post(f"/api/v1/jobs/{job_id}/metrics",
                        json={"step": step, "values": {"loss": loss}})
        assert r.status_code == 201, r.text
    assert [m["values"]["loss"] for m in client.get(f"/api/v1/jobs/{job_id}/metrics").json()] == [
        2.0, 1.5]
    assert client.get(f"/api/v1/jobs/{job_id}").json()["metrics"] == {"loss": 1.5, "step": 2}


def test_health_ready_and_openapi(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    paths = client.get("/openapi.json").json()["paths"]
    assert "/api/v1/jobs" in paths and "/api/v1/pool/summary" in paths
    assert client.get("/docs").status_code == 200
