"""/metrics parses with prometheus-client and exposes exactly the documented names."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from commonpool.scheduler.loop import SchedulerLoop
from commonpool.scheduler.policy import make_policy
from commonpool.scheduler.services.jobs import submit_job
from commonpool.scheduler.store.uow import Database
from tests.builders import job_spec, online_node

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def _documented() -> set[str]:
    return set(re.findall(r"^\| `(commonpool_[a-z_]+)` \|", DOC.read_text(), flags=re.M))


def _scrape(client: TestClient) -> dict[str, object]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        f.name + ("_total" if f.type == "counter" else ""): f
        for f in text_string_to_metric_families(response.text)
    }


def _value(family: object, **labels: str) -> float:
    for sample in family.samples:  # type: ignore[attr-defined]
        if all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    raise AssertionError(f"no sample with {labels}")


def test_metrics_names_match_the_docs_and_values_follow_the_registry(
    app: FastAPI, db: Database, admin_headers: dict[str, str]
) -> None:
    with db.unit_of_work() as session:
        node, cred = online_node(session, name="a", cpus=4, region="GB", gpu_type="v100")
        job = submit_job(session, job_spec(workers=1, resources={"cpus": 1}), actor="t").id
        submit_job(session, job_spec(resources={"cpus": 64}), actor="t")
    loop = SchedulerLoop(db, make_policy("fifo"), after_step=app.state.metrics.observe_step)
    loop.step()
    start = datetime.now(UTC) - timedelta(seconds=10)
    interval = {"start": start.isoformat(), "end": (start + timedelta(seconds=4)).isoformat(),
                "total_j": 40.0, "idle_j": 8.0, "other_j": 2.0, "estimated_j": 40.0,
                "cpu_utilization": 0.25, "jobs": {job: {"joules": 30.0, "estimated_j": 30.0}}}
    with TestClient(app, headers=admin_headers) as client:
        beat = client.post(f"/api/v1/nodes/{node.id}/heartbeat",
                           json={"epoch": 1, "energy": {"intervals": [interval]}},
                           headers={"Authorization": f"Bearer {cred}"})
        assert beat.status_code == 200, beat.text
        families = _scrape(client)
    assert set(families) == _documented()
    assert _value(families["commonpool_jobs"], state="PLACED") == 1
    assert _value(families["commonpool_queue_length"]) == 1
    assert _value(families["commonpool_nodes"], state="ONLINE") == 1
    assert _value(families["commonpool_allocated_cpus"], gpu_type="v100") == 1
    assert _value(families["commonpool_free_cpus"], gpu_type="v100") == 3
    steps = families["commonpool_scheduler_step_seconds"]
    assert _value(steps, le="+Inf") == 1
    assert _value(families["commonpool_node_power_watts"], node_id=node.id) == 10.0
    assert _value(families["commonpool_node_cpu_utilization_ratio"], node_id=node.id) == 0.25
    assert _value(families["commonpool_job_energy_joules_total"], job_id=job) == 30.0
    assert _value(families["commonpool_job_carbon_grams_total"], job_id=job) > 0
    assert _value(families["commonpool_energy_joules_total"], kind="idle") == 8.0
    assert _value(families["commonpool_energy_joules_total"], kind="other") == 2.0


def test_two_apps_do_not_share_metrics(
    app: FastAPI, db: Database, admin_headers: dict[str, str]
) -> None:
    """Each app has its own registry: steps observed by one never show in the other."""
    from commonpool.api.app import create_app

    other = create_app(app.state.settings, db)
    SchedulerLoop(db, make_policy("fifo"), after_step=app.state.metrics.observe_step).step()
    with TestClient(other, headers=admin_headers) as client:
        steps = _scrape(client)["commonpool_scheduler_step_seconds"]
    assert _value(steps, le="+Inf") == 0
