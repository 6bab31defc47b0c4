"""Tokens, quotas, rate limits, revocation, log caps and the audit log, over the real app."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from commonpool.api.app import create_app
from commonpool.api.ratelimit import Rate, RateLimiter
from commonpool.scheduler.config import Settings
from commonpool.scheduler.domain.errors import RateLimited
from commonpool.scheduler.loop import SchedulerLoop
from commonpool.scheduler.policy import make_policy
from commonpool.scheduler.services.jobs import LOG_TRUNCATED
from commonpool.scheduler.store.models import Base, Job
from commonpool.scheduler.store.uow import Database
from tests.builders import member_headers

JOB = {"name": "j", "entrypoint": "a.b:c"}


def _client(settings: Settings, db: Database, admin_headers: dict[str, str], **overrides: object):  # type: ignore[no-untyped-def]
    app = create_app(settings.model_copy(update=overrides), db)
    return TestClient(app, headers=admin_headers)


@pytest.fixture
def client(
    settings: Settings, db: Database, admin_headers: dict[str, str]
) -> Iterator[TestClient]:
    with _client(settings, db, admin_headers) as c:
        yield c


def _job_count(db: Database) -> int:
    with db.unit_of_work(write=False) as session:
        return session.scalar(select(func.count()).select_from(Job)) or 0


def _all_stored_text(db: Database) -> str:
    """Every value of every row of every table, as text."""
    parts = []
    with db.unit_of_work(write=False) as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)).all():
                parts.extend(str(v) for v in row)
        parts.extend(str(r) for r in session.execute(text("SELECT * FROM alembic_version")))
    return "\n".join(parts)


def test_secrets_are_never_stored_or_logged_in_clear(
    client: TestClient, db: Database, admin_token: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    user = member_headers(client, "ada", "vision")
    enroll = client.post("/api/v1/enrollment-tokens", json={}).json()["token"]
    enrolled = client.post(
        "/api/v1/nodes/enroll", json={"token": enroll, "name": "n", "cpus": 1, "memory_bytes": 1}
    ).json()
    credential = enrolled["credential"]
    node_auth = {"Authorization": f"Bearer {credential}"}
    client.post(f"/api/v1/nodes/{enrolled['node']['id']}/heartbeat", json={"epoch": 1},
                headers=node_auth)
    client.post("/api/v1/jobs", json={**JOB, "project": "vision"}, headers=user)
    client.get("/api/v1/jobs", headers={"Authorization": "Bearer cpu_wrong_secret_value"})
    secrets = [admin_token, user["Authorization"][7:], enroll, credential]
    stored = _all_stored_text(db)
    logged = caplog.text
    for secret in secrets:
        assert secret not in stored
        assert secret not in logged
    assert "cpu_wrong_secret_value" not in logged


def test_user_sees_and_cancels_only_their_projects_jobs(client: TestClient) -> None:
    ada = member_headers(client, "ada", "vision")
    bob = member_headers(client, "bob", "speech")
    mine = client.post("/api/v1/jobs", json=JOB, headers=ada).json()  # her only project
    assert mine["project"] == "vision" and mine["owner"] == "ada"
    theirs = client.post("/api/v1/jobs", json=JOB, headers=bob).json()
    listed = client.get("/api/v1/jobs", headers=ada).json()["items"]
    assert [j["id"] for j in listed] == [mine["id"]]
    assert client.get(f"/api/v1/jobs/{theirs['id']}", headers=ada).status_code == 404
    assert client.post(f"/api/v1/jobs/{theirs['id']}/cancel", headers=ada).status_code == 404
    refused = client.post("/api/v1/jobs", json={**JOB, "project": "speech"}, headers=ada)
    assert refused.status_code == 403 and "not a member" in refused.json()["detail"]
    spoof = client.post("/api/v1/jobs", json={**JOB, "owner": "bob"}, headers=ada)
    assert spoof.status_code == 403
    assert client.post(f"/api/v1/jobs/{mine['id']}/cancel", headers=ada).status_code == 200


def test_read_only_token_cannot_submit(client: TestClient) -> None:
    reader = member_headers(client, "ada", "vision", scopes=["jobs:read"])
    response = client.post("/api/v1/jobs", json=JOB, headers=reader)
    assert response.status_code == 403 and "jobs:write" in response.json()["detail"]
    assert client.get("/api/v1/jobs", headers=reader).status_code == 200


def test_admin_scope_is_refused_for_non_admins(client: TestClient) -> None:
    member_headers(client, "ada", "vision")
    response = client.post("/api/v1/admin/tokens", json={"user": "ada", "scopes": ["admin"]})
    assert response.status_code == 422 and "not an admin" in response.json()["detail"]


def test_revoked_and_expired_tokens_are_refused_at_once(
    client: TestClient, db: Database
) -> None:
    ada = member_headers(client, "ada", "vision")
    assert client.get("/api/v1/whoami", headers=ada).json()["subject"] == "ada"
    token_id = client.get("/api/v1/admin/tokens", params={"user": "ada"}).json()[0]["id"]
    assert client.post(f"/api/v1/admin/tokens/{token_id}/revoke").status_code == 200
    refused = client.get("/api/v1/whoami", headers=ada)
    assert refused.status_code == 401 and refused.json()["detail"] == "token revoked"
    short = member_headers(client, "bea", "vision", ttl_s=1)
    with db.unit_of_work() as session:
        session.execute(text("UPDATE api_tokens SET expires_at = :t WHERE name = ''"),
                        {"t": "2000-01-01 00:00:00+00:00"})
    client.app.state.auth.forget()  # type: ignore[attr-defined]
    expired = client.get("/api/v1/whoami", headers=short)
    assert expired.status_code == 401 and expired.json()["detail"] == "token expired"


def test_job_token_reports_only_for_its_job_and_dies_with_the_attempt(
    client: TestClient, db: Database
) -> None:
    from commonpool.scheduler.services.accounts import mint_job_token

    first = client.post("/api/v1/jobs", json=JOB).json()["id"]
    other = client.post("/api/v1/jobs", json=JOB).json()["id"]
    with db.unit_of_work() as session:
        token = mint_job_token(session, first, 1)
    job_auth = {"Authorization": f"Bearer {token}"}
    metric = {"step": 1, "values": {"loss": 0.5}}
    assert client.post(f"/api/v1/jobs/{first}/metrics", json=metric,
                       headers=job_auth).status_code == 201
    assert client.post(f"/api/v1/jobs/{other}/metrics", json=metric,
                       headers=job_auth).status_code == 403
    assert client.get(f"/api/v1/jobs/{first}", headers=job_auth).status_code == 403
    client.post(f"/api/v1/jobs/{first}/cancel")
    client.app.state.auth.forget()  # type: ignore[attr-defined]
    after = client.post(f"/api/v1/jobs/{first}/metrics", json=metric, headers=job_auth)
    assert after.status_code == 401


def test_queue_quota_is_429_and_size_quota_403_with_nothing_queued(
    client: TestClient, db: Database
) -> None:
    ada = member_headers(client, "ada", "vision")
    quota = {"max_cpus": 2, "max_queued_jobs": 1}
    assert client.put("/api/v1/admin/projects/vision/quota", json=quota).status_code == 200
    assert client.post("/api/v1/jobs", json=JOB, headers=ada).status_code == 201
    before = _job_count(db)
    full = client.post("/api/v1/jobs", json=JOB, headers=ada)
    assert full.status_code == 429 and full.headers["retry-after"]
    assert full.json()["code"] == "queue-quota-exceeded" and "quota 1" in full.json()["detail"]
    too_big = client.post("/api/v1/jobs", json={**JOB, "workers": 3}, headers=ada)
    assert too_big.status_code == 403 and too_big.json()["code"] == "quota-exceeded"
    assert "needs 3 CPUs" in too_big.json()["detail"]
    assert _job_count(db) == before


def test_scheduler_never_places_past_a_projects_cpu_quota(
    client: TestClient, db: Database
) -> None:
    from tests.builders import online_node

    with db.unit_of_work() as session:
        online_node(session, name="big", cpus=8)
    client.put("/api/v1/admin/projects/default/quota", json={"max_cpus": 2})
    ids = [client.post("/api/v1/jobs", json={**JOB, "resources": {"cpus": 2}}).json()["id"]
           for _ in range(2)]
    SchedulerLoop(db, make_policy("fifo")).step()
    states = [client.get(f"/api/v1/jobs/{i}").json() for i in ids]
    assert [s["state"] for s in states] == ["PLACED", "QUEUED"]
    assert "project quota" in states[1]["pending_reason"]
    client.post(f"/api/v1/jobs/{ids[0]}/cancel")
    SchedulerLoop(db, make_policy("fifo")).step()
    assert client.get(f"/api/v1/jobs/{ids[1]}").json()["state"] == "PLACED"


def test_submit_and_heartbeat_rate_limits_answer_429_with_retry_after(
    settings: Settings, db: Database, admin_headers: dict[str, str]
) -> None:
    limits = {"submit_rate_per_s": 0.5, "submit_burst": 2, "heartbeat_rate_per_s": 0.5,
              "heartbeat_burst": 1}
    with _client(settings, db, admin_headers, **limits) as client:
        codes = [client.post("/api/v1/jobs", json=JOB).status_code for _ in range(3)]
        assert codes == [201, 201, 429]
        limited = client.post("/api/v1/jobs", json=JOB)
        assert limited.headers["retry-after"] == "2"
        assert "at most 0.5/s" in limited.json()["detail"]
        token = client.post("/api/v1/enrollment-tokens", json={}).json()["token"]
        node = client.post("/api/v1/nodes/enroll", json={
            "token": token, "name": "n", "cpus": 1, "memory_bytes": 1}).json()
        auth = {"Authorization": f"Bearer {node['credential']}"}
        url = f"/api/v1/nodes/{node['node']['id']}/heartbeat"
        beats = [client.post(url, json={"epoch": 1}, headers=auth).status_code for _ in range(2)]
        assert beats == [200, 429]


def test_job_logs_are_capped_with_one_marker(
    settings: Settings, db: Database, admin_headers: dict[str, str]
) -> None:
    with _client(settings, db, admin_headers, job_log_max_bytes=25) as client:
        job = client.post("/api/v1/jobs", json=JOB).json()["id"]
        lines = [{"line": f"line {i:04d}"} for i in range(10)]  # 9 bytes each
        stored = client.post(f"/api/v1/jobs/{job}/logs", json={"lines": lines}).json()
        assert stored == {"stored": 3}
        assert client.post(f"/api/v1/jobs/{job}/logs", json={"lines": lines}).json() == {
            "stored": 0
        }
        tail = [x["line"] for x in client.get(f"/api/v1/jobs/{job}/logs").json()]
    assert tail == ["line 0000", "line 0001", LOG_TRUNCATED]


def test_revoked_node_is_refused_and_its_jobs_requeued(client: TestClient, db: Database) -> None:
    token = client.post("/api/v1/enrollment-tokens", json={}).json()["token"]
    node = client.post("/api/v1/nodes/enroll", json={
        "token": token, "name": "n", "cpus": 2, "memory_bytes": 2**30}).json()
    node_id, auth = node["node"]["id"], {"Authorization": f"Bearer {node['credential']}"}
    beat = f"/api/v1/nodes/{node_id}/heartbeat"
    assert client.post(beat, json={"epoch": 1}, headers=auth).status_code == 200
    job = client.post("/api/v1/jobs", json=JOB).json()["id"]
    SchedulerLoop(db, make_policy("fifo")).step()
    assert client.get(f"/api/v1/jobs/{job}").json()["state"] == "PLACED"
    revoked = client.post(f"/api/v1/nodes/{node_id}/revoke", json={"reason": "stolen laptop"})
    assert revoked.status_code == 200 and revoked.json()["state"] == "REVOKED"
    refused = client.post(beat, json={"epoch": 2}, headers=auth)
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    requeued = client.get(f"/api/v1/jobs/{job}").json()
    assert requeued["state"] == "QUEUED" and requeued["attempt"] == 2
    events = client.get(f"/api/v1/jobs/{job}/events").json()
    assert any("node revoked (stolen laptop)" in (e["reason"] or "") for e in events)
    assert client.post(f"/api/v1/nodes/{node_id}/uncordon").status_code == 409


def test_expired_enrollment_token_is_refused(client: TestClient, db: Database) -> None:
    token = client.post("/api/v1/enrollment-tokens", json={"ttl_s": 1}).json()["token"]
    with db.unit_of_work() as session:
        session.execute(text("UPDATE enrollment_tokens SET expires_at = :t"),
                        {"t": "2000-01-01 00:00:00+00:00"})
    response = client.post("/api/v1/nodes/enroll", json={
        "token": token, "name": "n", "cpus": 1, "memory_bytes": 1})
    assert response.status_code == 403 and "expired" in response.json()["detail"]


def test_audit_log_records_who_did_what(client: TestClient) -> None:
    ada = member_headers(client, "ada", "vision")
    job = client.post("/api/v1/jobs", json=JOB, headers=ada).json()["id"]
    client.post(f"/api/v1/jobs/{job}/cancel", headers=ada)
    client.put("/api/v1/admin/projects/vision/quota", json={"max_gpus": 4})
    events = client.get("/api/v1/admin/audit").json()["items"]
    seen = [(e["actor"], e["action"], e["target"]) for e in events]
    assert ("ada", "job.submit", job) in seen and ("ada", "job.cancel", job) in seen
    assert ("admin", "project.quota", "vision") in seen
    assert any(action == "token.create" for _, action, _ in seen)
    only = client.get("/api/v1/admin/audit", params={"actor": "ada"}).json()["items"]
    assert {e["action"] for e in only} == {"job.submit", "job.cancel"}
    page = client.get("/api/v1/admin/audit", params={"limit": 2}).json()
    rest = client.get("/api/v1/admin/audit", params={"cursor": page["next_cursor"]}).json()
    assert len(page["items"]) == 2 and rest["items"][0]["id"] < page["items"][-1]["id"]


def test_project_admin_manages_members_of_their_project_only(client: TestClient) -> None:
    lead = member_headers(client, "lead", "vision")
    client.put("/api/v1/projects/vision/members/lead", json={"role": "project-admin"})
    member_headers(client, "ada", "speech")
    added = client.put("/api/v1/projects/vision/members/ada", json={}, headers=lead)
    assert added.status_code == 200
    members = client.get("/api/v1/projects/vision/members", headers=lead).json()
    assert {(m["user"], m["role"]) for m in members} == {
        ("lead", "project-admin"), ("ada", "member")}
    assert client.put("/api/v1/projects/speech/members/lead", json={},
                      headers=lead).status_code == 403


def test_bootstrap_admin_is_minted_once(db: Database, settings: Settings) -> None:
    from commonpool.api.bootstrap import bootstrap

    first = bootstrap(db, settings.resolved_token_file)
    assert first is not None and first.startswith("cpu_")
    assert settings.resolved_token_file.read_text().strip() == first
    assert settings.resolved_token_file.stat().st_mode & 0o777 == 0o600
    assert bootstrap(db, settings.resolved_token_file) is None


@pytest.mark.parametrize("header", ["", "Basic abc", "Bearer ", "Bearer " + "x" * 500,
                                    "Bearer cpn_unknown", "Bearer cpj_unknown"])
def test_malformed_credentials_are_401(client: TestClient, header: str) -> None:
    response = client.get("/api/v1/jobs", headers={"Authorization": header})
    assert response.status_code == 401 and response.json()["code"] == "unauthorized"


def test_rate_limit_bucket_is_per_credential_and_refills() -> None:
    limiter = RateLimiter({"submit": Rate(per_s=1000.0, burst=1)})
    limiter.check("submit", "k")
    with pytest.raises(RateLimited):
        limiter.check("submit", "k")
    limiter.check("submit", "other-key")
    time.sleep(0.01)
    limiter.check("submit", "k")


def test_sqlite_registry_file_is_private(tmp_path: Path) -> None:
    from commonpool.scheduler.store.engine import make_engine

    path = tmp_path / "state" / "commonpool.db"
    make_engine(f"sqlite:///{path}").dispose()
    assert path.stat().st_mode & 0o777 == 0o600


def test_non_admins_ship_code_only_from_the_pools_job_code_folders(
    settings: Settings, db: Database, admin_headers: dict[str, str], tmp_path: Path
) -> None:
    code = tmp_path / "code"
    (code / "proj").mkdir(parents=True)
    (tmp_path / "secrets").mkdir()
    (code / "escape").symlink_to(tmp_path / "secrets")
    with _client(settings, db, admin_headers, job_code_dirs=[code]) as client:
        ada = member_headers(client, "ada", "vision")

        def submit(working_dir: str, headers: dict[str, str]) -> int:
            body = {**JOB, "working_dir": working_dir}
            return client.post("/api/v1/jobs", json=body, headers=headers).status_code

        assert submit(str(code / "proj"), ada) == 201
        assert submit("s3://bucket/code.zip", ada) == 201
        assert submit("/etc", ada) == 403
        assert submit(str(code / "proj" / ".." / ".." / "secrets"), ada) == 403
        assert submit(str(code / "escape"), ada) == 403  # a symlink out is still out
        assert submit("/etc", admin_headers) == 201  # the pool's operator may
