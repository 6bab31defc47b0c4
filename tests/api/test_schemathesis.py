"""Schemathesis against the app's own OpenAPI schema, with a valid admin token.

Every operation gets positive cases (valid inputs, the admin token) and
negative ones (inputs the schema forbids; Schemathesis also drops the
credential in some). No response may be a 5xx, and every response must
conform to the schema its operation documents for that status. Path
parameters sometimes name real objects (a job, a node, a project, a user, a
spare token), so cases reach past the 404s. Deterministic: Hypothesis is
derandomized and keeps no example database.
"""

from __future__ import annotations

import traceback
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, assume, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from commonpool.scheduler.config import Settings

# Both backends (the `database_url` fixture): PostgreSQL refuses values SQLite stores.
pytestmark = [pytest.mark.slow]

MIN_VALID_TOKEN_CASES = 1000
EXAMPLES = {GenerationMode.POSITIVE: 30, GenerationMode.NEGATIVE: 12}
CHECKS = [not_a_server_error, response_schema_conformance]
# Whether every status and media type a response has must be documented. Until the app
# declares its problem+json responses, undocumented ones are a warning, not a failure.
STRICT_DOCUMENTATION = True
DOC_CHECKS = [status_code_conformance, content_type_conformance]
# Agent routes answer an admin token with 403; they also run with the node's own credential.
AGENT_ROUTES = {
    "/api/v1/nodes/{node_id}/heartbeat",
    "/api/v1/nodes/{node_id}/leave",
    "/api/v1/pool/ray",
}
# `GET .../logs?follow=true` streams until its job is final: only a finished job may be named.
FOLLOW_ROUTE = "/api/v1/jobs/{job_id}/logs"
ROOT = str(Path(__file__).resolve().parents[2])


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """No rate limits, so generated submits and heartbeats reach the routes, not a 429.

    A Ray address is configured, or `GET /pool/ray` would answer every agent 503.
    """
    return Settings(
        database_url=database_url,
        state_dir=tmp_path / "state",
        submit_rate_per_s=0,
        heartbeat_rate_per_s=0,
        ray_address="127.0.0.1:6379",
    )


