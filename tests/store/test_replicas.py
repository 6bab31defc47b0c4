"""Three scheduler replicas on one PostgreSQL database never double-allocate.

Real `commonpool scheduler` processes race while this test submits jobs and
finishes placed ones (so capacity keeps freeing and the replicas keep
competing); an SQL invariant is checked during the run and at the end.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from commonpool.scheduler.domain.states import JobState
from commonpool.scheduler.services.jobs import release_allocations, submit_job
from commonpool.scheduler.store.models import Job, JobEvent
from commonpool.scheduler.store.transitions import transition_job
from commonpool.scheduler.store.uow import Database
from tests.builders import job_spec, online_node

REPLICAS = 3
OVER_ALLOCATED = text("""
    SELECT n.id FROM nodes n JOIN allocations a ON a.node_id = n.id AND a.released_at IS NULL
    GROUP BY n.id, n.cpus HAVING SUM(a.cpus) > n.cpus + 1e-9
""")
DOUBLE_PLACED = text("""
    SELECT job_id FROM allocations WHERE released_at IS NULL
    GROUP BY job_id HAVING COUNT(DISTINCT attempt) > 1 OR COUNT(*) <> COUNT(DISTINCT rank)
""")


def _violations(db: Database) -> list[str]:
    with db.unit_of_work(write=False) as session:
        return [*session.scalars(OVER_ALLOCATED), *session.scalars(DOUBLE_PLACED)]


def _finish_placed(db: Database, rng: random.Random) -> int:
    with db.unit_of_work() as session:
        placed = list(session.scalars(select(Job.id).where(Job.state == JobState.PLACED.value)))
    done = 0
    for job_id in rng.sample(placed, k=len(placed) // 2):
        with db.unit_of_work() as session:
            transition_job(session, job_id, JobState.STARTING, actor="test")
            transition_job(session, job_id, JobState.SUCCEEDED, actor="test")
            release_allocations(session, job_id)
        done += 1
    return done


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_three_replicas_no_double_allocation(db: Database, database_url: str,
                                             tmp_path: Path) -> None:
    rng = random.Random(0)
    with db.unit_of_work() as session:
        for i in range(6):
            online_node(session, name=f"n{i}", cpus=4)
        for _ in range(150):
            submit_job(session, job_spec(workers=rng.choice([1, 2, 3]),
                                         resources={"cpus": rng.choice([1, 2])}), actor="t")
    env = {**os.environ, "COMMONPOOL_DATABASE_URL": database_url,
           "COMMONPOOL_STATE_DIR": str(tmp_path)}
    replicas = [subprocess.Popen([sys.executable, "-m", "commonpool", "scheduler",
                                  "--interval", "0.02"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for _ in range(REPLICAS)]
    finished = 0
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert _violations(db) == []
            finished += _finish_placed(db, rng)
            with db.unit_of_work(write=False) as session:
                queued = session.scalar(select(func.count()).select_from(Job)
                                        .where(Job.state == JobState.QUEUED.value))
            if queued == 0 and finished >= 100:
                break
            time.sleep(0.05)
    finally:
        for replica in replicas:
            replica.terminate()
        for replica in replicas:
            replica.wait(timeout=30)
    assert _violations(db) == []
    assert finished >= 100
    with db.unit_of_work(write=False) as session:
        placements = session.execute(
            select(JobEvent.job_id, func.count()).where(JobEvent.to_state == "PLACED")
            .group_by(JobEvent.job_id)).all()
    assert placements and all(count == 1 for _, count in placements)
