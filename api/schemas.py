"""Request and response models of /api/v1, shared by the server and the client.

Kept apart from the tables: a column can change without changing the API,
and every response is validated against these shapes (and the OpenAPI).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from commonpool.scheduler.spec import JobSpec, LabelKey, LabelValue, Name, ResourcesSpec

T = TypeVar("T")


class _Read(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class _Write(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class JobRead(_Read):
    id: str
    name: str
    owner: str
    project: str
    priority: int
    state: str
    entrypoint: str
    args: dict[str, Any]
    working_dir: str | None
    workers_min: int
    workers_max: int
    cpus_per_worker: float
    memory_bytes_per_worker: int
    gpus_per_worker: int
    gpu_type: str | None
    label_selector: dict[str, str]
    max_runtime_s: int | None
    deadline_at: datetime | None
    max_attempts: int
    attempt: int
    submitted_at: datetime
    placed_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    pending_reason: str | None
    exit_reason: str | None
    checkpoint_uri: str | None
    metrics: dict[str, Any]


class CancelRequest(_Write):
    reason: str | None = Field(default=None, max_length=500)


class EventRead(_Read):
    id: int
    from_state: str | None
    to_state: str
    actor: str
    reason: str | None
    created_at: datetime


class AllocationRead(_Read):
    node_id: str
    attempt: int
    rank: int
    cpus: float
    memory_bytes: int
    gpus: int
    created_at: datetime
    released_at: datetime | None


class LogLineIn(_Write):
    stream: str = Field(default="stdout", pattern=r"^(stdout|stderr|system)$")
    line: str = Field(max_length=100_000)


class LogBatch(_Write):
    lines: list[LogLineIn] = Field(max_length=10_000)


class LogLineRead(_Read):
    id: int
    stream: str
    line: str
    created_at: datetime


class MetricIn(_Write):
    step: int = Field(ge=0, le=10**12)
    values: dict[str, float] = Field(max_length=100)
    attempt: int | None = Field(default=None, ge=1)


class MetricRead(_Read):
    id: int
    attempt: int
    step: int
    values: dict[str, float]
    created_at: datetime


class EnrollmentTokenCreate(_Write):
    ttl_s: int = Field(default=3600, gt=0, le=30 * 86400)


class EnrollmentTokenRead(BaseModel):
    id: str
    token: str = Field(description="Shown once; only its hash is stored.")
    expires_at: datetime


class NodeEnroll(_Write):
    token: str = Field(min_length=10, max_length=200)
    name: str = Field(min_length=1, max_length=200)
    cpus: float = Field(gt=0, le=4096)
    memory_bytes: int = Field(ge=0, le=64 * 2**40)
    gpus: int = Field(default=0, ge=0, le=64)
    gpu_model: str | None = Field(default=None, max_length=100)
    gpu_memory_bytes: int = Field(default=0, ge=0, le=2**40)
    gpu_type: Name | None = None
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict, max_length=50)
    region: Name | None = None
    donor_project: Name | None = None
    pue: float = Field(default=1.0, ge=1.0, le=3.0)


class NodeRead(_Read):
    id: str
    name: str
    state: str
    cpus: float
    memory_bytes: int
    gpus: int
    gpu_model: str | None
    gpu_memory_bytes: int
    gpu_type: str | None
    labels: dict[str, str]
    region: str | None
    donor_project: str | None
    pue: float
    lease_epoch: int
    last_heartbeat_at: datetime | None
    lease_expires_at: datetime | None
    utilization: dict[str, Any]
    created_at: datetime


class NodeEnrolled(BaseModel):
    node: NodeRead
    credential: str = Field(
        description="The node's secret; shown once, keep it in the agent state."
    )


class Heartbeat(_Write):
    epoch: int = Field(ge=1)
    utilization: dict[str, float] = Field(default_factory=dict, max_length=50)


class HeldAllocation(_Read):
    job_id: str
    attempt: int
    rank: int


class HeartbeatReply(BaseModel):
    """The node as the server sees it, and the work it should be running."""

    node: NodeRead
    allocations: list[HeldAllocation]


class RayClusterInfo(BaseModel):
    address: str = Field(description="GCS address of the pool's Ray head (host:port).")
    auth_token: str | None = Field(
        default=None, description="Ray token auth secret; only enrolled nodes receive it."
    )


class NodeAction(_Write):
    reason: str | None = Field(default=None, max_length=500)


class ResourceTotalsRead(_Read):
    cpus: float
    memory_bytes: int
    gpus: int


class PoolSummaryRead(_Read):
    jobs_by_state: dict[str, int]
    nodes_by_state: dict[str, int]
    total: ResourceTotalsRead
    used: ResourceTotalsRead
    free: ResourceTotalsRead


__all__ = [
    "AllocationRead",
    "CancelRequest",
    "EnrollmentTokenCreate",
    "EnrollmentTokenRead",
    "EventRead",
    "Heartbeat",
    "HeartbeatReply",
    "HeldAllocation",
    "JobRead",
    "JobSpec",
    "LogBatch",
    "LogLineRead",
    "MetricIn",
    "MetricRead",
    "NodeAction",
    "NodeEnroll",
    "NodeEnrolled",
    "NodeRead",
    "Page",
    "PoolSummaryRead",
    "RayClusterInfo",
    "ResourcesSpec",
]
