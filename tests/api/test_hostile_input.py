"""Malformed and hostile payloads on every POST route: a 4xx with a reason, and no row changed.

The routes are read from the app itself, so a new POST route without a
case here fails `test_every_post_route_is_covered`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from commonpool.scheduler.store.models import Base
from commonpool.scheduler.store.uow import Database

GOOD_JOB = {"name": "ok", "entrypoint": "a.b:c"}

GENERIC: list[tuple[str, bytes]] = [
    ("not json", b"this is not json"),
    ("non-utf8", b'{"name": "\xff\xfe\xfd"}'),
    ("truncated", b'{"name": '),
    ("json array", b"[1, 2, 3]"),
    ("json string", b'"hello"'),
    ("unknown field", b'{"zzz_unknown": 1}'),
    ("deep nesting", b'{"a":' * 2000 + b"1" + b"}" * 2000),
    ("over 1 MB", b'{"name": "' + b"x" * 1_100_000 + b'"}'),
]

SPECIFIC: dict[str, list[dict[str, object]]] = {
    "/api/v1/jobs": [
        {**GOOD_JOB, "resources": {"cpus": -1}},
        {**GOOD_JOB, "resources": {"cpus": 1e9}},
        {**GOOD_JOB, "resources": {"gpus": 10**6}},
        {**GOOD_JOB, "resources": {"memory_bytes": "lots"}},
        {**GOOD_JOB, "resources": {"memory_bytes": 10**30}},
        {**GOOD_JOB, "workers": 0},
        {**GOOD_JOB, "workers": {"min": 4, "max": 2}},
        {**GOOD_JOB, "workers": "two"},
        {**GOOD_JOB, "name": "x" * 100_000},
        {**GOOD_JOB, "name": "../../etc/passwd"},
        {**GOOD_JOB, "name": "<script>alert(1)</script>"},
        {**GOOD_JOB, "entrypoint": "os.system('rm -rf /')"},
        {**GOOD_JOB, "priority": "high"},
        {**GOOD_JOB, "deadline": "2026-01-01T00:00:00"},
        {**GOOD_JOB, "env": {"BAD KEY": "x"}},
        {**GOOD_JOB, "max_attempts": 0},
        {"entrypoint": "a.b:c"},
        {**GOOD_JOB, "extra": True},
        {**GOOD_JOB, "datasets": ["../etc/passwd"]},
        {**GOOD_JOB, "datasets": ["d@1", "d@2"]},
        {**GOOD_JOB, "init_from": "model@0"},
        {**GOOD_JOB, "init_from": "missing@1"},
        {**GOOD_JOB, "publish": "bad name"},
        {**GOOD_JOB, "kind": "command", "entrypoint": None, "command": ["true"],
         "datasets": ["d@1"]},
    ],
    # The body is the artifact's bytes, any bytes: the generic cases lack the `name` query.
    "/api/v1/artifacts": [],
    "/api/v1/services/{job_id}/predict": [
        {"inputs": []},
        {"inputs": [[]]},
        {"inputs": [[1.0, 2.0], [3.0]]},
        {"inputs": [["a"]]},
        {"inputs": [[0.0]] * 5000},
        {"inputs": [[0.0]], "extra": 1},
    ],
    "/api/v1/jobs/{job_id}/cancel": [{"reason": 5}, {"reason": "x" * 10_000}],
    "/api/v1/arrays": [
        GOOD_JOB,  # no array or sweep: a single job belongs to /jobs
        {**GOOD_JOB, "array": "1-"},
        {**GOOD_JOB, "array": "5-1"},
        {**GOOD_JOB, "array": "1-3%0"},
        {**GOOD_JOB, "array": "0-20000"},
        {**GOOD_JOB, "array": "1,1"},
        {**GOOD_JOB, "array": "1-3%2", "max_running": 2},
        {**GOOD_JOB, "array": "1-3", "sweep": {"x": [1]}},
        {**GOOD_JOB, "max_running": 2},
        {**GOOD_JOB, "sweep": {"bad key": [1]}},
        {**GOOD_JOB, "sweep": {"x": []}},
        {**GOOD_JOB, "sweep": {"lr": [1], "LR": [2]}},
        {**GOOD_JOB, "sweep": {"a": list(range(200)), "b": list(range(200))}},
        {**GOOD_JOB, "array": "1-2", "after": [{"job": "../etc"}]},
        {**GOOD_JOB, "array": "1-2", "after": [{"job": "job_nope"}]},
        {**GOOD_JOB, "array": "1-2", "after": [{"job": "arr_nope", "type": "maybe"}]},
    ],
    "/api/v1/arrays/{array_id}/cancel": [{"reason": 5}, {"reason": "x" * 10_000}],
    "/api/v1/jobs/{job_id}/logs": [
        {"lines": [{"stream": "evil", "line": "x"}]},
        {"lines": "nope"},
        {"lines": [{"line": 3}]},
    ],
    "/api/v1/jobs/{job_id}/metrics": [
        {"step": -1, "values": {}},
        {"step": 1, "values": {"loss": "low"}},
        {"step": "one", "values": {}},
        {"step": 1},
    ],
    "/api/v1/enrollment-tokens": [{"ttl_s": -5}, {"ttl_s": 10**12}, {"ttl_s": "soon"}],
    "/api/v1/nodes/enroll": [
        {"token": "cpe_xxxxxxxxxxxx", "name": "n", "cpus": -1, "memory_bytes": 1},
        {"token": "cpe_xxxxxxxxxxxx", "name": "n", "cpus": 1e9, "memory_bytes": 1},
        {"token": "cpe_xxxxxxxxxxxx", "name": "n", "cpus": 1, "memory_bytes": 1, "gpus": 999},
        {"token": "cpe_xxxxxxxxxxxx", "name": "", "cpus": 1, "memory_bytes": 1},
        {"token": "cpe_xxxxxxxxxxxx", "name": "n", "cpus": 1, "memory_bytes": 1, "pue": 0.1},
        {"token": "cpe_not_a_real_token", "name": "n", "cpus": 1, "memory_bytes": 1},
    ],
    "/api/v1/nodes/{node_id}/heartbeat": [{"epoch": 0}, {"epoch": "x"}, {"epoch": 2},
                                          {"epoch": 1, "utilization": {"cpu": "busy"}}],
    "/api/v1/nodes/{node_id}/drain": [{"reason": ["x"]}],
    "/api/v1/nodes/{node_id}/cordon": [{"reason": {"a": 1}}],
    "/api/v1/nodes/{node_id}/uncordon": [{}],
    "/api/v1/nodes/{node_id}/leave": [{"reason": 12}, {"reason": "x" * 1000}],
    "/api/v1/nodes/{node_id}/revoke": [{"reason": 12}, {"reason": "x" * 1000}],
    "/api/v1/admin/users": [{"name": ""}, {"name": "a b"}, {"name": "x", "admin": "maybe"},
                            {"name": "admin"}],
    "/api/v1/admin/projects": [{"name": "p", "weight": 0}, {"name": "p", "max_cpus": -1},
                               {"name": "p", "max_queued_jobs": 1.5}, {"name": "default"}],
    "/api/v1/admin/tokens": [{"user": "admin", "scopes": []}, {"user": "admin", "scopes": ["root"]},
                             {"user": "nobody-here"}, {"user": "admin", "ttl_s": 0}],
    "/api/v1/admin/tokens/{token_id}/revoke": [{}],
}
# Routes an agent calls with its node credential; every other route gets the admin token.
AGENT_ROUTES = {"/api/v1/nodes/{node_id}/heartbeat", "/api/v1/nodes/{node_id}/leave"}


@pytest.fixture
def client(app: FastAPI, admin_headers: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(app, headers=admin_headers) as c:
        yield c


@pytest.fixture
def ids(client: TestClient) -> dict[str, str]:
    job_id = client.post("/api/v1/jobs", json=GOOD_JOB).json()["id"]
    array_id = client.post("/api/v1/arrays", json={**GOOD_JOB, "array": "0-1"}).json()["id"]
    token = client.post("/api/v1/enrollment-tokens", json={}).json()["token"]
    enrolled = client.post("/api/v1/nodes/enroll", json={
        "token": token, "name": "n", "cpus": 2, "memory_bytes": 2**30}).json()
    node_id = enrolled["node"]["id"]
    credential = f"Bearer {enrolled['credential']}"
    client.post(f"/api/v1/nodes/{node_id}/heartbeat", json={"epoch": 1},
                headers={"Authorization": credential})
    # Revoking takes no body: aim it at no token, so no case can change anything.
    return {"job_id": job_id, "array_id": array_id, "node_id": node_id, "token_id": "tok_none",
            "agent": credential}


def _post_routes(app: FastAPI) -> set[str]:
    """Every POST route, from the app's own route table (its OpenAPI paths)."""
    return {path for path, ops in app.openapi()["paths"].items() if "post" in ops}


