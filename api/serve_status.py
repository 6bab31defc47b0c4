"""Ray Serve's view of the pool's services, from Ray's dashboard, cached per API process.

`GET /services/{id}` shows each service's Serve status and replicas running,
and the dashboard's Services page polls it every few seconds per open tab.
One dashboard call answers for every application, so the answer is kept for
`ttl_s` and shared by all callers (one caller fetches while the others wait
for its answer instead of each calling Ray). The call is made outside any
database session: a slow or dead dashboard must not hold registry
connections.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

TTL_S = 2.0
TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ApplicationStatus:
    """Serve's status of one application (None when Ray could not be asked)."""

    status: str | None
    replicas_running: int | None


UNKNOWN = ApplicationStatus(None, None)
NOT_DEPLOYED = ApplicationStatus("NOT_DEPLOYED", 0)


class ServeStatus:
    """Serve applications by name, fetched from `dashboard_url` at most every `ttl_s`."""

    def __init__(
        self, dashboard_url: str | None, token: str | None = None,
        ttl_s: float = TTL_S, timeout_s: float = TIMEOUT_S,
    ) -> None:
        self.dashboard_url = dashboard_url.rstrip("/") if dashboard_url else None
        self.token = token
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self._fetch_lock = threading.Lock()
        self._applications: dict[str, Any] | None = None
        self._fetched_at = float("-inf")
        self.fetches = 0  # how many times Ray was asked (the cache's effect, for tests)

    def of(self, application: str) -> ApplicationStatus:
        """The application's status and replicas RUNNING now; `UNKNOWN` when this pool has
        no dashboard or it does not answer."""
        if self.dashboard_url is None:
            return UNKNOWN
        applications = self._current()
        if applications is None:
            return UNKNOWN
        found = applications.get(application)
        if found is None:
            return NOT_DEPLOYED
        running = sum(
            1
            for deployment in (found.get("deployments") or {}).values()
            for replica in deployment.get("replicas") or []
            if replica.get("state") == "RUNNING"
        )
        return ApplicationStatus(found.get("status"), running)

    def _current(self) -> dict[str, Any] | None:
        with self._fetch_lock:
            if time.monotonic() - self._fetched_at >= self.ttl_s:
                self._applications = self._fetch()
                self._fetched_at = time.monotonic()
            return self._applications

    def _fetch(self) -> dict[str, Any] | None:
        self.fetches += 1
        try:
            response = httpx.get(
                f"{self.dashboard_url}/api/serve/applications/",
                headers={"Authorization": f"Bearer {self.token}"} if self.token else {},
                timeout=self.timeout_s,
            )
            response.raise_for_status()
            return response.json().get("applications") or {}
        except (httpx.HTTPError, ValueError):
            return None
