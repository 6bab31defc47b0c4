"""The real `commonpool` executable against a real server over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port

CLI = [sys.executable, "-m", "commonpool"]


def run(server: str | None, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    prefix = ["--server", server] if server else []
    result = subprocess.run([*CLI, *prefix, *args], capture_output=True, text=True, env=env,
                            timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} exited {result.returncode}: {result.stderr}")
    return result


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_submit_from_file_list_show_cancel(live_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    job_file = tmp_path / "job.yaml"
    job_file.write_text("name: from-file\nentrypoint: pkg.train:loop\nworkers: 2\n"
                        "resources: {cpus: 1, memory_bytes: 512MiB}\nargs: {lr: 0.1}\n")
    run(live_server.url, "admin", "create-project", "p1")
    out = run(live_server.url, "submit", str(job_file), "--arg", "epochs=3", "--project", "p1",
              "--json")
    job = json.loads(out.stdout)
    assert job["args"] == {"lr": 0.1, "epochs": 3} and job["project"] == "p1"
    assert job["workers_max"] == 2 and job["memory_bytes_per_worker"] == 512 * 2**20
    listed = json.loads(run(live_server.url, "jobs", "--json", "--state", "queued").stdout)
    assert [j["id"] for j in listed["items"]] == [job["id"]]
    human = run(live_server.url, "jobs").stdout
    assert job["id"] in human and "QUEUED" in human
    shown = json.loads(run(live_server.url, "job", job["id"], "--json").stdout)
    assert shown["events"][0]["to_state"] == "QUEUED"
    assert "CANCELLED" in run(live_server.url, "cancel", job["id"]).stdout
    again = run(live_server.url, "cancel", job["id"], check=False)
    assert again.returncode == 3 and "invalid-transition" in again.stderr


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_exit_codes_for_bad_input_unknown_ids_and_no_server(live_server) -> None:  # type: ignore[no-untyped-def]
    bad = run(live_server.url, "submit", "--name", "x", "--entrypoint", "no-colon", check=False)
    assert bad.returncode == 2 and "entrypoint" in bad.stderr
    missing = run(live_server.url, "job", "job_missing", check=False)
    assert missing.returncode == 3 and "not-found" in missing.stderr
    down = run(f"http://127.0.0.1:{free_port()}", "jobs", check=False)
    assert down.returncode == 4 and "connection error" in down.stderr


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_nodes_and_enrollment_token(live_server) -> None:  # type: ignore[no-untyped-def]
    token = json.loads(run(live_server.url, "enroll-token", "--json").stdout)["token"]
    assert token.startswith("cpe_")
    assert json.loads(run(live_server.url, "nodes", "--json").stdout) == []
    summary = json.loads(run(live_server.url, "pool", "--json").stdout)
    assert summary["nodes_by_state"]["ONLINE"] == 0
    assert summary["carbon_saved"] == {
        "jobs": 0, "co2e_g": 0.0, "baseline_co2e_g": 0.0, "saved_g": 0.0, "saved_percent": None
    }
    assert "carbon saved: none yet" in run(live_server.url, "pool").stdout
    drained = run(live_server.url, "drain", "node_missing", check=False)
    assert drained.returncode == 3


def test_db_upgrade_and_scheduler_once(tmp_path: Path) -> None:
    env = {**os.environ, "COMMONPOOL_STATE_DIR": str(tmp_path)}
    up = subprocess.run([*CLI, "db", "upgrade"], capture_output=True, text=True, env=env,
                        timeout=120)
    assert up.returncode == 0, up.stderr
    assert (tmp_path / "commonpool.db").exists()
    once = subprocess.run([*CLI, "scheduler", "--once"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert once.returncode == 0, once.stderr
    assert "placed 0" in once.stdout
    bad = subprocess.run([*CLI, "scheduler", "--once", "--policy", "nope"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert bad.returncode != 0 and "fifo" in bad.stderr


def test_second_scheduler_on_one_sqlite_file_is_refused(tmp_path: Path) -> None:
    env = {**os.environ, "COMMONPOOL_STATE_DIR": str(tmp_path)}
    first = subprocess.Popen([*CLI, "scheduler", "--interval", "0.2"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert first.stderr is not None
        assert "scheduler running" in first.stderr.readline() + first.stderr.readline()
        second = subprocess.run([*CLI, "scheduler", "--once"], capture_output=True, text=True,
                                env=env, timeout=120)
        assert second.returncode == 3
        assert "already runs on this SQLite database" in second.stderr
    finally:
        first.terminate()
        first.wait(timeout=30)
    after = subprocess.run([*CLI, "scheduler", "--once"], capture_output=True, text=True,
                           env=env, timeout=120)
    assert after.returncode == 0, after.stderr  # the lock died with its process


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_job_shows_where_its_checkpoints_are(live_server, db) -> None:  # type: ignore[no-untyped-def]
    from commonpool.scheduler.store.models import Job

    out = run(live_server.url, "submit", "--name", "ck", "--entrypoint", "m:train", "--json")
    job_id = json.loads(out.stdout)["id"]
    assert "checkpoints:" not in run(live_server.url, "job", job_id).stdout  # not launched
    with db.unit_of_work() as session:  # what the launcher writes when it launches the job
        session.get(Job, job_id).checkpoint_uri = f"/srv/cp/checkpoints/{job_id}"
    shown = run(live_server.url, "job", job_id).stdout
    assert f"checkpoints: /srv/cp/checkpoints/{job_id}" in shown


def test_job_shows_its_type_and_voluntary_requeues(live_server, db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from commonpool.scheduler.store.models import Job

    job_file = tmp_path / "job.yaml"
    job_file.write_text("name: typed\nentrypoint: m:train\njob_type: ResNet-50 (batch size 64)\n")
    job_id = json.loads(run(live_server.url, "submit", str(job_file), "--json").stdout)["id"]
    shown = run(live_server.url, "job", job_id).stdout
    assert "job type ResNet-50 (batch size 64)" in shown and "requeued" not in shown
    with db.unit_of_work() as session:  # what two LAS preemptions and a regrow leave
        job = session.get(Job, job_id)
        job.policy_preemptions, job.regrows = 2, 1
    shown = run(live_server.url, "job", job_id).stdout
    assert "requeued 2 by the policy, 1 to regrow (no attempt spent)" in shown


def test_up_refuses_an_unknown_ddp_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused while parsing its options: no Ray, no server, exit 2 naming the choices."""
    monkeypatch.setenv("COMMONPOOL_STATE_DIR", str(tmp_path))
    refused = run(None, "up", "--ddp-start", "lukewarm", check=False)
    assert refused.returncode == 2
    assert "lukewarm" in refused.stderr and "trainer" in refused.stderr
    assert not any(tmp_path.iterdir())  # nothing started, nothing written
