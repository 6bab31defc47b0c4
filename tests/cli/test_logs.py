"""The scheduler's structured logs: one JSON object per line, with job and node ids."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from commonpool.migrations import upgrade
from commonpool.scheduler.services.jobs import submit_job
from commonpool.scheduler.store.engine import make_engine
from commonpool.scheduler.store.uow import Database
from tests.builders import job_spec, online_node


def test_scheduler_logs_placements_as_json_with_job_and_node_ids(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'commonpool.db'}"
    upgrade(url)
    db = Database(make_engine(url))
    with db.unit_of_work() as session:
        node_id = online_node(session, cpus=2)[0].id
        job_id = submit_job(session, job_spec(resources={"cpus": 1}), actor="t").id
    db.dispose()
    env = {**os.environ, "COMMONPOOL_DATABASE_URL": url, "COMMONPOOL_STATE_DIR": str(tmp_path),
           "COMMONPOOL_CONFIG": str(tmp_path / "absent.toml"), "COMMONPOOL_LOG_FORMAT": "json"}
    once = subprocess.run([sys.executable, "-m", "commonpool", "scheduler", "--once"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert once.returncode == 0, once.stderr
    events = [json.loads(line) for line in once.stderr.splitlines() if line.startswith("{")]
    placed = [e for e in events if e["event"] == "job.placed"]
    assert placed and placed[0]["job_id"] == job_id and placed[0]["node_ids"] == [node_id]
    assert placed[0]["level"] == "info" and placed[0]["timestamp"].endswith("Z")
    assert placed[0]["component"] == "scheduler"