def _row_counts(db: Database) -> dict[str, object]:
    with db.unit_of_work(write=False) as session:
        counts: dict[str, object] = {
            t.name: session.scalar(select(func.count()).select_from(t))
            for t in Base.metadata.sorted_tables
        }
        states = session.execute(select(Base.metadata.tables["jobs"].c.state)).all()
        nodes = session.execute(select(Base.metadata.tables["nodes"].c.state,
                                       Base.metadata.tables["nodes"].c.lease_epoch)).all()
    counts["job states"] = sorted(map(tuple, states))
    counts["node states"] = sorted(map(tuple, nodes))
    return counts


def test_every_post_route_is_covered(app: FastAPI) -> None:
    assert _post_routes(app) == set(SPECIFIC)


def test_hostile_payloads_get_4xx_and_change_nothing(
    app: FastAPI, client: TestClient, ids: dict[str, str], db: Database
) -> None:
    before = _row_counts(db)
    failures = []
    for route in sorted(_post_routes(app)):
        url = route.format(**ids)
        auth = {"Authorization": ids["agent"]} if route in AGENT_ROUTES else {}
        cases = [(name, body) for name, body in GENERIC]
        cases += [(f"case {i}", json.dumps(body).encode())
                  for i, body in enumerate(SPECIFIC[route])]
        for name, body in cases:
            response = client.post(url, content=body,
                                   headers={"Content-Type": "application/json", **auth})
            ok = 400 <= response.status_code < 500
            has_reason = ok and bool(response.json().get("detail"))
            if not (ok and has_reason):
                failures.append((route, name, response.status_code, response.text[:200]))
    assert failures == []
    assert _row_counts(db) == before
