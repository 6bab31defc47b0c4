"""Per-credential token buckets for the routes a client can hammer (submit, heartbeat).

In memory, per API process: with N replicas behind a balancer a client
gets up to N times the rate, which still bounds abuse; a shared limiter
(Redis, the database) would cost a round trip on the hottest path.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from commonpool.scheduler.domain.errors import RateLimited


@dataclass(frozen=True, slots=True)
class Rate:
    per_s: float
    burst: float

    @property
    def unlimited(self) -> bool:
        return self.per_s <= 0


class RateLimiter:
    """`check(bucket, key)` spends one token or raises `RateLimited` with a retry hint."""

    def __init__(self, rates: dict[str, Rate], max_keys: int = 100_000) -> None:
        self.rates = rates
        self.max_keys = max_keys
        self._state: dict[tuple[str, str], tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, bucket: str, key: str) -> None:
        rate = self.rates[bucket]
        if rate.unlimited:
            return
        now = time.monotonic()
        with self._lock:
            tokens, last = self._state.get((bucket, key), (rate.burst, now))
            tokens = min(rate.burst, tokens + (now - last) * rate.per_s)
            if tokens < 1.0:
                self._state[(bucket, key)] = (tokens, now)
                wait = math.ceil((1.0 - tokens) / rate.per_s)
                raise RateLimited(
                    f"too many {bucket} requests: at most {rate.per_s:g}/s "
                    f"(bursts of {rate.burst:g}) per credential",
                    retry_after_s=max(1, wait),
                )
            if len(self._state) >= self.max_keys:
                self._state.clear()
            self._state[(bucket, key)] = (tokens - 1.0, now)
