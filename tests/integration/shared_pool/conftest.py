"""One real local pool (Ray head + two agents as separate processes) for every module
of this package: a pool's start and stop cost ~15 s, and these modules leave it as they
found it (each test waits for its jobs to end, so all resources are free again)."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from commonpool.api.local_pool import LocalPool


@pytest.fixture(scope="package")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPool]:
    with LocalPool(tmp_path_factory.mktemp("pool"), agents=2, cpus_per_agent=1.0,
                   log=io.StringIO()) as running:
        yield running
