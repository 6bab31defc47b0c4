"""One real local pool (Ray head + two agents as separate processes) for every module
of this package: a pool's start and stop cost ~15 s, and these modules leave it as they
found it (each test waits for its jobs to end, so all resources are free again)."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator

import pytest

from commonpool.api.local_pool import LocalPool
from tests.integration.conftest import write_testjobs


@pytest.fixture(scope="package")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPool]:
    """The pool; its nodes also find the test jobs (`testjobs`) on their PYTHONPATH, as
    code installed on donors' machines, for jobs that ship no working_dir (warm starts)."""
    code = write_testjobs(tmp_path_factory.mktemp("installed-code"))
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(code), saved) if p)
    try:
        with LocalPool(tmp_path_factory.mktemp("pool"), agents=2, cpus_per_agent=1.0,
                       log=io.StringIO()) as running:
            yield running
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


@pytest.fixture
def warm(pool: LocalPool) -> Iterator[LocalPool]:
    """The pool starting ddp jobs warm (`ddp_start = "warm"`) for one test."""
    assert pool.runner is not None
    pool.runner.warm_ddp = True
    try:
        yield pool
    finally:
        pool.runner.warm_ddp = False
