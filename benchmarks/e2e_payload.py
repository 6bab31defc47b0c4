"""The training loop both sides of `benchmarks.e2e_start` run: it stamps its first step.

Shipped as a job's working directory, so it must import nothing from `benchmarks`.
"""

from __future__ import annotations

import time
from pathlib import Path

from commonpool.workers import job


def first_step(config: dict) -> None:
    ctx = job.context()
    if ctx.rank == 0:
        Path(config["stamp_file"]).write_text(repr(time.time()))
    job.report({"loss": 1.0}, step=1)
