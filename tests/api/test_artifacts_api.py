"""Artifacts over the real app: publish, versions, visibility, checksums, quotas, jobs' inputs."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from commonpool.scheduler.domain.states import JobState
from commonpool.scheduler.services.accounts import mint_job_token
from commonpool.scheduler.store.models import Artifact, Job, JobInput
from commonpool.scheduler.store.transitions import transition_job
from commonpool.scheduler.store.uow import Database
from tests.builders import member_headers

ARTIFACTS = "/api/v1/artifacts"
DATA = b"not really a tar, but bytes are bytes " * 1000


@pytest.fixture
def client(app: FastAPI, admin_headers: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(app, headers=admin_headers) as c:
        yield c


@pytest.fixture
def alice(client: TestClient) -> dict[str, str]:
    return member_headers(client, "alice", "vision")


@pytest.fixture
def bob(client: TestClient) -> dict[str, str]:
    return member_headers(client, "bob", "speech")


def upload(client: TestClient, headers: dict[str, str], name: str, data: bytes = DATA,
           **params: str):  # type: ignore[no-untyped-def]
    return client.post(
        ARTIFACTS, params={"name": name, **params}, content=data,
        headers={**headers, "Content-Type": "application/octet-stream"},
    )


def count(db: Database, model: type) -> int:
    with db.unit_of_work(write=False) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_publish_versions_and_download_with_checksum_and_resume(
    client: TestClient, alice: dict[str, str]
) -> None:
    first = upload(client, alice, "digits-data", kind="dataset", format="npz")
    assert first.status_code == 201, first.text
    body = first.json()
    assert (body["ref"], body["kind"], body["project"], body["owner"]) == (
        "digits-data@1", "dataset", "vision", "alice"
    )
    assert body["sha256"] == hashlib.sha256(DATA).hexdigest()
    assert body["size_bytes"] == len(DATA) and body["visibility"] == "project"
    second = upload(client, alice, "digits-data", data=DATA + b"v2", kind="dataset")
    assert second.json()["ref"] == "digits-data@2"

    whole = client.get(f"{ARTIFACTS}/digits-data@1/content", headers=alice)
    assert whole.status_code == 200 and whole.content == DATA
    assert whole.headers["X-Content-SHA256"] == body["sha256"]
    assert whole.headers["Accept-Ranges"] == "bytes"
    rest = client.get(f"{ARTIFACTS}/digits-data@1/content",
                      headers={**alice, "Range": "bytes=1000-"})
    assert rest.status_code == 206 and rest.content == DATA[1000:]
    assert rest.headers["Content-Range"] == f"bytes 1000-{len(DATA) - 1}/{len(DATA)}"
    past = client.get(f"{ARTIFACTS}/digits-data@1/content",
                      headers={**alice, "Range": f"bytes={len(DATA)}-"})
    assert past.status_code == 416 and past.json()["code"] == "range-not-satisfiable"
    # `name` alone is the newest version; a resumed download is not a second download
    latest = client.get(f"{ARTIFACTS}/digits-data", headers=alice).json()
    assert latest["ref"] == "digits-data@2"
    detail = client.get(f"{ARTIFACTS}/digits-data@1", headers=alice).json()
    assert detail["downloads"] == 1 and detail["card"]["sha256"] == body["sha256"]


def test_visibility_private_project_public(
    client: TestClient, alice: dict[str, str], bob: dict[str, str]
) -> None:
    carol = member_headers(client, "carol", "vision")
    for name, visibility in (("mine", "private"), ("ours", "project"), ("all", "public")):
        assert upload(client, alice, name, visibility=visibility).status_code == 201

    def status(headers: dict[str, str], name: str) -> tuple[int, int]:
        return (client.get(f"{ARTIFACTS}/{name}@1", headers=headers).status_code,
                client.get(f"{ARTIFACTS}/{name}@1/content", headers=headers).status_code)

    assert status(bob, "mine") == (404, 404)
    assert status(bob, "ours") == (404, 404)
    assert status(bob, "all") == (200, 200)
    assert status(carol, "mine") == (404, 404)
    assert status(carol, "ours") == (200, 200)
    assert status(alice, "mine") == (200, 200)
    listed = {a["name"] for a in client.get(ARTIFACTS, headers=bob).json()["items"]}
    assert listed == {"all"}
    assert {a["name"] for a in client.get(ARTIFACTS, params={"q": "OUR"}).json()["items"]} == {
        "ours"
    }
    # the owner makes it public; others still may not change it
    assert client.patch(f"{ARTIFACTS}/ours@1", json={"visibility": "public"},
                        headers=carol).status_code == 403
    assert client.patch(f"{ARTIFACTS}/mine@1", json={"visibility": "public"},
                        headers=carol).status_code == 404
    made = client.patch(f"{ARTIFACTS}/mine@1", json={"visibility": "public"}, headers=alice)
    assert made.status_code == 200 and made.json()["visibility"] == "public"
    assert status(bob, "mine") == (200, 200)


def test_refusals_write_nothing(
    client: TestClient, db: Database, alice: dict[str, str], bob: dict[str, str],
    app: FastAPI,
) -> None:
    assert upload(client, alice, "m").status_code == 201
    stored = sorted(p.name for p in app.state.blobs.root.rglob("*") if p.is_file())
    damaged = client.post(ARTIFACTS, params={"name": "m"}, content=DATA,
                          headers={**alice, "X-Content-SHA256": "0" * 64})
    assert damaged.status_code == 422 and "damaged" in damaged.json()["detail"]
    taken = upload(client, bob, "m", data=b"other")
    assert taken.status_code == 409 and "belongs to project 'vision'" in taken.json()["detail"]
    wrong_kind = upload(client, alice, "m", data=b"other", kind="dataset")
    assert wrong_kind.status_code == 409
    assert client.put("/api/v1/admin/projects/vision/quota",
                      json={"max_artifact_bytes": len(DATA) + 10}).status_code == 200
    over = upload(client, alice, "m2", data=b"x" * 100)
    assert over.status_code == 403 and over.json()["code"] == "quota-exceeded"
    assert upload(client, alice, "bad name!").status_code == 422
    assert count(db, Artifact) == 1
    assert sorted(p.name for p in app.state.blobs.root.rglob("*") if p.is_file()) == stored


def test_upload_over_the_size_limit_is_413(
    settings, db: Database, admin_headers: dict[str, str]  # type: ignore[no-untyped-def]
) -> None:
    from commonpool.api.app import create_app

    small = create_app(settings.model_copy(update={"artifact_max_bytes": 1000}), db)
    with TestClient(small, headers=admin_headers) as client:
        client.post("/api/v1/admin/projects", json={"name": "default"})
        big = upload(client, {}, "big", data=b"y" * 5000, project="default")
        assert big.status_code == 413 and big.json()["code"] == "payload-too-large"
        assert count(db, Artifact) == 0


def test_jobs_name_inputs_and_job_tokens_fetch_and_publish_only_their_own(
    client: TestClient, db: Database, alice: dict[str, str], bob: dict[str, str]
) -> None:
    assert upload(client, alice, "digits-data", kind="dataset").status_code == 201
    assert upload(client, alice, "base", kind="model").status_code == 201
    assert upload(client, alice, "secret", visibility="private").status_code == 201
    job = {"name": "fine-tune", "entrypoint": "a.b:c"}
    refused = {
        "datasets": (["nope@1"], 404),
        "init_from": ("digits-data@1", 422),  # a dataset is not a model
    }
    for field, (value, status) in refused.items():
        response = client.post("/api/v1/jobs", json={**job, field: value}, headers=alice)
        assert response.status_code == status, response.text
    hidden = client.post("/api/v1/jobs", json={**job, "init_from": "secret"}, headers=bob)
    assert hidden.status_code == 404
    taken = client.post("/api/v1/jobs", json={**job, "publish": "base"}, headers=bob)
    assert taken.status_code == 409
    assert count(db, Job) == 0

    made = client.post("/api/v1/jobs", json={
        **job, "datasets": ["digits-data"], "init_from": "base@1", "publish": "tuned",
    }, headers=alice)
    assert made.status_code == 201, made.text
    job_id = made.json()["id"]
    assert made.json()["publish"] == "tuned"
    assert count(db, JobInput) == 2
    with db.unit_of_work() as session:
        token = mint_job_token(session, job_id, 1)
        for state in (JobState.PLACED, JobState.STARTING, JobState.RUNNING):
            transition_job(session, job_id, state, actor="test")
    as_job = {"Authorization": f"Bearer {token}"}
    assert client.get(f"{ARTIFACTS}/digits-data@1/content", headers=as_job).status_code == 200
    assert client.get(f"{ARTIFACTS}/secret@1/content", headers=as_job).status_code == 404
    assert client.get(ARTIFACTS, headers=as_job).status_code == 403
    assert upload(client, as_job, "other").status_code == 422
    published = upload(client, as_job, "tuned", data=b"weights")
    assert published.status_code == 201, published.text
    assert (published.json()["produced_by_job"], published.json()["owner"]) == (job_id, "alice")

    card = client.get(f"{ARTIFACTS}/tuned@1", headers=alice).json()["card"]
    assert card["lineage"] == {
        "produced_by_job": job_id, "datasets": ["digits-data@1"], "base_model": "base@1",
    }
    assert card["training"]["job"] == job_id and "method" in card["training"]["energy"]
    base = client.get(f"{ARTIFACTS}/base@1", headers=alice).json()["card"]
    assert base["reuse"]["jobs_started_from_it"] == 1


def test_a_service_names_a_visible_model_and_answers_only_when_running(
    client: TestClient, db: Database, alice: dict[str, str], bob: dict[str, str]
) -> None:
    assert upload(client, alice, "digits", kind="model").status_code == 201
    assert upload(client, alice, "data", kind="dataset").status_code == 201
    service = {"name": "api", "kind": "service", "workers": 2,
               "service": {"model": "digits@1", "builder": "a.b:build"}}
    refused = [
        ({**service, "service": {"model": "data@1"}}, alice, 422),  # a dataset is not a model
        ({**service, "service": {"model": "nope"}}, alice, 404),
        ({**service, "entrypoint": "a.b:c"}, alice, 422),
        ({**service, "datasets": ["data@1"]}, alice, 422),
        ({**service, "args": {"lr": 0.1}}, alice, 422),
        ({**service, "array": "1-2"}, alice, 422),
        ({"name": "x", "kind": "service"}, alice, 422),
        ({"name": "x", "entrypoint": "a.b:c", "service": service["service"]}, alice, 422),
        (service, bob, 404),  # project visibility
    ]
    for body, who, status in refused:
        response = client.post("/api/v1/jobs", json=body, headers=who)
        assert response.status_code == status, (body, response.text)
    assert count(db, Job) == 0
    made = client.post("/api/v1/jobs", json=service, headers=alice)
    assert made.status_code == 201, made.text
    job = made.json()
    assert (job["kind"], job["args"]) == (
        "service", {"builder": "a.b:build", "idle_timeout_s": 600, "max_batch_size": 32}
    )
    predict = f"/api/v1/services/{job['id']}/predict"
    waiting = client.post(predict, json={"inputs": [[0.0] * 64]}, headers=alice)
    assert waiting.status_code == 409 and "QUEUED" in waiting.json()["detail"]
    assert client.post(predict, json={"inputs": []}, headers=alice).status_code == 422
    assert client.post(predict, json={"inputs": [[0.0]]}, headers=bob).status_code == 404
    shown = client.get(f"/api/v1/services/{job['id']}", headers=alice).json()
    assert (shown["model"], shown["replicas"], shown["requests"]) == ("digits@1", 2, 0)
    assert shown["kwh_per_1000_requests"] is None
    other = client.post("/api/v1/jobs", json={"name": "t", "entrypoint": "a.b:c"},
                        headers=alice).json()
    assert client.get(f"/api/v1/services/{other['id']}", headers=alice).status_code == 422
    listed = client.get("/api/v1/jobs", params={"kind": "service"}, headers=alice).json()
    assert [j["id"] for j in listed["items"]] == [job["id"]]
