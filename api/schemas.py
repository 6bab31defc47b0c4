"""Request and response models of /api/v1, shared by the server and the client.

Kept apart from the tables: a column can change without changing the API,
and every response is validated against these shapes (and the OpenAPI).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, computed_field, model_validator

from commonpool.scheduler.domain.artifacts import ArtifactKind, Visibility
from commonpool.scheduler.domain.principal import USER_SCOPES, Role, Scope
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
    kind: str
    entrypoint: str | None
    command: list[str] | None
    array_id: str | None
    array_index: int | None
    array_limit: int | None
    args: dict[str, Any]
    working_dir: str | None
    workers_min: int
    workers_max: int
    cpus_per_worker: float
    memory_bytes_per_worker: int
    gpus_per_worker: int
    gpu_type: str | None
    job_type: str | None
    label_selector: dict[str, str]
    max_runtime_s: int | None
    deadline_at: datetime | None
    max_attempts: int
    framework: str
    carbon: str
    carbon_suspensions: int
    regrows: int
    policy_preemptions: int
    attempt: int
    submitted_at: datetime
    placed_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    pending_reason: str | None
    exit_reason: str | None
    checkpoint_uri: str | None
    publish: str | None
    metrics: dict[str, Any]


MAX_PREDICT_ROWS = 4096
MAX_PREDICT_FEATURES = 65_536


class PredictRequest(_Write):
    """Rows of float features, one prediction each (all rows of one width)."""

    inputs: list[Annotated[list[float], Field(min_length=1, max_length=MAX_PREDICT_FEATURES)]] = (
        Field(min_length=1, max_length=MAX_PREDICT_ROWS)
    )

    @model_validator(mode="after")
    def _one_width(self) -> PredictRequest:
        if len({len(row) for row in self.inputs}) > 1:
            raise ValueError("every row of inputs must have the same number of features")
        return self


class PredictResponse(_Read):
    """The model's output row for each input row, its argmax, and which model answered."""

    outputs: list[list[float]]
    predictions: list[int]
    model: str


class ServiceRead(BaseModel):
    """A served model: its job, where to send requests, and what serving it has cost."""

    job: JobRead
    model: str | None
    route: str
    replicas: int
    serve_status: str | None = Field(description="Ray Serve's status of it (None: unknown).")
    replicas_running: int | None = Field(
        description="Replicas up now: 0 when scaled to zero after idle (None: unknown)."
    )
    requests: int
    errors: int
    requests_per_s: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    energy_kwh: float
    co2e_g: float
    kwh_per_1000_requests: float | None
    co2e_g_per_1000_requests: float | None


class ArtifactRead(_Read):
    """A model or dataset version; `ref` (`name@version`) is what jobs and commands name."""

    id: str
    name: str
    version: int
    kind: ArtifactKind
    format: str
    sha256: str
    size_bytes: int
    project: str
    owner: str
    visibility: Visibility
    licence: str | None
    description: str | None
    produced_by_job: str | None
    downloads: int
    created_at: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


class ArtifactDetail(ArtifactRead):
    """One version with its model card (lineage, training, energy and carbon, reuse)."""

    card: dict[str, Any]


class ArtifactUpdate(_Write):
    """What the owner (or a project admin) may change after publishing; the bytes never."""

    visibility: Visibility | None = None
    licence: str | None = Field(default=None, max_length=100)
    description: str | None = Field(default=None, max_length=2000)


class ArrayRead(_Read):
    """A job array or sweep at a glance; its tasks are jobs (`GET /jobs?array=ID`)."""

    id: str
    name: str
    project: str
    owner: str
    tasks: int = Field(description="How many tasks the array has.")
    limit: int | None = Field(description="At most this many tasks hold resources at once.")
    by_state: dict[str, int] = Field(description="Tasks per state, e.g. {\"QUEUED\": 95}.")


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


MAX_ENERGY_INTERVALS = 120
MAX_ENERGY_JOBS = 32
_JOULES = Field(ge=0, le=1e12)


class JobEnergyIn(_Write):
    """One job's metered share of an interval (before the node's PUE)."""

    joules: float = _JOULES
    estimated_j: float = _JOULES


class EnergyIntervalIn(_Write):
    """A node's energy over [start, end): total = sum(jobs) + idle + other."""

    start: AwareDatetime
    end: AwareDatetime
    total_j: float = _JOULES
    idle_j: float = _JOULES
    other_j: float = _JOULES
    estimated_j: float = _JOULES
    cpu_utilization: float | None = Field(default=None, ge=0, le=1)
    jobs: dict[Name, JobEnergyIn] = Field(default_factory=dict, max_length=MAX_ENERGY_JOBS)

    @model_validator(mode="after")
    def _consistent(self) -> EnergyIntervalIn:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        parts = self.idle_j + self.other_j + sum(j.joules for j in self.jobs.values())
        if parts > self.total_j * (1 + 1e-6) + 1e-6:
            raise ValueError(f"parts ({parts:g} J) exceed the interval total ({self.total_j:g} J)")
        return self


