"""Agents back off exponentially with jitter when the server is unavailable."""

from __future__ import annotations

import random

from commonpool.workers.agent.main import BACKOFF_MAX_S, retry_delay


def test_healthy_agent_beats_at_its_interval() -> None:
    assert retry_delay(0, 5.0) == 5.0


def test_failures_back_off_exponentially_with_jitter_and_a_cap() -> None:
    rng = random.Random(7)
    delays = [retry_delay(n, 2.0, rng) for n in range(1, 9)]
    for n, delay in enumerate(delays, start=1):
        ceiling = min(BACKOFF_MAX_S, 2.0 * 2 ** min(n, 5))
        assert ceiling / 2 <= delay <= ceiling
    assert len({round(retry_delay(3, 2.0, rng), 6) for _ in range(20)}) > 10  # jittered
