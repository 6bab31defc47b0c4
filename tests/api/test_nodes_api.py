"""Enrollment, heartbeats, drain/cordon and the pool summary over the API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient


@pytest.fixture
def client(app: FastAPI, admin_headers: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(app, headers=admin_headers) as c:
        yield c


def _enroll(client: TestClient, **extra: object) -> dict:
    token = client.post("/api/v1/enrollment-tokens", json={}).json()["token"]
    body = {"token": token, "name": "donor-1", "cpus": 4, "memory_bytes": 8 * 2**30,
            "region": "GB", "labels": {"commonpool/zone": "a"}, **extra}
    response = client.post("/api/v1/nodes/enroll", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_enroll_token_is_single_use(client: TestClient) -> None:
    token = client.post("/api/v1/enrollment-tokens", json={}).json()["token"]
    body = {"token": token, "name": "a", "cpus": 2, "memory_bytes": 2**30}
    assert client.post("/api/v1/nodes/enroll", json=body).status_code == 201
    second = client.post("/api/v1/nodes/enroll", json={**body, "name": "b"})
    assert second.status_code == 403 and second.json()["code"] == "forbidden"
    assert len(client.get("/api/v1/nodes").json()) == 1


def test_heartbeat_brings_node_online_and_checks_epoch(client: TestClient) -> None:
    enrolled = _enroll(client)
    node, cred = enrolled["node"], enrolled["credential"]
    assert node["state"] == "ENROLLED"
    url = f"/api/v1/nodes/{node['id']}/heartbeat"
    auth = {"Authorization": f"Bearer {cred}"}
    ok = client.post(url, json={"epoch": 1, "utilization": {"cpu": 0.5}}, headers=auth)
    assert ok.status_code == 200 and ok.json()["node"]["state"] == "ONLINE"
    assert ok.json()["node"]["utilization"] == {"cpu": 0.5}
    assert ok.json()["allocations"] == []
    stale = client.post(url, json={"epoch": 7}, headers=auth)
    assert stale.status_code == 409 and stale.json()["code"] == "stale-lease"
    assert client.post(url, json={"epoch": 1}, headers={"Authorization": ""}).status_code == 401
    assert client.post(url, json={"epoch": 1}).status_code == 403  # a user token is no agent
    bad = client.post(url, json={"epoch": 1}, headers={"Authorization": "Bearer cpn_wrong"})
    assert bad.status_code == 401


def test_agent_cannot_heartbeat_for_another_node(client: TestClient) -> None:
    a, b = _enroll(client), _enroll(client)
    response = client.post(f"/api/v1/nodes/{b['node']['id']}/heartbeat", json={"epoch": 1},
                           headers={"Authorization": f"Bearer {a['credential']}"})
    assert response.status_code == 403


def test_drain_cordon_uncordon_and_summary(client: TestClient) -> None:
    enrolled = _enroll(client)
    node_id = enrolled["node"]["id"]
    client.post(f"/api/v1/nodes/{node_id}/heartbeat", json={"epoch": 1},
                headers={"Authorization": f"Bearer {enrolled['credential']}"})
    summary = client.get("/api/v1/pool/summary").json()
    assert summary["nodes_by_state"]["ONLINE"] == 1 and summary["free"]["cpus"] == 4
    assert client.post(f"/api/v1/nodes/{node_id}/drain").json()["state"] == "DRAINING"
    summary = client.get("/api/v1/pool/summary").json()
    assert summary["free"]["cpus"] == 0 and summary["total"]["cpus"] == 4
    assert client.post(f"/api/v1/nodes/{node_id}/cordon").json()["state"] == "CORDONED"
    assert client.post(f"/api/v1/nodes/{node_id}/uncordon").json()["state"] == "ONLINE"
    assert client.post(f"/api/v1/nodes/{node_id}/uncordon").status_code == 409
    assert client.post("/api/v1/nodes/node_nope/drain").status_code == 404
