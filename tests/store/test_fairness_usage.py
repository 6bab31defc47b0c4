"""The dashboard's pool-wide reads on a real database: fairness shares and usage now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from commonpool.scheduler.loop import SchedulerLoop
from commonpool.scheduler.policy import make_policy
from commonpool.scheduler.services.accounts import create_project
from commonpool.scheduler.services.fairness import pool_fairness
from commonpool.scheduler.services.jobs import submit_job
from commonpool.scheduler.services.usage import pool_usage, start_of_day
from commonpool.scheduler.store.uow import Database
from tests.builders import job_spec, online_node


def _two_projects_one_running(db: Database) -> tuple[str, str]:
    """Project a (weight 3) runs a 4-CPU job on b's donated 8-CPU node; b queues 2 CPUs."""
    with db.unit_of_work() as session:
        create_project(session, "a", weight=3.0, actor="t")
        create_project(session, "b", weight=1.0, actor="t")
        node, _ = online_node(session, name="donated", cpus=8, donor_project="b")
        running = submit_job(session, job_spec(project="a", resources={"cpus": 4}), actor="t").id
    SchedulerLoop(db, make_policy("fifo")).step()
    with db.unit_of_work() as session:
        online_node(session, name="full", cpus=0.5)  # capacity only: nothing fits on it
        submit_job(session, job_spec(project="b", resources={"cpus": 8}), actor="t")
    return node.id, running


def test_fairness_reports_weights_usage_queue_and_donations(db: Database) -> None:
    _two_projects_one_running(db)
    with db.unit_of_work(write=False) as session:
        fairness = pool_fairness(session)
    by_name = {p.project: p for p in fairness.projects}
    assert fairness.capacity.cpus == pytest.approx(8.5)
    a, b = by_name["a"], by_name["b"]
    assert (a.weight_share, b.weight_share) == (pytest.approx(0.75), pytest.approx(0.25))
    assert a.cpus_used == 4 and a.running_jobs == 1 and a.queued_jobs == 0
    assert a.usage_share == pytest.approx(4 / 8.5)
    assert b.cpus_used == 0 and b.queued_jobs == 1 and b.usage_share == 0
    # weighted max-min capped by demand: a (weight 3) wants only what it holds, b gets the rest
    assert a.entitled_share == pytest.approx(4 / 8.5)
    assert b.entitled_share == pytest.approx(1 - 4 / 8.5)
    assert (b.donated_nodes, b.donated_cpus) == (1, 8)
    assert a.donated_nodes == 0


def test_usage_reports_types_nodes_and_energy_since_midnight(db: Database) -> None:
    donated, _ = _two_projects_one_running(db)
    with db.unit_of_work(write=False) as session:
        usage = pool_usage(session, fresh_s=30)
    cpu = next(t for t in usage.by_type if t.kind == "cpu")
    assert (cpu.total, cpu.used, cpu.free) == (pytest.approx(8.5), 4, pytest.approx(4.5))
    node = next(n for n in usage.nodes if n.node_id == donated)
    assert (node.cpus_used, node.jobs) == (4, 1)
    assert usage.since == start_of_day(usage.at)
    assert usage.jobs_energy_j == 0  # no agent has reported energy yet
    assert usage.power_nodes == 0 and usage.power_w == 0


def test_start_of_day_is_utc_midnight() -> None:
    local = datetime(2026, 3, 1, 1, 30, tzinfo=UTC) + timedelta(hours=-3)
    assert start_of_day(local) == datetime(2026, 2, 28, tzinfo=UTC)
