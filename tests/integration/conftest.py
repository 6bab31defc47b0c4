"""Fixtures of the integration tests; `shared_pool/` runs its modules on one real pool."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from commonpool.api.client.sdk import Client
from commonpool.api.local_pool import LocalPool

TESTJOBS = '''
import time
from commonpool.workers import job


def crash(config):
    ctx = job.context()
    if ctx.rank == config.get("rank", 0):
        raise ValueError("deliberate failure from the test job")
    time.sleep(30)


def slow(config):
    ctx = job.context()
    for step in range(1, config.get("steps", 600) + 1):
        time.sleep(0.5)
        job.report({"loss": 1.0 / step}, step=step)


def where(config):
    ctx = job.context()
    print(f"WHERE rank={ctx.rank} node={ctx.node_label}", flush=True)
    job.report({"loss": 0.0}, step=1)
'''


@pytest.fixture
def client(pool: LocalPool) -> Iterator[Client]:
    with pool.client() as c:
        yield c


@pytest.fixture(scope="module")
def job_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory shipped with jobs (Ray runtime_env working_dir)."""
    return write_testjobs(tmp_path_factory.mktemp("jobcode"))


def write_testjobs(directory: Path) -> Path:
    """`directory` with the test jobs' module `testjobs` in it."""
    (directory / "testjobs.py").write_text(TESTJOBS)
    return directory
