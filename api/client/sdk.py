"""The one typed HTTP client of commonpool, shared by the CLI, the agent and tests.

Methods take and return `commonpool.api.schemas` models; errors come back
as the domain's exception classes (see `errors.py`).
"""

from __future__ import annotations

import json
import ssl
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from commonpool.scheduler.domain.states import ENDED_VALUES, JobState

from ..schemas import (
    AllocationRead,
    ArrayRead,
    ArtifactDetail,
    ArtifactRead,
    ArtifactUpdate,
    AuditRead,
    EnergyReportIn,
    EnrollmentTokenRead,
    EventRead,
    HeartbeatReply,
    JobEnergyRead,
    JobRead,
    JobSpec,
    LogLineRead,
    MemberRead,
    MetricRead,
    NodeEnroll,
    NodeEnrolled,
    NodeRead,
    Page,
    PoolFairnessRead,
    PoolSummaryRead,
    PoolUsageRead,
    PredictResponse,
    ProjectCreate,
    ProjectRead,
    QuotaFields,
    RayClusterInfo,
    ServiceRead,
    TokenCreate,
    TokenCreated,
    TokenRead,
    UserRead,
    WhoAmI,
)
from . import transfer
from .errors import ConnectionFailed, error_from_problem

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
API = "/api/v1"
SHA256_HEADER = "X-Content-SHA256"
DOWNLOAD_ATTEMPTS = 3