class EnergyReportIn(_Write):
    """Energy an agent measured since its last accepted heartbeat (bounded, aggregated)."""

    methods: dict[Name, Name] = Field(default_factory=dict, max_length=16)
    is_estimated: bool = True
    note: str | None = Field(default=None, max_length=1000)
    intervals: list[EnergyIntervalIn] = Field(default_factory=list, max_length=MAX_ENERGY_INTERVALS)


class Heartbeat(_Write):
    epoch: int = Field(ge=1)
    utilization: dict[str, float] = Field(default_factory=dict, max_length=50)
    energy: EnergyReportIn | None = Field(
        default=None, description="Energy since the last accepted heartbeat (optional)."
    )


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
    dashboard_url: str | None = Field(default=None, description="The Ray head's dashboard URL.")
    auth_token: str | None = Field(
        default=None, description="Ray token auth secret; only enrolled nodes receive it."
    )


class NodeAction(_Write):
    reason: str | None = Field(default=None, max_length=500)


class ResourceTotalsRead(_Read):
    cpus: float
    memory_bytes: int
    gpus: int


class PoolEnergyRead(_Read):
    """Lifetime energy of the pool's nodes; idle is the pool's idle cost, not charged to jobs."""

    busy_j: float = 0.0
    idle_j: float = 0.0
    other_j: float = Field(default=0.0, description="Donor activity that is not a pool job.")
    total_j: float = 0.0
    total_kwh: float = 0.0
    estimated_percent: float = 0.0
    busy_co2e_g: float = 0.0
    idle_co2e_g: float = 0.0
    other_co2e_g: float = 0.0
    co2e_g: float = 0.0


class CarbonSavedRead(_Read):
    """Carbon saved by carbon-aware timing: ended jobs the carbon policy deferred, their
    gCO2e against what they would have emitted at the intensity when first deferred."""

    jobs: int = 0
    co2e_g: float = 0.0
    baseline_co2e_g: float = 0.0
    saved_g: float = 0.0
    saved_percent: float | None = None


class PoolSummaryRead(_Read):
    jobs_by_state: dict[str, int]
    nodes_by_state: dict[str, int]
    total: ResourceTotalsRead
    used: ResourceTotalsRead
    free: ResourceTotalsRead
    energy: PoolEnergyRead = Field(default_factory=PoolEnergyRead)
    carbon_saved: CarbonSavedRead = Field(default_factory=CarbonSavedRead)


class EnergyPointRead(_Read):
    at: datetime
    energy_j: float
    co2e_g: float


class JobEnergyNodeRead(_Read):
    node_id: str
    node_name: str | None
    region: str | None
    pue: float
    energy_j: float
    kwh: float
    estimated_j: float
    is_estimated: bool
    co2e_g: float
    methods: dict[str, str]
    method_note: str | None
    intensity_source: str | None
    intensity_fallback: bool
    first_at: datetime
    last_at: datetime


class JobEnergyRead(_Read):
    """A job's energy = the sum of its per-node parts; carbon at each node's grid intensity."""

    job_id: str
    energy_j: float
    kwh: float
    co2e_g: float
    g_per_kwh: float | None = Field(description="Effective intensity: co2e_g / kwh.")
    estimated_percent: float
    is_estimated: bool
    methods: list[str]
    method_summary: str
    intensity_sources: list[str]
    intensity_fallback: bool
    first_at: datetime | None
    last_at: datetime | None
    samples: float | None
    samples_basis: str | None
    j_per_sample: float | None
    baseline_g_per_kwh: float | None = Field(
        default=None,
        description="g/kWh it would have run at when the carbon policy deferred it.",
    )
    baseline_co2e_g: float | None = Field(
        default=None, description="Its energy at the baseline intensity."
    )
    co2e_saved_g: float | None = Field(
        default=None, description="baseline_co2e_g - co2e_g (negative: waiting cost carbon)."
    )
    nodes: list[JobEnergyNodeRead]
    series: list[EnergyPointRead]


