"""`commonpool up` as a donor-free all-in-one pool, run as the real command: its
`--ddp-start warm` reaches the runner (a ddp job then keeps its checkpoints in the warm
run's folder), and SIGTERM brings the whole pool down."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from commonpool.api.client.sdk import Client
from commonpool.scheduler.spec import JobSpec

pytestmark = [pytest.mark.ray, pytest.mark.slow]

POOL_UP = re.compile(r"pool up at (\S+)")
UP_WARM = ["up", "--agents", "1", "--cpus", "2", "--ddp-start", "warm"]


def _wait_for_url(up: subprocess.Popen[str], timeout_s: float) -> str:
    assert up.stdout is not None
    deadline = time.monotonic() + timeout_s
    seen = []
    while time.monotonic() < deadline:
        line = up.stdout.readline()
        if not line:
            break  # the command exited
        seen.append(line)
        if found := POOL_UP.search(line):
            # keep reading, so a full pipe never blocks the pool's output
            threading.Thread(target=up.stdout.read, daemon=True).start()
            return found.group(1)
    up.kill()
    raise AssertionError("commonpool up did not come up:\n" + "".join(seen))


def test_up_ddp_start_warm_starts_ddp_jobs_warm(tmp_path: Path) -> None:
    env = {**os.environ, "COMMONPOOL_STATE_DIR": str(tmp_path), "COLUMNS": "200"}
    env.pop("COMMONPOOL_DDP_START", None)
    up = subprocess.Popen(
        [sys.executable, "-m", "commonpool", *UP_WARM],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        url = _wait_for_url(up, timeout_s=120)
        token = (tmp_path / "admin-token").read_text().strip()
        with Client(url, token=token) as client:
            job = client.submit_job(JobSpec(
                name="digits-up-warm", entrypoint="commonpool.workers.examples.digits_mlp:train",
                workers=2, resources={"cpus": 1}, args={"epochs": 2}))  # fmt: skip
            final = client.wait(job.id, timeout_s=180)
            assert final.state == "SUCCEEDED", final.exit_reason
            # Ray Train would keep them in its own run folder: this is the warm run's.
            assert final.checkpoint_uri is not None
            assert final.checkpoint_uri.endswith(f"{job.id}/warm"), final.checkpoint_uri
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=90) == 0
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()

