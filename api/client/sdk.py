"""The one typed HTTP client of commonpool, shared by the CLI, the agent and tests.

Methods take and return `commonpool.api.schemas` models; errors come back
as the domain's exception classes (see `errors.py`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from commonpool.scheduler.domain.states import JobState

from ..schemas import (
    AllocationRead,
    EnergyReportIn,
    EnrollmentTokenRead,
    EventRead,
    HeartbeatReply,
    JobEnergyRead,
    JobRead,
    JobSpec,
    LogLineRead,
    MetricRead,
    NodeEnroll,
    NodeEnrolled,
    NodeRead,
    Page,
    PoolSummaryRead,
    RayClusterInfo,
)
from .errors import ConnectionFailed, error_from_problem

M = TypeVar("M", bound=BaseModel)
API = "/api/v1"


def _bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


class Client:
    """A synchronous client; `token` is sent as a bearer credential."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"cannot reach {self.base_url}: {exc}") from exc
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"detail": response.text[:500]}
            raise error_from_problem(response.status_code, body)
        return response

    def _get(self, path: str, model: type[M], **kwargs: Any) -> M:
        return model.model_validate(self._request("GET", path, **kwargs).json())

    def _post(self, path: str, model: type[M], body: Any = None) -> M:
        return model.model_validate(self._request("POST", path, json=body).json())

    def _get_list(self, path: str, model: type[M], **kwargs: Any) -> list[M]:
        data = self._request("GET", path, **kwargs).json()
        return TypeAdapter(list[model]).validate_python(data)  # type: ignore[valid-type]

    # -- jobs -------------------------------------------------------------
    def submit_job(self, spec: JobSpec) -> JobRead:
        return self._post(f"{API}/jobs", JobRead, spec.model_dump(mode="json", exclude_unset=True))

    def get_job(self, job_id: str) -> JobRead:
        return self._get(f"{API}/jobs/{job_id}", JobRead)

    def list_jobs_page(
        self,
        *,
        states: tuple[str, ...] = (),
        owner: str | None = None,
        project: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[JobRead]:
        params: dict[str, Any] = {"limit": limit}
        if states:
            params["state"] = list(states)
        for key, value in (("owner", owner), ("project", project), ("cursor", cursor)):
            if value:
                params[key] = value
        return self._get(f"{API}/jobs", Page[JobRead], params=params)

    def list_jobs(self, **filters: Any) -> Iterator[JobRead]:
        """Every matching job, newest first, fetching pages as needed."""
        cursor = None
        while True:
            page = self.list_jobs_page(cursor=cursor, **filters)
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def cancel_job(self, job_id: str, reason: str | None = None) -> JobRead:
        return self._post(f"{API}/jobs/{job_id}/cancel", JobRead, {"reason": reason})

    def job_events(self, job_id: str) -> list[EventRead]:
        return self._get_list(f"{API}/jobs/{job_id}/events", EventRead)

    def job_allocations(self, job_id: str) -> list[AllocationRead]:
        return self._get_list(f"{API}/jobs/{job_id}/allocations", AllocationRead)

    def job_energy(self, job_id: str) -> JobEnergyRead:
        return self._get(f"{API}/jobs/{job_id}/energy", JobEnergyRead)

    def job_metrics(self, job_id: str, after: int = 0) -> list[MetricRead]:
        return self._get_list(f"{API}/jobs/{job_id}/metrics", MetricRead, params={"after": after})

    def report_metrics(
        self, job_id: str, step: int, values: dict[str, float], attempt: int | None = None
    ) -> MetricRead:
        return self._post(
            f"{API}/jobs/{job_id}/metrics",
            MetricRead,
            {"step": step, "values": values, "attempt": attempt},
        )

    def append_logs(self, job_id: str, lines: list[tuple[str, str]]) -> None:
        self._request(
            "POST",
            f"{API}/jobs/{job_id}/logs",
            json={"lines": [{"stream": s, "line": ln} for s, ln in lines]},
        )

    def logs(self, job_id: str, *, tail: int | None = None, after: int = 0) -> list[LogLineRead]:
        params: dict[str, Any] = {"after": after}
        if tail is not None:
            params["tail"] = tail
        return self._get_list(f"{API}/jobs/{job_id}/logs", LogLineRead, params=params)

    def follow_logs(self, job_id: str, *, tail: int | None = None) -> Iterator[LogLineRead]:
        """Lines as they arrive, until the job ends and its output is drained."""
        params: dict[str, Any] = {"follow": "true"}
        if tail is not None:
            params["tail"] = tail
        try:
            with self._http.stream(
                "GET",
                f"{API}/jobs/{job_id}/logs",
                params=params,
                timeout=httpx.Timeout(30.0, read=None),
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_from_problem(response.status_code, response.json())
                for raw in response.iter_lines():
                    if not raw:
                        continue
                    item = json.loads(raw)
                    if item.get("end"):
                        return
                    yield LogLineRead.model_validate(item)
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"cannot reach {self.base_url}: {exc}") from exc

    def wait(self, job_id: str, *, timeout_s: float = 3600, poll_s: float = 0.5) -> JobRead:
        """Poll until the job reaches a final state (or raise TimeoutError)."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.get_job(job_id)
            if JobState(job.state).terminal:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.state} after {timeout_s:.0f}s")
            time.sleep(poll_s)

    # -- nodes ------------------------------------------------------------
    def create_enrollment_token(self, ttl_s: int = 3600) -> EnrollmentTokenRead:
        return self._post(f"{API}/enrollment-tokens", EnrollmentTokenRead, {"ttl_s": ttl_s})

    def enroll(self, body: NodeEnroll) -> NodeEnrolled:
        return self._post(f"{API}/nodes/enroll", NodeEnrolled, body.model_dump(mode="json"))

    def heartbeat(
        self,
        node_id: str,
        credential: str,
        epoch: int,
        utilization: dict[str, float],
        energy: EnergyReportIn | None = None,
    ) -> HeartbeatReply:
        body: dict[str, Any] = {"epoch": epoch, "utilization": utilization}
        if energy is not None:
            body["energy"] = energy.model_dump(mode="json")
        response = self._request(
            "POST", f"{API}/nodes/{node_id}/heartbeat", json=body, headers=_bearer(credential)
        )
        return HeartbeatReply.model_validate(response.json())

    def leave(self, node_id: str, credential: str, reason: str | None = None) -> NodeRead:
        response = self._request(
            "POST",
            f"{API}/nodes/{node_id}/leave",
            json={"reason": reason},
            headers=_bearer(credential),
        )
        return NodeRead.model_validate(response.json())

    def ray_cluster(self, credential: str) -> RayClusterInfo:
        response = self._request("GET", f"{API}/pool/ray", headers=_bearer(credential))
        return RayClusterInfo.model_validate(response.json())

    def list_nodes(self) -> list[NodeRead]:
        return self._get_list(f"{API}/nodes", NodeRead)

    def get_node(self, node_id: str) -> NodeRead:
        return self._get(f"{API}/nodes/{node_id}", NodeRead)

    def drain_node(self, node_id: str, reason: str | None = None) -> NodeRead:
        return self._post(f"{API}/nodes/{node_id}/drain", NodeRead, {"reason": reason})

    def cordon_node(self, node_id: str, reason: str | None = None) -> NodeRead:
        return self._post(f"{API}/nodes/{node_id}/cordon", NodeRead, {"reason": reason})

    def uncordon_node(self, node_id: str) -> NodeRead:
        return self._post(f"{API}/nodes/{node_id}/uncordon", NodeRead)

    # -- pool -------------------------------------------------------------
    def pool_summary(self) -> PoolSummaryRead:
        return self._get(f"{API}/pool/summary", PoolSummaryRead)

    def ready(self) -> bool:
        try:
            self._request("GET", "/readyz")
        except Exception:
            return False
        return True
