"""Request statistics of the services this API process proxied: counts and latencies.

Every inference request passes through the API (Serve's own port is internal
to the pool), so the API measures what a client sees: end-to-end latency
including the proxy hop. Figures are per API process (like the rate
limits); each process also writes them to the registry as the service
job's metrics every `flush_every_s`, so they outlive the process and show
in `commonpool logs`/metrics.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

RECENT = 4096  # latencies kept per service for the percentiles
RATE_WINDOW_S = 10.0


@dataclass
class _Service:
    requests: int = 0
    errors: int = 0
    rows: int = 0
    first_at: float | None = None
    recent: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=RECENT))
    flushed_at: float = 0.0
    reports: int = 0


@dataclass(frozen=True)
class ServiceFigures:
    requests: int
    errors: int
    rows: int
    requests_per_s: float  # over the last RATE_WINDOW_S
    latency_p50_ms: float | None
    latency_p99_ms: float | None

    def as_metrics(self) -> dict[str, float]:
        values = {
            "requests": float(self.requests),
            "errors": float(self.errors),
            "rows": float(self.rows),
            "requests_per_s": self.requests_per_s,
        }
        if self.latency_p50_ms is not None and self.latency_p99_ms is not None:
            values |= {"latency_p50_ms": self.latency_p50_ms, "latency_p99_ms": self.latency_p99_ms}
        return values


class ServiceStats:
    def __init__(self, flush_every_s: float = 10.0) -> None:
        self.flush_every_s = flush_every_s
        self._services: dict[str, _Service] = {}
        self._lock = threading.Lock()

    def record(self, job_id: str, latency_s: float, rows: int, ok: bool) -> bool:
        """Count one request; True when its figures are due to be written to the registry."""
        now = time.monotonic()
        with self._lock:
            service = self._services.setdefault(job_id, _Service(flushed_at=now))
            service.requests += 1
            service.errors += 0 if ok else 1
            service.rows += rows
            service.first_at = service.first_at or now
            service.recent.append((now, latency_s))
            if now - service.flushed_at < self.flush_every_s:
                return False
            service.flushed_at = now
            service.reports += 1
            return True

    def figures(self, job_id: str) -> ServiceFigures:
        now = time.monotonic()
        with self._lock:
            service = self._services.get(job_id) or _Service()
            recent = list(service.recent)
            counts = (service.requests, service.errors, service.rows)
        latencies = np.array([latency for _, latency in recent]) * 1000
        in_window = sum(1 for at, _ in recent if now - at <= RATE_WINDOW_S)
        return ServiceFigures(
            *counts,
            requests_per_s=in_window / RATE_WINDOW_S,
            latency_p50_ms=float(np.percentile(latencies, 50)) if len(latencies) else None,
            latency_p99_ms=float(np.percentile(latencies, 99)) if len(latencies) else None,
        )

    def report_step(self, job_id: str) -> int:
        """The metric step of the next registry write (step 1 is the driver's "ready")."""
        with self._lock:
            return 1 + self._services[job_id].reports
