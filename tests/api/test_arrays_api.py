"""Job arrays over the real app and database: /arrays, /jobs?array=, and the SDK over HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from commonpool.api.client.sdk import Client
from commonpool.api.schemas import ProjectCreate
from commonpool.scheduler.domain.errors import Invalid, NotFound
from commonpool.scheduler.spec import JobSpec
from commonpool.scheduler.store.models import Job, JobEvent
from commonpool.scheduler.store.uow import Database
from tests.builders import member_headers

ARRAY = {"name": "sim", "kind": "command", "command": ["./run.sh"], "project": "vision",
         "array": "0-4%2"}


@pytest.fixture
def client(app: FastAPI, admin_headers: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(app, headers=admin_headers) as c:
        for project in ("vision", "other"):
            assert c.post("/api/v1/admin/projects", json={"name": project}).status_code == 201
        yield c


def rows(db: Database) -> tuple[int, int]:
    with db.unit_of_work(write=False) as session:
        return tuple(  # type: ignore[return-value]
            session.scalar(select(func.count()).select_from(m)) or 0 for m in (Job, JobEvent)
        )


def test_submit_read_list_and_cancel_an_array(client: TestClient) -> None:
    created = client.post("/api/v1/arrays", json=ARRAY)
    assert created.status_code == 201, created.text
    array = created.json()
    assert array == {"id": array["id"], "name": "sim", "project": "vision", "owner": "admin",
                     "tasks": 5, "limit": 2, "by_state": {"QUEUED": 5}}
    assert client.get(f"/api/v1/arrays/{array['id']}").json() == array
    client.post("/api/v1/jobs", json={**ARRAY, "array": None, "name": "alone"})
    tasks = client.get("/api/v1/jobs", params={"array": array["id"]}).json()["items"]
    assert [t["array_index"] for t in tasks] == [4, 3, 2, 1, 0]  # newest first: ids follow index
    assert {(t["array_id"], t["array_limit"], t["name"]) for t in tasks} == {
        (array["id"], 2, "sim")
    }
    one = tasks[0]["id"]
    assert client.post(f"/api/v1/jobs/{one}/cancel").status_code == 200  # a task is a job
    cancelled = client.post(f"/api/v1/arrays/{array['id']}/cancel", json={"reason": "typo"})
    assert cancelled.status_code == 200
    assert cancelled.json()["by_state"] == {"CANCELLED": 5}
    reasons = {t["exit_reason"] for t in client.get(
        "/api/v1/jobs", params={"array": array["id"]}).json()["items"]}
    assert reasons == {"typo", "cancelled by user"}
    again = client.post(f"/api/v1/arrays/{array['id']}/cancel")
    assert again.status_code == 200 and again.json()["by_state"] == {"CANCELLED": 5}


def test_jobs_route_refuses_an_array_and_arrays_route_a_single_job(
    client: TestClient, db: Database
) -> None:
    before = rows(db)
    refused = client.post("/api/v1/jobs", json=ARRAY)
    assert refused.status_code == 422
    body = refused.json()
    assert body["code"] == "invalid" and "POST /api/v1/arrays" in body["detail"]
    sweep = client.post("/api/v1/jobs", json={**ARRAY, "array": None, "sweep": {"x": [1, 2]}})
    assert sweep.status_code == 422 and sweep.json()["field"] == "sweep"
    single = client.post("/api/v1/arrays", json={**ARRAY, "array": None})
    assert single.status_code == 422 and "POST /api/v1/jobs" in single.json()["detail"]
    assert rows(db) == before


def test_unknown_or_invisible_dependencies_are_404(client: TestClient) -> None:
    secret = client.post("/api/v1/jobs", json={**ARRAY, "array": None, "project": "other"})
    secret_id = secret.json()["id"]
    member = member_headers(client, "ada", "vision")
    for name in ("job_nope", "arr_nope", secret_id):
        refused = client.post("/api/v1/arrays", headers=member,
                              json={**ARRAY, "after": [{"job": name}]})
        assert refused.status_code == 404, refused.text
        assert refused.json()["code"] == "not-found" and name in refused.json()["detail"]
    mine = client.post("/api/v1/arrays", headers=member, json=ARRAY).json()["id"]
    waits = client.post("/api/v1/jobs", headers=member,
                        json={**ARRAY, "array": None, "after": [{"job": mine, "type": "any"}]})
    assert waits.status_code == 201
    # the array of another project is hidden from ada like its jobs
    other = client.post("/api/v1/arrays", json={**ARRAY, "project": "other"}).json()["id"]
    assert client.get(f"/api/v1/arrays/{other}", headers=member).status_code == 404
    assert client.post(f"/api/v1/arrays/{other}/cancel", headers=member).status_code == 404


def test_five_thousand_tasks_in_one_request_all_or_nothing(
    client: TestClient, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    assert client.put("/api/v1/admin/projects/vision/quota",
                      json={"max_queued_jobs": 5000}).status_code == 200
    blocker = client.post("/api/v1/jobs", json={**ARRAY, "array": None}).json()["id"]
    big = {**ARRAY, "array": "0-4999%100"}
    before = rows(db)
    full = client.post("/api/v1/arrays", json=big)
    assert full.status_code == 429 and full.json()["code"] == "queue-quota-exceeded"
    assert rows(db) == before  # one transaction: not one task of 5,000 was written
    client.post(f"/api/v1/jobs/{blocker}/cancel")
    started = time.perf_counter()
    created = client.post("/api/v1/arrays", json=big)
    seconds = time.perf_counter() - started
    with capsys.disabled():
        print(f"\nPOST /arrays with 5,000 tasks on {db.engine.dialect.name}: {seconds:.3f} s")
    assert created.status_code == 201, created.text
    assert created.json()["tasks"] == 5000 and created.json()["limit"] == 100
    assert rows(db) == (before[0] + 5000, before[1] + 5001)  # + the blocker's cancel event


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sdk_submits_reads_lists_and_cancels_arrays_over_http(
    live_server, admin_token: str  # type: ignore[no-untyped-def]
) -> None:
    with Client(live_server.url, token=admin_token) as client:
        client.create_project(ProjectCreate(name="vision"))
        spec = JobSpec.model_validate({**ARRAY, "array": None, "sweep": {"lr": [0.1, 0.2, 0.3]}})
        array = client.submit_array(spec)
        assert (array.tasks, array.limit, array.by_state) == (3, None, {"QUEUED": 3})
        assert client.get_array(array.id) == array
        tasks = list(client.list_jobs(array=array.id))
        assert sorted(t.args["lr"] for t in tasks) == [0.1, 0.2, 0.3]
        assert client.cancel_array(array.id, "done").by_state == {"CANCELLED": 3}
        with pytest.raises(NotFound):
            client.get_array("arr_nope")
        with pytest.raises(Invalid):
            client.submit_job(spec)
