"""Eight writers race to move the same job: exactly one wins, nothing orphaned."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy import func, select

from commonpool.scheduler.policy import Placement, Resources, WorkerSlot
from commonpool.scheduler.services.jobs import submit_job
from commonpool.scheduler.store.models import Allocation, Job, JobEvent
from commonpool.scheduler.store.placements import apply_placements
from commonpool.scheduler.store.uow import Database
from tests.builders import job_spec, online_node

RACERS = 8


def test_racing_placements_one_wins_no_orphans(db: Database) -> None:
    with db.unit_of_work() as session:
        nodes = [online_node(session, name=f"n{i}", cpus=RACERS * 2)[0].id for i in range(2)]
        job_id = submit_job(session, job_spec(workers=2), actor="t").id
    barrier = threading.Barrier(RACERS)

    def race(i: int) -> tuple[str, ...]:
        # Each racer places the job on a different pair of ranks/nodes.
        slots = tuple(WorkerSlot(nodes[(i + r) % 2], r, Resources(1.0, 0, 0)) for r in range(2))
        barrier.wait()
        with db.unit_of_work() as session:
            return apply_placements(session, (Placement(job_id, slots),)).placed

    with ThreadPoolExecutor(RACERS) as pool:
        results = list(pool.map(race, range(RACERS)))
    assert sum(len(r) for r in results) == 1
    with db.unit_of_work(write=False) as session:
        assert session.get(Job, job_id).state == "PLACED"
        allocations = session.scalar(select(func.count()).select_from(Allocation))
        assert allocations == 2
        placed_events = session.scalar(
            select(func.count()).select_from(JobEvent).where(JobEvent.to_state == "PLACED"))
        assert placed_events == 1


def test_racing_cancels_over_http_one_200_seven_409(  # type: ignore[no-untyped-def]
    db: Database, live_server, admin_headers: dict[str, str]
) -> None:
    with db.unit_of_work() as session:
        job_id = submit_job(session, job_spec(), actor="t").id
    barrier = threading.Barrier(RACERS)

    def cancel(_: int) -> int:
        with httpx.Client(base_url=live_server.url, timeout=30, headers=admin_headers) as client:
            barrier.wait()
            return client.post(f"/api/v1/jobs/{job_id}/cancel").status_code

    with ThreadPoolExecutor(RACERS) as pool:
        codes = sorted(pool.map(cancel, range(RACERS)))
    assert codes == [200] + [409] * (RACERS - 1)
    with db.unit_of_work(write=False) as session:
        cancelled = session.scalar(
            select(func.count()).select_from(JobEvent).where(JobEvent.to_state == "CANCELLED"))
        assert cancelled == 1


def test_placement_that_would_overfill_a_node_is_refused(db: Database) -> None:
    with db.unit_of_work() as session:
        node_id = online_node(session, cpus=2)[0].id
        first = submit_job(session, job_spec(), actor="t").id
        second = submit_job(session, job_spec(), actor="t").id
    slot = (WorkerSlot(node_id, 0, Resources(2.0, 0, 0)),)
    with db.unit_of_work() as session:
        result = apply_placements(session, (Placement(first, slot), Placement(second, slot)))
    assert result.placed == (first,)
    assert "over-allocated" in result.rejected[second]
    with db.unit_of_work(write=False) as session:
        assert session.get(Job, second).state == "QUEUED"
        assert session.scalar(select(func.count()).select_from(Allocation)) == 1