__all__ = [
    "AllocationRead",
    "ArrayRead",
    "CancelRequest",
    "CarbonSavedRead",
    "EnergyIntervalIn",
    "EnergyPointRead",
    "EnergyReportIn",
    "EnrollmentTokenCreate",
    "EnrollmentTokenRead",
    "EventRead",
    "Heartbeat",
    "HeartbeatReply",
    "HeldAllocation",
    "JobEnergyIn",
    "JobEnergyNodeRead",
    "JobEnergyRead",
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
    "PoolEnergyRead",
    "PoolSummaryRead",
    "RayClusterInfo",
    "ResourcesSpec",
]


class UserCreate(_Write):
    name: Name
    admin: bool = False


class UserRead(_Read):
    id: str
    name: str
    is_admin: bool
    created_at: datetime


class QuotaFields(_Write):
    """Per-project limits; null is unlimited."""

    max_cpus: float | None = Field(default=None, ge=0, le=1e9)
    max_gpus: int | None = Field(default=None, ge=0, le=1_000_000)
    max_queued_jobs: int | None = Field(default=None, ge=0, le=10_000_000)
    max_artifact_bytes: int | None = Field(default=None, ge=0, le=2**62)


class ProjectCreate(QuotaFields):
    name: Name
    weight: float = Field(default=1.0, gt=0, le=1e6)


class ProjectRead(_Read):
    id: str
    name: str
    weight: float
    max_cpus: float | None
    max_gpus: int | None
    max_queued_jobs: int | None
    max_artifact_bytes: int | None
    created_at: datetime


class MemberSet(_Write):
    role: Role = Role.MEMBER


class MemberRead(BaseModel):
    user: str
    role: Role


class TokenCreate(_Write):
    user: Name
    scopes: list[Scope] = Field(
        default_factory=lambda: list(USER_SCOPES), min_length=1, max_length=len(Scope)
    )
    ttl_s: int | None = Field(
        default=None, gt=0, le=10 * 365 * 86400, description="Lifetime; null never expires."
    )
    name: str = Field(default="", max_length=100)


class TokenRead(BaseModel):
    id: str
    user: str
    name: str
    scopes: list[str]
    expires_at: datetime | None
    revoked_at: datetime | None
    created_by: str
    created_at: datetime


class TokenCreated(TokenRead):
    token: str = Field(description="The secret: shown once, stored only as a hash.")


class AuditRead(_Read):
    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    project: str | None
    detail: dict[str, Any]


class WhoAmI(BaseModel):
    kind: str
    subject: str
    scopes: list[str]
    is_admin: bool
    projects: dict[str, str]
    node_id: str | None
    job_id: str | None


class ProjectFairnessRead(_Read):
    """One project's shares (fractions 0..1), what it holds and used, and what it donates."""

    project: str
    weight: float
    weight_share: float = Field(description="Weight over the sum of all projects' weights.")
    entitled_share: float = Field(
        description="The fair policy's water-fill of dominant share over projects with work."
    )
    usage_share: float = Field(description="Dominant share its active allocations hold.")
    cpus_used: float
    gpus_used: int
    memory_bytes_used: int
    running_jobs: int
    queued_jobs: int
    energy_j: float = Field(description="Lifetime energy of its jobs (PUE applied).")
    co2e_g: float
    donated_nodes: int = Field(description="Present nodes whose donor_project is this project.")
    donated_cpus: float
    donated_gpus: int
    donated_energy_j: float = Field(description="Energy its donated machines spent on pool jobs.")


class PoolFairnessRead(_Read):
    capacity: ResourceTotalsRead
    projects: list[ProjectFairnessRead]


class ResourceByTypeRead(_Read):
    kind: str = Field(description='"cpu" or "gpu".')
    type: str = Field(description='"cpu", a GPU type, or "untyped".')
    total: float
    used: float
    free: float = Field(description="On ONLINE nodes only.")


class NodeUsageRead(_Read):
    node_id: str
    name: str
    state: str
    cpus_used: float
    memory_bytes_used: int
    gpus_used: int
    jobs: int
    power_w: float | None = Field(description="The latest power reading (PUE applied).")
    power_at: datetime | None
    power_fresh: bool = Field(description="Read within a node lease, on a present node.")
    cpu_utilization: float | None
    is_estimated: bool


class PoolUsageRead(_Read):
    """Resources by type, per-node holdings and power now, and the jobs' energy since `since`."""

    at: datetime
    by_type: list[ResourceByTypeRead]
    nodes: list[NodeUsageRead]
    power_w: float = Field(description="Sum of the fresh power readings.")
    power_nodes: int
    power_estimated: bool
    since: datetime
    jobs_energy_j: float = Field(
        description="Jobs' energy since `since` (idle energy has no series: lifetime only)."
    )
    jobs_co2e_g: float
