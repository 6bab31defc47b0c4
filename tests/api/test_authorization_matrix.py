"""Every route x every kind of caller -> the expected status, from the app's own route table.

A route added without a policy fails `test_every_route_declares_one_policy`;
a route added without a row in EXPECTED fails `test_matrix_covers_every_route`.
Each request runs against fresh objects (job, nodes, tokens), so a caller
that may change something (cancel, drain, revoke) never spoils the next row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import update

from commonpool.api.app import ROUTERS, create_app
from commonpool.api.authz import policy_of
from commonpool.scheduler.blobs import LocalBlobStore
from commonpool.scheduler.config import Settings
from commonpool.scheduler.domain.artifacts import ArtifactKind
from commonpool.scheduler.domain.ids import new_id
from commonpool.scheduler.domain.principal import Role, Scope
from commonpool.scheduler.services import accounts, artifacts
from commonpool.scheduler.services.arrays import submit_array
from commonpool.scheduler.services.jobs import submit_job
from commonpool.scheduler.services.nodes import create_enrollment_token
from commonpool.scheduler.store.models import ApiToken, utcnow
from commonpool.scheduler.store.uow import Database
from tests.builders import job_spec, online_node

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

USERS = ("user_a", "member_a", "user_b", "padmin_a", "admin")
AGENTS = ("agent_n", "agent_m")
CALLERS = (*USERS, *AGENTS, "job_a", "anonymous", "revoked", "expired")
UNAUTHENTICATED = ("anonymous", "revoked", "expired")


def expect(ok: int, who: tuple[str, ...] | str, other: int = 403, **special: int) -> dict[str, int]:
    """`ok` for the callers in `who`, `other` for the rest, 401 for the unauthenticated."""
    allowed = USERS if who == "users" else (who,) if isinstance(who, str) else who
    table = {c: ok if c in allowed else other for c in CALLERS}
    table.update({c: 401 for c in UNAUTHENTICATED})
    table.update(special)
    return table


EVERYONE_200 = {c: 200 for c in CALLERS}
JOB_READ = expect(200, "users", user_b=404)
ADMIN_ONLY = expect(200, "admin")
MANAGERS = expect(200, ("padmin_a", "admin"))

EXPECTED: dict[tuple[str, str], dict[str, int]] = {
    ("POST", "/api/v1/jobs"): expect(201, ("user_a", "member_a", "padmin_a", "admin")),
    ("GET", "/api/v1/jobs"): expect(200, "users"),
    ("GET", "/api/v1/jobs/{job_id}"): JOB_READ,
    ("POST", "/api/v1/jobs/{job_id}/cancel"): expect(
        200, ("user_a", "padmin_a", "admin"), user_b=404
    ),
    ("GET", "/api/v1/jobs/{job_id}/events"): JOB_READ,
    ("GET", "/api/v1/jobs/{job_id}/allocations"): JOB_READ,
    ("POST", "/api/v1/jobs/{job_id}/logs"): expect(201, ("job_a", "admin")),
    ("GET", "/api/v1/jobs/{job_id}/logs"): JOB_READ,
    ("POST", "/api/v1/jobs/{job_id}/metrics"): expect(201, ("job_a", "admin")),
    ("GET", "/api/v1/jobs/{job_id}/metrics"): JOB_READ,
    ("GET", "/api/v1/jobs/{job_id}/energy"): JOB_READ,
    ("POST", "/api/v1/arrays"): expect(201, ("user_a", "member_a", "padmin_a", "admin")),
    ("GET", "/api/v1/arrays/{array_id}"): JOB_READ,
    ("POST", "/api/v1/arrays/{array_id}/cancel"): expect(
        200, ("user_a", "padmin_a", "admin"), user_b=404
    ),
    ("POST", "/api/v1/artifacts"): expect(
        201, ("user_a", "member_a", "padmin_a", "admin")  # job_a's job publishes no model
    ),
    ("GET", "/api/v1/artifacts"): expect(200, "users"),
    ("GET", "/api/v1/artifacts/{ref}"): JOB_READ,
    ("PATCH", "/api/v1/artifacts/{ref}"): expect(
        200, ("user_a", "padmin_a", "admin"), user_b=404
    ),
    ("GET", "/api/v1/artifacts/{ref}/content"): expect(
        200, (*USERS, "job_a"), user_b=404  # job_a's job declared it as a dataset
    ),
    # job_a's job is a ddp job, not a service: callers who may see it learn that (422)
    ("POST", "/api/v1/services/{job_id}/predict"): expect(422, "users", user_b=404),
    ("GET", "/api/v1/services/{job_id}"): expect(422, "users", user_b=404),
    ("GET", "/api/v1/whoami"): expect(200, CALLERS),
    ("GET", "/api/v1/admin/users"): ADMIN_ONLY,
    ("POST", "/api/v1/admin/users"): expect(201, "admin"),
    ("GET", "/api/v1/projects"): expect(200, "users"),
    ("POST", "/api/v1/admin/projects"): expect(201, "admin"),
    ("PUT", "/api/v1/admin/projects/{project}/quota"): ADMIN_ONLY,
    ("GET", "/api/v1/projects/{project}/members"): MANAGERS,
    ("PUT", "/api/v1/projects/{project}/members/{user}"): MANAGERS,
    ("DELETE", "/api/v1/projects/{project}/members/{user}"): expect(204, ("padmin_a", "admin")),
    ("POST", "/api/v1/admin/tokens"): expect(201, "admin"),
    ("GET", "/api/v1/admin/tokens"): ADMIN_ONLY,
    ("POST", "/api/v1/admin/tokens/{token_id}/revoke"): ADMIN_ONLY,
    ("GET", "/api/v1/admin/audit"): ADMIN_ONLY,
    ("POST", "/api/v1/enrollment-tokens"): expect(201, "admin"),
    ("POST", "/api/v1/nodes/enroll"): {c: 201 for c in CALLERS},
    ("POST", "/api/v1/nodes/{node_id}/heartbeat"): expect(200, "agent_n"),
    ("POST", "/api/v1/nodes/{node_id}/leave"): expect(200, "agent_n"),
    ("GET", "/api/v1/pool/ray"): expect(200, AGENTS),
    ("GET", "/api/v1/nodes"): expect(200, "users"),
    ("GET", "/api/v1/nodes/{node_id}"): expect(200, "users"),
    ("POST", "/api/v1/nodes/{node_id}/drain"): expect(200, ("admin", "agent_n")),
    ("POST", "/api/v1/nodes/{node_id}/cordon"): ADMIN_ONLY,
    ("POST", "/api/v1/nodes/{node_id}/uncordon"): expect(409, "admin"),  # ONLINE: no-op refused
    ("POST", "/api/v1/nodes/{node_id}/revoke"): ADMIN_ONLY,
    ("GET", "/api/v1/pool/summary"): expect(200, "users"),
    ("GET", "/api/v1/pool/fairness"): expect(200, "users"),
    ("GET", "/api/v1/pool/usage"): expect(200, "users"),
    ("GET", "/metrics"): ADMIN_ONLY,
    ("GET", "/healthz"): EVERYONE_200,
    ("GET", "/readyz"): EVERYONE_200,
    ("GET", "/dashboard"): EVERYONE_200,  # the page holds no data; its data routes are above
}


def route_table() -> list[tuple[str, str, APIRoute]]:
    return [
        (method, prefix + route.path, route)
        for prefix, router in ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in sorted(route.methods)
    ]


def declared_policies(route: APIRoute) -> list[object]:
    found = []
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        if (policy := policy_of(dep.call)) is not None:
            found.append(policy)
        stack.extend(dep.dependencies)
    return found


def test_every_route_declares_one_policy() -> None:
    missing = {
        (method, path): declared_policies(route)
        for method, path, route in route_table()
        if len(declared_policies(route)) != 1
    }
    assert missing == {}


@SQLITE_ONLY
def test_matrix_covers_every_route(app: FastAPI) -> None:
    table = {(method, path) for method, path, _ in route_table()}
    assert table == set(EXPECTED)
    openapi = {
        (method.upper(), path) for path, ops in app.openapi()["paths"].items() for method in ops
    }
    assert openapi == table, "a route exists outside commonpool.api.app.ROUTERS"


@dataclass
class World:
    """Fresh objects for one request: a job of project A owned by user_a, two nodes."""

    ids: dict[str, str]
    credentials: dict[str, str]


class Pool:
    def __init__(self, db: Database, blobs: LocalBlobStore) -> None:
        self.db = db
        self.blobs = blobs
        self.tokens: dict[str, str] = {}
        with db.unit_of_work() as s:
            for project in ("proj-a", "proj-b"):
                accounts.create_project(s, project, actor="test")
            roles = {
                "user_a": ("proj-a", Role.MEMBER),
                "member_a": ("proj-a", Role.MEMBER),
                "user_b": ("proj-b", Role.MEMBER),
                "padmin_a": ("proj-a", Role.PROJECT_ADMIN),
            }
            for name, (project, role) in roles.items():
                accounts.create_user(s, name, actor="test")
                accounts.set_membership(s, project, name, role, actor="test")
                self.tokens[name], _ = accounts.create_token(s, name, actor="test")
            accounts.create_user(s, "admin", admin=True, actor="test")
            self.tokens["admin"], _ = accounts.create_token(
                s, "admin", scopes=list(Scope), actor="test"
            )
            self.tokens["revoked"], row = accounts.create_token(s, "user_a", actor="test")
            accounts.revoke_token(s, row.id, actor="test")
            self.tokens["expired"], row = accounts.create_token(
                s, "user_a", ttl=timedelta(seconds=60), actor="test"
            )
            s.execute(
                update(ApiToken)
                .where(ApiToken.id == row.id)
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )

    def world(self) -> World:
        writer = self.blobs.writer(max_bytes=100)
        writer.write(b"data")
        blob = writer.commit()
        with self.db.unit_of_work() as s:
            data = artifacts.publish(
                s,
                artifacts.NewArtifact(
                    f"d-{new_id('d')[-10:].lower()}", ArtifactKind.DATASET, "files", "proj-a",
                    "user_a",
                ),
                blob,
                actor="user_a",
            )
            ref = f"{data.name}@{data.version}"
            job = submit_job(
                s, job_spec(project="proj-a", owner="user_a", datasets=[ref]), actor="user_a"
            )
            array = submit_array(
                s, job_spec(project="proj-a", owner="user_a", array="0-1"), actor="user_a"
            )
            node_n, cred_n = online_node(s, name="n")
            _, cred_m = online_node(s, name="m")
            temp = f"tmp-{new_id('u')[-8:]}"
            accounts.create_user(s, temp, actor="test")
            accounts.set_membership(s, "proj-a", temp, Role.MEMBER, actor="test")
            _, temp_token = accounts.create_token(s, temp, actor="test")
            enroll_token, _ = create_enrollment_token(s, ttl=timedelta(minutes=5))
            job_token = accounts.mint_job_token(s, job.id, job.attempt)
            ids = {
                "job_id": job.id,
                "array_id": array.id,
                "node_id": node_n.id,
                "project": "proj-a",
                "user": temp,
                "token_id": temp_token.id,
                "enroll_token": enroll_token,
                "new_name": f"x-{new_id('n')[-10:].lower()}",
                "ref": ref,
            }
        credentials = {
            **self.tokens,
            "agent_n": cred_n,
            "agent_m": cred_m,
            "job_a": job_token,
        }
        return World(ids, credentials)


BODIES: dict[tuple[str, str], Callable[[dict[str, str]], Any]] = {
    ("POST", "/api/v1/jobs"): lambda ids: {
        "name": "m",
        "entrypoint": "a.b:c",
        "project": "proj-a",
    },
    ("POST", "/api/v1/arrays"): lambda ids: {
        "name": "m",
        "entrypoint": "a.b:c",
        "project": "proj-a",
        "array": "1-2",
    },
    ("POST", "/api/v1/jobs/{job_id}/logs"): lambda ids: {"lines": [{"line": "hello"}]},
    ("PATCH", "/api/v1/artifacts/{ref}"): lambda ids: {"description": "digits, 8x8"},
    ("POST", "/api/v1/services/{job_id}/predict"): lambda ids: {"inputs": [[0.0, 1.0]]},
    ("POST", "/api/v1/jobs/{job_id}/metrics"): lambda ids: {"step": 1, "values": {"loss": 1.0}},
    ("POST", "/api/v1/admin/users"): lambda ids: {"name": ids["new_name"]},
    ("POST", "/api/v1/admin/projects"): lambda ids: {"name": ids["new_name"]},
    ("PUT", "/api/v1/admin/projects/{project}/quota"): lambda ids: {"max_cpus": 64},
    ("PUT", "/api/v1/projects/{project}/members/{user}"): lambda ids: {"role": "member"},
    ("POST", "/api/v1/admin/tokens"): lambda ids: {"user": "user_b", "scopes": ["jobs:read"]},
    ("POST", "/api/v1/enrollment-tokens"): lambda ids: {"ttl_s": 60},
    ("POST", "/api/v1/nodes/enroll"): lambda ids: {
        "token": ids["enroll_token"],
        "name": "new",
        "cpus": 1,
        "memory_bytes": 2**30,
    },
    ("POST", "/api/v1/nodes/{node_id}/heartbeat"): lambda ids: {"epoch": 1},
}


QUERIES: dict[tuple[str, str], Callable[[dict[str, str]], Any]] = {
    ("POST", "/api/v1/artifacts"): lambda ids: {"name": ids["new_name"], "project": "proj-a"},
}


@pytest.fixture
def matrix_client(settings: Settings, db: Database) -> Iterator[tuple[TestClient, Pool]]:
    settings = settings.model_copy(update={"ray_address": "127.0.0.1:1", "auth_cache_s": 0})
    with TestClient(create_app(settings, db)) as client:
        yield client, Pool(db, client.app.state.blobs)


@SQLITE_ONLY
@pytest.mark.parametrize(("method", "path"), sorted(EXPECTED))
def test_authorization_matrix(
    matrix_client: tuple[TestClient, Pool], method: str, path: str
) -> None:
    client, pool = matrix_client
    wrong = {}
    for caller, status in EXPECTED[(method, path)].items():
        world = pool.world()
        body = BODIES.get((method, path), lambda ids: None)(world.ids)
        params = QUERIES.get((method, path), lambda ids: None)(world.ids)
        headers = {}
        if caller != "anonymous":
            headers["Authorization"] = f"Bearer {world.credentials[caller]}"
        response = client.request(
            method, path.format(**world.ids), json=body, params=params, headers=headers
        )
        if response.status_code != status:
            wrong[caller] = (status, response.status_code, response.text[:160])
    assert wrong == {}
