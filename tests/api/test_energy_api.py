"""Energy in heartbeats -> per-job energy, carbon and pool totals over the API (SQLite + PG)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from commonpool.scheduler.loop import SchedulerLoop
from commonpool.scheduler.policy import make_policy
from commonpool.scheduler.services.jobs import get_job, record_metrics, submit_job
from commonpool.scheduler.store.uow import Database
from tests.builders import job_spec, online_node
from tests.carbon_by_hand import gb_intensity

J_PER_KWH = 3.6e6


@pytest.fixture
def client(app: FastAPI, admin_headers: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(app, headers=admin_headers) as c:
        yield c


def _slot_start() -> datetime:
    """A past moment safely inside one 30-minute CSV step (so one intensity applies)."""
    now = datetime.now(UTC)
    slot = now.replace(minute=30 * (now.minute // 30), second=0, microsecond=0)
    return slot - timedelta(minutes=25)


def _interval(start: datetime, seconds: float, jobs: dict[str, float], **extra: Any) -> dict:
    job_j = sum(jobs.values())
    idle, other = extra.pop("idle_j", 10.0), extra.pop("other_j", 5.0)
    return {
        "start": start.isoformat(),
        "end": (start + timedelta(seconds=seconds)).isoformat(),
        "total_j": job_j + idle + other,
        "idle_j": idle,
        "other_j": other,
        "estimated_j": job_j + idle + other,
        "cpu_utilization": 0.5,
        "jobs": {j: {"joules": v, "estimated_j": v} for j, v in jobs.items()},
        **extra,
    }


def _beat(client: TestClient, node_id: str, cred: str, intervals: list[dict]) -> Any:
    energy = {
        "methods": {"cpu": "model"},
        "is_estimated": True,
        "note": "estimated from utilisation (test)",
        "intervals": intervals,
    }
    return client.post(
        f"/api/v1/nodes/{node_id}/heartbeat",
        json={"epoch": 1, "utilization": {}, "energy": energy},
        headers={"Authorization": f"Bearer {cred}"},
    )


@pytest.fixture
def placed(db: Database) -> dict[str, Any]:
    """A 2-worker job placed on GB nodes a (PUE 1.0) and b (PUE 1.5), plus a stranger job."""
    with db.unit_of_work() as session:
        a, cred_a = online_node(session, name="a", cpus=1, region="GB")
        b, cred_b = online_node(session, name="b", cpus=1, region="GB", pue=1.5)
        job = submit_job(session, job_spec(workers=2, resources={"cpus": 1}), actor="t").id
        stranger = submit_job(session, job_spec(resources={"cpus": 8}), actor="t").id
    assert SchedulerLoop(db, make_policy("fifo")).step().placed == (job,)
    return {"job": job, "stranger": stranger, "a": (a.id, cred_a), "b": (b.id, cred_b)}


def test_job_energy_is_sum_of_node_parts_with_pue_and_carbon(
    client: TestClient, placed: dict[str, Any]
) -> None:
    job, start = placed["job"], _slot_start()
    (a, cred_a), (b, cred_b) = placed["a"], placed["b"]
    ok = _beat(client, a, cred_a, [_interval(start, 2, {job: 100.0}),
                                   _interval(start + timedelta(seconds=2), 2, {job: 50.0})])
    assert ok.status_code == 200, ok.text
    assert _beat(client, b, cred_b, [_interval(start, 4, {job: 200.0})]).status_code == 200

    energy = client.get(f"/api/v1/jobs/{job}/energy").json()
    parts = {n["node_id"]: n for n in energy["nodes"]}
    assert parts[a]["energy_j"] == pytest.approx(150.0)
    assert parts[b]["energy_j"] == pytest.approx(300.0)  # 200 J x PUE 1.5
    assert energy["energy_j"] == pytest.approx(sum(n["energy_j"] for n in energy["nodes"]))
    assert energy["kwh"] == pytest.approx(450.0 / J_PER_KWH)
    assert energy["co2e_g"] == pytest.approx(450.0 / J_PER_KWH * gb_intensity(start), rel=1e-9)
    assert energy["is_estimated"] and energy["estimated_percent"] == pytest.approx(100.0)
    assert energy["methods"] == ["cpu=model"]
    assert "no power counter" in energy["method_summary"]
    assert energy["intensity_sources"][0].startswith("csv:gb_2020_ci.csv")
    assert not energy["intensity_fallback"]
    assert sum(p["energy_j"] for p in energy["series"]) == pytest.approx(450.0)
    assert energy["j_per_sample"] is None


def test_pool_summary_splits_busy_idle_other(client: TestClient, placed: dict[str, Any]) -> None:
    job, stranger, start = placed["job"], placed["stranger"], _slot_start()
    node, cred = placed["a"]
    # the stranger job never ran here: its joules count as the node's "other"
    interval = _interval(start, 5, {job: 40.0, stranger: 7.0}, idle_j=20.0, other_j=3.0)
    assert _beat(client, node, cred, [interval]).status_code == 200
    pool = client.get("/api/v1/pool/summary").json()["energy"]
    assert pool["busy_j"] == pytest.approx(40.0)
    assert pool["idle_j"] == pytest.approx(20.0)
    assert pool["other_j"] == pytest.approx(10.0)
    assert pool["total_j"] == pytest.approx(70.0)
    assert pool["co2e_g"] == pytest.approx(70.0 / J_PER_KWH * gb_intensity(start))
    assert client.get(f"/api/v1/jobs/{stranger}/energy").json()["energy_j"] == 0


def test_j_per_sample_from_reported_throughput(
    client: TestClient, placed: dict[str, Any], db: Database
) -> None:
    job, start = placed["job"], _slot_start()
    node, cred = placed["a"]
    with db.unit_of_work() as session:
        for step, rate in ((1, 90.0), (2, 110.0)):
            record_metrics(session, job, step=step, values={"samples_per_s": rate})
    assert _beat(client, node, cred, [_interval(start, 10, {job: 500.0})]).status_code == 200
    energy = client.get(f"/api/v1/jobs/{job}/energy").json()
    assert energy["samples"] == pytest.approx(100.0 * 10)
    assert energy["j_per_sample"] == pytest.approx(0.5)


def test_heartbeat_without_energy_still_works_and_bad_batches_are_422(
    client: TestClient, placed: dict[str, Any]
) -> None:
    node, cred = placed["a"]
    auth = {"Authorization": f"Bearer {cred}"}
    url = f"/api/v1/nodes/{node}/heartbeat"
    assert client.post(url, json={"epoch": 1}, headers=auth).status_code == 200
    start = _slot_start()
    too_much = _interval(start, 1, {placed["job"]: 5.0})
    too_much["total_j"] = 1.0
    backwards = _interval(start, 1, {})
    backwards["end"] = start.isoformat()
    naive = _interval(start, 1, {})
    naive["start"] = start.replace(tzinfo=None).isoformat()
    many = [_interval(start + timedelta(seconds=i), 1, {}) for i in range(121)]
    for batch in ([too_much], [backwards], [naive], many):
        response = _beat(client, node, cred, batch)
        assert response.status_code == 422, response.text
    assert client.get("/api/v1/pool/summary").json()["energy"]["total_j"] == 0


def test_fenced_heartbeat_stores_no_energy(client: TestClient, placed: dict[str, Any]) -> None:
    node, cred = placed["a"]
    body = {"epoch": 9, "energy": {"intervals": [_interval(_slot_start(), 1, {})]}}
    response = client.post(f"/api/v1/nodes/{node}/heartbeat", json=body,
                           headers={"Authorization": f"Bearer {cred}"})
    assert response.status_code == 409
    assert client.get("/api/v1/pool/summary").json()["energy"]["total_j"] == 0


def test_unknown_job_energy_is_404(client: TestClient) -> None:
    response = client.get("/api/v1/jobs/job_nope/energy")
    assert response.status_code == 404 and response.json()["code"] == "not-found"


def test_carbon_saved_compares_ended_deferred_jobs_with_their_baseline(
    client: TestClient, placed: dict[str, Any], db: Database
) -> None:
    job, start = placed["job"], _slot_start()
    (a, cred_a), _ = placed["a"], placed["b"]
    assert _beat(client, a, cred_a, [_interval(start, 4, {job: 3600.0})]).status_code == 200
    actual = 3600.0 / J_PER_KWH * gb_intensity(start)
    with db.unit_of_work() as session:  # as the carbon policy's first deferral left it
        get_job(session, job).carbon_baseline_g_per_kwh = 900.0
    energy = client.get(f"/api/v1/jobs/{job}/energy").json()
    assert energy["baseline_g_per_kwh"] == 900.0
    assert energy["baseline_co2e_g"] == pytest.approx(3600.0 / J_PER_KWH * 900.0)
    assert energy["co2e_saved_g"] == pytest.approx(energy["baseline_co2e_g"] - actual)
    assert client.get("/api/v1/pool/summary").json()["carbon_saved"]["jobs"] == 0  # running

    with db.unit_of_work() as session:
        get_job(session, job).state = "SUCCEEDED"
    saved = client.get("/api/v1/pool/summary").json()["carbon_saved"]
    assert saved["jobs"] == 1
    assert saved["co2e_g"] == pytest.approx(actual)
    assert saved["baseline_co2e_g"] == pytest.approx(3600.0 / J_PER_KWH * 900.0)
    assert saved["saved_g"] == pytest.approx(saved["baseline_co2e_g"] - actual)
    assert saved["saved_percent"] == pytest.approx(100 * (1 - gb_intensity(start) / 900.0))
    stranger = client.get(f"/api/v1/jobs/{placed['stranger']}/energy").json()
    assert stranger["baseline_g_per_kwh"] is None and stranger["co2e_saved_g"] is None
