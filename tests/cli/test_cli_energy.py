"""`commonpool job ID` prints energy, carbon and the method that produced them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from commonpool.api.client.sdk import Client
from commonpool.api.schemas import EnergyIntervalIn, EnergyReportIn, JobEnergyIn
from commonpool.scheduler.loop import SchedulerLoop
from commonpool.scheduler.policy import make_policy
from commonpool.scheduler.services.jobs import submit_job
from commonpool.scheduler.store.uow import Database
from tests.builders import job_spec, online_node
from tests.cli.test_cli import run
from tests.conftest import LiveServer


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_job_shows_energy_method_and_carbon(
    live_server: LiveServer, db: Database, admin_token: str
) -> None:
    with db.unit_of_work() as session:
        node, cred = online_node(session, region="GB")
        job_id = submit_job(session, job_spec(), actor="t").id
    SchedulerLoop(db, make_policy("fifo")).step()
    start = datetime.now(UTC) - timedelta(seconds=30)
    interval = EnergyIntervalIn(
        start=start, end=start + timedelta(seconds=10), total_j=3600.0, idle_j=600.0,
        other_j=0.0, estimated_j=3600.0, jobs={job_id: JobEnergyIn(joules=3000, estimated_j=3000)},
    )
    report = EnergyReportIn(methods={"cpu": "model"}, is_estimated=True, intervals=[interval])
    with Client(live_server.url, token=admin_token) as client:
        client.heartbeat(node.id, cred, 1, {}, energy=report)

    human = run(live_server.url, "job", job_id).stdout
    assert "3,000.0 J" in human and "100% estimated" in human
    assert "estimated from utilisation: no power counter on this node" in human
    assert "gCO2e" in human and "csv:gb_2020_ci.csv" in human
    shown = json.loads(run(live_server.url, "job", job_id, "--json").stdout)
    assert shown["energy"]["energy_j"] == 3000.0 and shown["energy"]["is_estimated"]