class ArtifactCorrupted(RuntimeError):
    """Every download of an artifact gave bytes that do not match its sha256."""


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
        ca_file: str | Path | None = None,
        ca_pem: str | None = None,
    ) -> None:
        """`ca_file` (a CA bundle file) or `ca_pem` (its text): verify an https server
        against this CA instead of the system's."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        verify: ssl.SSLContext | bool = True
        if ca_file is not None:
            verify = ssl.create_default_context(cafile=str(ca_file))
        elif ca_pem is not None:
            verify = ssl.create_default_context(cadata=ca_pem)
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=timeout,
            transport=transport,
            verify=verify,
        )

    @property
    def authorization(self) -> str | None:
        """The `Authorization` header this client sends (for a raw HTTP call beside it)."""
        return self._http.headers.get("Authorization")

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

    # -- artifacts --------------------------------------------------------
    def list_artifacts(
        self,
        *,
        kind: str | None = None,
        query: str | None = None,
        project: str | None = None,
        limit: int = 50,
    ) -> list[ArtifactRead]:
        params = {"kind": kind, "q": query, "project": project, "limit": limit}
        page = self._get(
            f"{API}/artifacts", Page[ArtifactRead],
            params={k: v for k, v in params.items() if v is not None},
        )
        return page.items

    def get_artifact(self, ref: str) -> ArtifactDetail:
        return self._get(f"{API}/artifacts/{ref}", ArtifactDetail)

    def update_artifact(self, ref: str, changes: ArtifactUpdate) -> ArtifactRead:
        body = changes.model_dump(mode="json", exclude_unset=True)
        return ArtifactRead.model_validate(
            self._request("PATCH", f"{API}/artifacts/{ref}", json=body).json()
        )

    def upload_artifact(self, source: Path, name: str, **metadata: str) -> ArtifactRead:
        """Publish a file or directory (packed as a tar) as the next version of `name`;
        `metadata`: kind, format, visibility, project, licence, description. The server
        checks the bytes against the sha256 computed here."""
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "artifact.tar"
            transfer.pack(source, archive)
            with open(archive, "rb") as body:
                response = self._request(
                    "POST",
                    f"{API}/artifacts",
                    params={"name": name, **metadata},
                    headers={
                        SHA256_HEADER: transfer.file_sha256(archive),
                        "Content-Type": "application/x-tar",
                    },
                    content=transfer.chunks(body),
                )
        return ArtifactRead.model_validate(response.json())

    def download_artifact(self, ref: str, sha256: str, target: Path) -> None:
        """`ref`'s bytes into `target`, resuming a partial file, until they hash to
        `sha256`; bytes that do not match are thrown away and fetched again (3 tries)."""
        for _ in range(DOWNLOAD_ATTEMPTS):
            self._resume_download(ref, target)
            if transfer.file_sha256(target) == sha256:
                return
            target.unlink()
        raise ArtifactCorrupted(
            f"artifact {ref}: {DOWNLOAD_ATTEMPTS} downloads did not match sha256 {sha256}"
        )

    def _resume_download(self, ref: str, target: Path) -> None:
        have = target.stat().st_size if target.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            with self._http.stream(
                "GET", f"{API}/artifacts/{ref}/content", headers=headers
            ) as response:
                if response.status_code == 416:  # the partial file is already whole (or more)
                    return
                if response.status_code >= 400:
                    response.read()
                    raise error_from_problem(response.status_code, response.json())
                with open(target, "ab" if response.status_code == 206 else "wb") as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"cannot reach {self.base_url}: {exc}") from exc

    # -- services ---------------------------------------------------------
    def get_service(self, job_id: str) -> ServiceRead:
        return self._get(f"{API}/services/{job_id}", ServiceRead)

    def predict(self, job_id: str, inputs: list[list[float]]) -> PredictResponse:
        return self._post(
            f"{API}/services/{job_id}/predict", PredictResponse, {"inputs": inputs}
        )

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
        array: str | None = None,
        kind: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[JobRead]:
        """One page of jobs, newest first; `array` keeps the tasks of that job array."""
        params: dict[str, Any] = {"limit": limit}
        if states:
            params["state"] = list(states)
        for key, value in (
            ("owner", owner),
            ("project", project),
            ("array", array),
            ("kind", kind),
            ("cursor", cursor),
        ):
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

    # -- job arrays ---------------------------------------------------------
    def submit_array(self, spec: JobSpec) -> ArrayRead:
        """Submit a spec with `array` or `sweep`: all its tasks are queued, or none."""
        return self._post(
            f"{API}/arrays", ArrayRead, spec.model_dump(mode="json", exclude_unset=True)
        )

    def get_array(self, array_id: str) -> ArrayRead:
        return self._get(f"{API}/arrays/{array_id}", ArrayRead)

    def cancel_array(self, array_id: str, reason: str | None = None) -> ArrayRead:
        """Cancel every task of the array that is not final yet."""
        return self._post(f"{API}/arrays/{array_id}/cancel", ArrayRead, {"reason": reason})

    def wait_array(
        self, array_id: str, *, timeout_s: float = 86400, poll_s: float = 2.0
    ) -> ArrayRead:
        """Poll until every task is final (or raise TimeoutError)."""
        final = set(ENDED_VALUES)
        return _poll_until(
            lambda: self.get_array(array_id),
            lambda array: set(array.by_state) <= final,
            lambda _: f"array {array_id} not finished after {timeout_s:.0f}s",
            timeout_s,
            poll_s,
        )

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
        return _poll_until(
            lambda: self.get_job(job_id),
            lambda job: JobState(job.state).terminal,
            lambda job: f"job {job_id} still {job.state} after {timeout_s:.0f}s",
            timeout_s,
            poll_s,
        )

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

    def drain_node(
        self, node_id: str, reason: str | None = None, *, token: str | None = None
    ) -> NodeRead:
        """Drain a node: an admin's call, or its own agent's (`token` = node credential)."""
        headers = _bearer(token) if token else None
        response = self._request(
            "POST", f"{API}/nodes/{node_id}/drain", json={"reason": reason}, headers=headers
        )
        return NodeRead.model_validate(response.json())

    def cordon_node(self, node_id: str, reason: str | None = None) -> NodeRead:
        return self._post(f"{API}/nodes/{node_id}/cordon", NodeRead, {"reason": reason})

    def uncordon_node(self, node_id: str) -> NodeRead:
        return self._post(f"{API}/nodes/{node_id}/uncordon", NodeRead)

    def revoke_node(self, node_id: str, reason: str | None = None) -> NodeRead:
        return self._post(f"{API}/nodes/{node_id}/revoke", NodeRead, {"reason": reason})

    # -- identity ----------------------------------------------------------
    def whoami(self) -> WhoAmI:
        return self._get(f"{API}/whoami", WhoAmI)

    def create_user(self, name: str, *, admin: bool = False) -> UserRead:
        return self._post(f"{API}/admin/users", UserRead, {"name": name, "admin": admin})

    def list_users(self) -> list[UserRead]:
        return self._get_list(f"{API}/admin/users", UserRead)

    def create_project(self, body: ProjectCreate) -> ProjectRead:
        return self._post(f"{API}/admin/projects", ProjectRead, body.model_dump(mode="json"))

    def list_projects(self) -> list[ProjectRead]:
        return self._get_list(f"{API}/projects", ProjectRead)

    def set_quota(self, project: str, quota: QuotaFields) -> ProjectRead:
        response = self._request(
            "PUT", f"{API}/admin/projects/{project}/quota", json=quota.model_dump(mode="json")
        )
        return ProjectRead.model_validate(response.json())

    def set_member(self, project: str, user: str, role: str = "member") -> MemberRead:
        response = self._request(
            "PUT", f"{API}/projects/{project}/members/{user}", json={"role": role}
        )
        return MemberRead.model_validate(response.json())

    def remove_member(self, project: str, user: str) -> None:
        self._request("DELETE", f"{API}/projects/{project}/members/{user}")

    def list_members(self, project: str) -> list[MemberRead]:
        return self._get_list(f"{API}/projects/{project}/members", MemberRead)

    def create_token(self, body: TokenCreate) -> TokenCreated:
        return self._post(f"{API}/admin/tokens", TokenCreated, body.model_dump(mode="json"))

    def list_tokens(self, user: str | None = None) -> list[TokenRead]:
        params = {"user": user} if user else {}
        return self._get_list(f"{API}/admin/tokens", TokenRead, params=params)

    def revoke_token(self, token_id: str) -> TokenRead:
        return self._post(f"{API}/admin/tokens/{token_id}/revoke", TokenRead)

    def audit_page(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[AuditRead]:
        params: dict[str, Any] = {"limit": limit}
        for key, value in (
            ("actor", actor),
            ("action", action),
            ("target", target),
            ("cursor", cursor),
        ):
            if value:
                params[key] = value
        return self._get(f"{API}/admin/audit", Page[AuditRead], params=params)

    # -- pool -------------------------------------------------------------
    def pool_summary(self) -> PoolSummaryRead:
        return self._get(f"{API}/pool/summary", PoolSummaryRead)

    def ready(self) -> bool:
        try:
            self._request("GET", "/readyz")
        except Exception:
            return False
        return True

    def pool_fairness(self) -> PoolFairnessRead:
        """Per project: weight and entitled share vs usage share, energy used, donor credits."""
        return self._get(f"{API}/pool/fairness", PoolFairnessRead)

    def pool_usage(self, since: datetime | None = None) -> PoolUsageRead:
        """Resources by type, per-node holdings and power now; jobs' energy since `since`."""
        params = {"since": since.isoformat()} if since is not None else {}
        return self._get(f"{API}/pool/usage", PoolUsageRead, params=params)


def _poll_until(
    fetch: Callable[[], T],
    done: Callable[[T], bool],
    timeout_message: Callable[[T], str],
    timeout_s: float,
    poll_s: float,
) -> T:
    """`fetch()` every `poll_s` until `done`; TimeoutError (with the last value's message)
    after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(timeout_message(value))
        time.sleep(poll_s)
