"""A manual clock and a sampler factory with no host hardware leaking in."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from commonpool.workers.telemetry.sampler import NodeEnergySampler


class ManualClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_sampler(
    clock: ManualClock, tmp_path: Path
) -> Callable[..., NodeEnergySampler]:
    """Sampler on an empty powercap tree, a fixed CPU load and a given (fake) NVML."""

    def build(nvml: Any = None, **overrides: Any) -> NodeEnergySampler:
        options: dict[str, Any] = {
            "nvml": nvml,
            "powercap_root": tmp_path / "powercap",
            "cpuinfo": "",
            "logical_cpus": 2,
            "cpu_utilization": lambda: 0.5,
            "clock": clock,
        }
        options.update(overrides)
        return NodeEnergySampler.probe(**options)

    return build
