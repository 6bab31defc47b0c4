"""Builders with valid defaults, so each test states only what matters to it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from commonpool.scheduler.services.nodes import (
    NodeRegistration,
    create_enrollment_token,
    enroll_node,
    heartbeat,
)
from commonpool.scheduler.spec import JobSpec
from commonpool.scheduler.store.models import Node


def job_spec(**overrides: Any) -> JobSpec:
    data: dict[str, Any] = {
        "name": "test-job",
        "entrypoint": "pkg.mod:train",
        "workers": 1,
        "resources": {"cpus": 1},
    }
    data.update(overrides)
    return JobSpec.model_validate(data)


def online_node(
    session: Session,
    *,
    name: str = "n",
    cpus: float = 4,
    memory_bytes: int = 2**33,
    gpus: int = 0,
    gpu_type: str | None = None,
    **extra: Any,
) -> tuple[Node, str]:
    """An enrolled node that has sent one heartbeat (so ONLINE); returns (node, credential)."""
    token, _ = create_enrollment_token(session, ttl=timedelta(hours=1))
    node, credential = enroll_node(
        session,
        token,
        NodeRegistration(
            name=name, cpus=cpus, memory_bytes=memory_bytes, gpus=gpus, gpu_type=gpu_type, **extra
        ),
    )
    heartbeat(session, node, epoch=node.lease_epoch, utilization={}, lease=timedelta(minutes=5))
    return node, credential


def member_headers(client: TestClient, name: str, project: str, **token: Any) -> dict[str, str]:
    """A new user, member of `project` (created if new), and the headers of a fresh token
    of theirs (`token`: its fields, e.g. scopes). `client` must act as an admin."""
    client.post("/api/v1/admin/projects", json={"name": project})
    assert client.post("/api/v1/admin/users", json={"name": name}).status_code == 201
    assert client.put(f"/api/v1/projects/{project}/members/{name}", json={}).status_code == 200
    created = client.post("/api/v1/admin/tokens", json={"user": name, **token})
    assert created.status_code == 201, created.text
    return {"Authorization": f"Bearer {created.json()['token']}"}