@pytest.fixture
def client(app: FastAPI, admin_headers: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(app, headers=admin_headers) as c:
        yield c


@pytest.fixture
def real(client: TestClient) -> dict[str, Any]:
    """Objects the generated path parameters may name; the admin's own token is not one."""

    def ok(response: Any) -> Any:
        assert response.status_code < 300, response.text
        return response.json()

    job = ok(client.post("/api/v1/jobs", json={"name": "live", "entrypoint": "a.b:c"}))["id"]
    done = ok(client.post("/api/v1/jobs", json={"name": "done", "entrypoint": "a.b:c"}))["id"]
    ok(client.post(f"/api/v1/jobs/{done}/cancel", json={}))
    array = ok(
        client.post(
            "/api/v1/arrays", json={"name": "tasks", "entrypoint": "a.b:c", "array": "0-2%1"}
        )
    )["id"]
    ok(client.post("/api/v1/admin/users", json={"name": "alice"}))
    ok(client.put("/api/v1/projects/default/members/alice", json={"role": "member"}))
    spare = ok(client.post("/api/v1/admin/tokens", json={"user": "alice"}))["id"]
    admin_tokens = {t["id"] for t in ok(client.get("/api/v1/admin/tokens?user=admin"))}
    enroll = ok(client.post("/api/v1/enrollment-tokens", json={}))["token"]
    enrolled = ok(
        client.post(
            "/api/v1/nodes/enroll",
            json={"token": enroll, "name": "n1", "cpus": 2, "memory_bytes": 2**30},
        )
    )
    node = enrolled["node"]["id"]
    agent = {"Authorization": f"Bearer {enrolled['credential']}"}
    ok(client.post(f"/api/v1/nodes/{node}/heartbeat", json={"epoch": 1}, headers=agent))
    return {
        "ids": {
            "job_id": [job, done],
            "array_id": [array],
            "node_id": [node],
            "project": ["default"],
            "user": ["alice"],
            "token_id": [spare],
        },
        "done_job": done,
        "admin_tokens": admin_tokens,
        "agent": agent,
    }


def _aim(case: Any, real: dict[str, Any], picks: dict[str, int | None]) -> None:
    """Point some path parameters at real objects; never at the admin's own token."""
    params = case.path_parameters or {}
    for name, index in picks.items():
        if index is not None and name in params:
            values = real["ids"][name]
            params[name] = values[index % len(values)]
    assume(params.get("token_id") not in real["admin_tokens"])
    if case.operation.path == FOLLOW_ROUTE and params.get("job_id") in real["ids"]["job_id"]:
        params["job_id"] = real["done_job"]


@dataclass
class Run:
    """One run over the schema: what it sent, what came back, what failed."""

    real: dict[str, Any]
    admin_headers: dict[str, str]
    checks: list[Any]
    counts: Counter[GenerationMode] = field(default_factory=Counter)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    undocumented: set[str] = field(default_factory=set)
    no_negative: list[str] = field(default_factory=list)

    def operation(self, operation: Any, mode: GenerationMode, examples: int) -> None:
        picks = st.fixed_dictionaries(
            {name: st.none() | st.integers(0, 3) for name in self.real["ids"]}
        )

        @hsettings(
            max_examples=examples,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode), pick=picks)
        def run(case: Any, pick: dict[str, int | None]) -> None:
            self.case(case, pick, mode)

        try:
            run()
        except Unsatisfiable:
            # Negative mode finds nothing to break in an operation without inputs.
            assert mode is GenerationMode.NEGATIVE, operation.label
            self.no_negative.append(operation.label)

    def case(self, case: Any, pick: dict[str, int | None], mode: GenerationMode) -> None:
        _aim(case, self.real, pick)
        headers = dict(self.admin_headers)
        if case.operation.path in AGENT_ROUTES and pick["node_id"] is not None:
            headers.update(self.real["agent"])
        self.counts[mode] += 1
        try:
            response = case.call(headers=headers)
        except Exception as exc:  # the in-process app raised: a 500 in production
            where = traceback.extract_tb(exc.__traceback__)
            ours = [f for f in where if f.filename.startswith(ROOT) and "/.venv/" not in f.filename]
            frames = [f"{Path(f.filename).relative_to(ROOT)}:{f.lineno}" for f in ours[1:]]
            self.failures.append(
                f"{case.operation.label} [{mode.value}] -> raised {exc!r} at {frames}\n"
                f"{case.as_curl_command(headers=headers)}"
            )
            return
        self.statuses[(case.operation.label, response.status_code)] += 1
        if mode is GenerationMode.POSITIVE and headers == self.admin_headers:
            # Positive cases carry the admin token: a 401 means a case broke it.
            assert response.status_code != 401, case.as_curl_command(headers=headers)
        try:
            case.validate_response(response, checks=self.checks, headers=headers)
        except (AssertionError, FailureGroup) as exc:
            self.failures.append(
                f"{case.operation.label} [{mode.value}] -> {response.status_code}\n"
                f"{case.as_curl_command(headers=headers)}\n{exc}"
            )
        if STRICT_DOCUMENTATION:
            return
        try:
            case.validate_response(response, checks=DOC_CHECKS, headers=headers)
        except (AssertionError, FailureGroup):
            media = response.headers.get("content-type", ["-"])[0]
            self.undocumented.add(f"{case.operation.label} -> {response.status_code} {media}")


def test_schemathesis_every_operation(
    app: FastAPI, client: TestClient, real: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    checks = CHECKS + DOC_CHECKS if STRICT_DOCUMENTATION else CHECKS
    run = Run(real, admin_headers, checks)
    for result in schema.get_all_operations():
        for mode, examples in EXAMPLES.items():
            run.operation(result.ok(), mode, examples)

    positive = run.counts[GenerationMode.POSITIVE]
    print(
        f"\n{sum(run.counts.values())} cases ({positive} positive) over "
        f"{len({label for label, _ in run.statuses})} operations; "
        f"none negative for {run.no_negative}"
    )
    for (label, status), n in sorted(run.statuses.items()):
        print(f"{n:5} {label} -> {status}")
    assert run.failures == [], "\n\n".join(run.failures[:20])
    assert positive >= MIN_VALID_TOKEN_CASES, run.counts
    assert client.get("/api/v1/whoami").status_code == 200, "a case broke the admin token"
    if run.undocumented:
        warnings.warn(
            "responses the OpenAPI schema does not document:\n  "
            + "\n  ".join(sorted(run.undocumented)),
            stacklevel=1,
        )
