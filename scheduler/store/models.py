"""SQLAlchemy 2 tables of the registry.

Conventions: plural snake_case tables, `*_at` UTC timestamps, `*_bytes`,
named constraints (so Alembic diffs are stable across SQLite and
PostgreSQL), and CHECKs that keep states and resources honest even against
a buggy writer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..domain.artifacts import ArtifactKind, InputRole, Visibility
from ..domain.states import JobState, NodeState

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _in(column: str, values: type[StrEnum]) -> str:
    listed = ", ".join(f"'{v.value}'" for v in values)
    return f"{column} IN ({listed})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    """A researcher or a pool admin; API tokens and project memberships hang off it."""

    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Project(Base):
    """A group that owns jobs and donates nodes; `weight` is its fair-share weight.

    Quotas are NULL when unlimited: `max_cpus`/`max_gpus` bound what the
    project's jobs hold at once, `max_queued_jobs` how many may wait,
    `max_artifact_bytes` how much its artifacts may store in all.
    """

    __tablename__ = "projects"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    max_cpus: Mapped[float | None] = mapped_column(Float)
    max_gpus: Mapped[int | None] = mapped_column(Integer)
    max_queued_jobs: Mapped[int | None] = mapped_column(Integer)
    max_artifact_bytes: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        CheckConstraint("weight > 0", name="weight_positive"),
        CheckConstraint(
            "(max_cpus IS NULL OR max_cpus >= 0) AND (max_gpus IS NULL OR max_gpus >= 0)"
            " AND (max_queued_jobs IS NULL OR max_queued_jobs >= 0)",
            name="quotas_nonneg",
        ),
        CheckConstraint(
            "max_artifact_bytes IS NULL OR max_artifact_bytes >= 0", name="artifact_quota_nonneg"
        ),
    )


class Membership(Base):
    """A user's role in a project: `member` submits and sees; `project-admin` also manages."""

    __tablename__ = "memberships"
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        PrimaryKeyConstraint("user_id", "project_id", name="pk_memberships"),
        CheckConstraint("role IN ('member', 'project-admin')", name="role_valid"),
        Index("ix_memberships_project", "project_id"),
    )


class ApiToken(Base):
    """A bearer token: a user's (scoped, expiring, revocable) or one job attempt's.

    Only the SHA-256 of the secret is kept (see `services.secrets`). A job
    token may only report that attempt's metrics and logs, and dies with it.
    """

    __tablename__ = "api_tokens"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(100), default="")
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    job_attempt: Mapped[int | None] = mapped_column(Integer)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        CheckConstraint("kind IN ('user', 'job')", name="kind_valid"),
        CheckConstraint(
            "(kind = 'user' AND user_id IS NOT NULL)"
            " OR (kind = 'job' AND job_id IS NOT NULL AND job_attempt IS NOT NULL)",
            name="owner_present",
        ),
        Index("ix_api_tokens_user", "user_id"),
    )


class AuditEvent(Base):
    """Who did what to what: the record admins query (`GET /api/v1/admin/audit`)."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(40))
    target: Mapped[str | None] = mapped_column(String(100))
    project: Mapped[str | None] = mapped_column(String(100))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (
        Index("ix_audit_events_actor", "actor", "id"),
        Index("ix_audit_events_action", "action", "id"),
    )


class Node(Base):
    """A donated machine: what it shares, where it is, and its lease."""

    __tablename__ = "nodes"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), default=NodeState.ENROLLED.value)
    cpus: Mapped[float] = mapped_column(Float)
    memory_bytes: Mapped[int] = mapped_column(BigInteger)
    gpus: Mapped[int] = mapped_column(Integer, default=0)
    gpu_model: Mapped[str | None] = mapped_column(String(100))
    gpu_memory_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    gpu_type: Mapped[str | None] = mapped_column(String(40))
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    region: Mapped[str | None] = mapped_column(String(40))
    donor_project: Mapped[str | None] = mapped_column(String(100))
    pue: Mapped[float] = mapped_column(Float, default=1.0)
    credential_hash: Mapped[str] = mapped_column(String(64), unique=True)
    lease_epoch: Mapped[int] = mapped_column(Integer, default=1)
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    utilization: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    __table_args__ = (
        CheckConstraint(_in("state", NodeState), name="state_valid"),
        CheckConstraint("cpus >= 0 AND memory_bytes >= 0 AND gpus >= 0", name="resources_nonneg"),
        CheckConstraint("pue >= 1.0", name="pue_at_least_one"),
        CheckConstraint("lease_epoch >= 1", name="epoch_positive"),
        Index("ix_nodes_state", "state"),
    )


class EnrollmentToken(Base):
    """A single-use, expiring secret that lets one agent enroll one node."""

    __tablename__ = "enrollment_tokens"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    node_id: Mapped[str | None] = mapped_column(ForeignKey("nodes.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Job(Base):
    """A training job: who asked, what to run, what it needs, where it is."""

    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    owner: Mapped[str] = mapped_column(String(100))
    project: Mapped[str] = mapped_column(String(100))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED.value)
    # The spec: what runs and what each worker needs.
    kind: Mapped[str] = mapped_column(String(16), default="ddp", server_default="ddp")
    entrypoint: Mapped[str | None] = mapped_column(String(500))  # kind ddp
    command: Mapped[list[str] | None] = mapped_column(JSON)  # kind command: argv
    # A task of a job array or sweep: the array's id (shared by its tasks), the task's
    # index, and how many tasks of the array may hold resources at once (NULL: any).
    array_id: Mapped[str | None] = mapped_column(String(40))
    array_index: Mapped[int | None] = mapped_column(Integer)
    array_limit: Mapped[int | None] = mapped_column(Integer)
    args: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    working_dir: Mapped[str | None] = mapped_column(String(1000))
    env: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    workers_min: Mapped[int] = mapped_column(Integer, default=1)
    workers_max: Mapped[int] = mapped_column(Integer, default=1)
    cpus_per_worker: Mapped[float] = mapped_column(Float, default=1.0)
    memory_bytes_per_worker: Mapped[int] = mapped_column(BigInteger, default=0)
    gpus_per_worker: Mapped[int] = mapped_column(Integer, default=0)
    gpu_type: Mapped[str | None] = mapped_column(String(40))
    label_selector: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    max_runtime_s: Mapped[int | None] = mapped_column(Integer)
    # The throughput table's name for what it trains (hetero's type preference).
    job_type: Mapped[str | None] = mapped_column(String(100))
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    framework: Mapped[str] = mapped_column(String(16), default="torch", server_default="torch")
    carbon: Mapped[str] = mapped_column(String(8), default="ignore", server_default="ignore")
    # Life.
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    # Voluntary checkpoint-and-requeue by the carbon policy; they do not use up attempts.
    carbon_suspensions: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # g/kWh the job would have run at when the carbon policy first deferred it (it had room):
    # what its energy is compared with to count the carbon that waiting saved.
    carbon_baseline_g_per_kwh: Mapped[float | None] = mapped_column(Float)
    # Times an elastic job was checkpointed to relaunch at full size (never a failed attempt).
    regrows: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Times a policy requeued it for another job (LAS, fair share) or moved it to a faster
    # GPU type: voluntary, so never a failed attempt either.
    policy_preemptions: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # After a failed attempt the job waits (exponential backoff) before it is placed again.
    eligible_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    placed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    pending_reason: Mapped[str | None] = mapped_column(String(500))
    exit_reason: Mapped[str | None] = mapped_column(Text)
    # The runner's name of the run; a warm-started ddp run's names every rank's node.
    runner_ref: Mapped[str | None] = mapped_column(Text)
    checkpoint_uri: Mapped[str | None] = mapped_column(String(1000))
    # Publish the final checkpoint as a new version of this model artifact on success.
    publish: Mapped[str | None] = mapped_column(String(100))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    log_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")

    __table_args__ = (
        CheckConstraint(_in("state", JobState), name="state_valid"),
        CheckConstraint("workers_min >= 1 AND workers_max >= workers_min", name="workers_range"),
        CheckConstraint(
            "cpus_per_worker >= 0 AND memory_bytes_per_worker >= 0 AND gpus_per_worker >= 0",
            name="resources_nonneg",
        ),
        CheckConstraint("attempt >= 1 AND max_attempts >= 1", name="attempts_positive"),
        CheckConstraint("framework IN ('torch', 'tensorflow')", name="framework_valid"),
        CheckConstraint("carbon IN ('aware', 'ignore')", name="carbon_valid"),
        CheckConstraint(
            "(kind = 'ddp' AND entrypoint IS NOT NULL)"
            " OR (kind = 'command' AND command IS NOT NULL) OR kind = 'service'",
            name="kind_fields",
        ),
        CheckConstraint("array_limit IS NULL OR array_limit >= 1", name="array_limit_positive"),
        Index("ix_jobs_array", "array_id", "array_index"),
        Index("ix_jobs_project", "project"),
        Index("ix_jobs_owner", "owner"),
    )


# The queue in the order the scheduler reads it (`snapshot_source._queue_window`): a step
# that looks at the first 100 of 5,000 queued jobs walks this index instead of sorting them
# all (7.4 -> 1.6 ms on SQLite). Its `state` prefix serves every lookup by state.
Index("ix_jobs_queue_order", Job.state, Job.priority.desc(), Job.submitted_at, Job.id)


class JobDependency(Base):
    """`job_id` may start only once `depends_on` ended as `condition` asks.

    `ok`: SUCCEEDED; `fail`: FAILED; `any`: any final state. A dependency on
    an array is stored as one row per task.
    """

    __tablename__ = "job_dependencies"
    job_id: Mapped[str] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    depends_on: Mapped[str] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    condition: Mapped[str] = mapped_column(String(8))

    __table_args__ = (
        CheckConstraint("condition IN ('ok', 'any', 'fail')", name="condition_valid"),
        Index("ix_job_dependencies_depends_on", "depends_on"),
    )


class Allocation(Base):
    """One worker rank of one job attempt on one node, with the resources it holds.

    Active while `released_at` is NULL; kept afterwards as the record of
    where each attempt ran.
    """

    __tablename__ = "allocations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    rank: Mapped[int] = mapped_column(Integer)
    cpus: Mapped[float] = mapped_column(Float)
    memory_bytes: Mapped[int] = mapped_column(BigInteger)
    gpus: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # A chained allocation (`scheduler.policy.chain`): its job waits on the node's executor
    # behind the run that holds allocation `after_id` and starts the moment that run ends.
    # While `standby` it borrows that run's resources, so nothing counts it as held; the
    # release of the allocation ahead makes it held (`services.jobs.release_allocations`).
    after_id: Mapped[int | None] = mapped_column(
        ForeignKey("allocations.id", ondelete="SET NULL")
    )
    standby: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))

    __table_args__ = (
        UniqueConstraint("job_id", "attempt", "rank", name="uq_allocations_job_attempt_rank"),
        UniqueConstraint("after_id", name="uq_allocations_after"),  # one run waits per run
        CheckConstraint("rank >= 0", name="rank_nonneg"),
        CheckConstraint("cpus >= 0 AND memory_bytes >= 0 AND gpus >= 0", name="resources_nonneg"),
        Index(
            "ix_allocations_active_node",
            "node_id",
            sqlite_where=text("released_at IS NULL"),
            postgresql_where=text("released_at IS NULL"),
        ),
        Index("ix_allocations_job", "job_id"),
        Index("ix_allocations_standby", "standby"),  # the few waiting behind a run
    )


# Allocations that hold their node's resources now (capacity, quotas, usage): open and not
# standby behind another run.
HELD = Allocation.released_at.is_(None) & Allocation.standby.is_(False)

class JobEvent(Base):
    """Every job state change: from, to, who and why. Written in the same transaction."""

    __tablename__ = "job_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("ix_job_events_job", "job_id", "id"),)


class NodeEvent(Base):
    """Every node state change, like `JobEvent`."""

    __tablename__ = "node_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("ix_node_events_node", "node_id", "id"),)


class JobLogLine(Base):
    """A line of a job's output; `id` is the cursor `logs -f` follows."""

    __tablename__ = "job_log_lines"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    stream: Mapped[str] = mapped_column(String(16), default="stdout")
    line: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("ix_job_log_lines_job", "job_id", "id"),)


class JobMetric(Base):
    """A step report from job code: loss, samples/s, step, epoch..."""

    __tablename__ = "job_metrics"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer)
    values: Mapped[dict[str, float]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("ix_job_metrics_job", "job_id", "id"),)


class JobEnergyPart(Base):
    """A job's energy and carbon on one node, accumulated from that node's heartbeats.

    One row per (job, node) rather than per heartbeat keeps the registry's size
    independent of run length; the time profile lives in `JobEnergyBucket`.
    Joules have the node's PUE applied; `estimated_j` is the part produced by
    the utilisation model, so the API can say "% estimated".
    """

    __tablename__ = "job_energy"
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    energy_j: Mapped[float] = mapped_column(Float, default=0.0)
    estimated_j: Mapped[float] = mapped_column(Float, default=0.0)
    co2e_g: Mapped[float] = mapped_column(Float, default=0.0)
    pue: Mapped[float] = mapped_column(Float, default=1.0)
    region: Mapped[str | None] = mapped_column(String(40))
    intensity_source: Mapped[str | None] = mapped_column(String(200))
    intensity_fallback: Mapped[bool] = mapped_column(Boolean, default=False)
    methods: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    method_note: Mapped[str | None] = mapped_column(String(1000))
    first_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        PrimaryKeyConstraint("job_id", "node_id"),
        CheckConstraint(
            "energy_j >= 0 AND estimated_j >= 0 AND co2e_g >= 0", name="amounts_nonneg"
        ),
        Index("ix_job_energy_node", "node_id"),
    )


class JobEnergyBucket(Base):
    """A job's energy per node per fixed time bucket (default 60 s): the rolled-up series.

    Heartbeat intervals are folded into the bucket holding their midpoint;
    buckets older than the retention are pruned, so the table stays bounded
    while the per-job totals in `job_energy` are kept for ever.
    """

    __tablename__ = "job_energy_buckets"
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    bucket_at: Mapped[datetime] = mapped_column(UTCDateTime())
    energy_j: Mapped[float] = mapped_column(Float, default=0.0)
    co2e_g: Mapped[float] = mapped_column(Float, default=0.0)

    __table_args__ = (
        PrimaryKeyConstraint("job_id", "node_id", "bucket_at"),
        CheckConstraint("energy_j >= 0 AND co2e_g >= 0", name="amounts_nonneg"),
        Index("ix_job_energy_buckets_node_bucket", "node_id", "bucket_at"),
    )


class NodeEnergy(Base):
    """A node's lifetime energy split (jobs / idle / other) and its latest power reading.

    Idle energy is the pool's idle cost (see docs/energy.md: it is not charged
    to jobs); `other_j` is activity on the donor's machine that is not a pool
    job (the donor's own programs, the agent, Ray's daemons).
    """

    __tablename__ = "node_energy"
    node_id: Mapped[str] = mapped_column(
        ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True
    )
    jobs_j: Mapped[float] = mapped_column(Float, default=0.0)
    idle_j: Mapped[float] = mapped_column(Float, default=0.0)
    other_j: Mapped[float] = mapped_column(Float, default=0.0)
    estimated_j: Mapped[float] = mapped_column(Float, default=0.0)
    jobs_co2e_g: Mapped[float] = mapped_column(Float, default=0.0)
    idle_co2e_g: Mapped[float] = mapped_column(Float, default=0.0)
    other_co2e_g: Mapped[float] = mapped_column(Float, default=0.0)
    power_w: Mapped[float | None] = mapped_column(Float)
    cpu_utilization: Mapped[float | None] = mapped_column(Float)
    methods: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    is_estimated: Mapped[bool] = mapped_column(Boolean, default=False)
    method_note: Mapped[str | None] = mapped_column(String(1000))
    intensity_source: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        CheckConstraint(
            "jobs_j >= 0 AND idle_j >= 0 AND other_j >= 0 AND estimated_j >= 0",
            name="energy_nonneg",
        ),
    )


class Artifact(Base):
    """A model or dataset, versioned and content-addressed, that jobs and people share.

    `sha256` names the blob in the blob store (the same bytes are stored
    once); (name, version) is unique pool-wide and never reused, so a
    reference pins exact bytes. Lineage: `produced_by_job` and that job's
    `JobInput` rows (the datasets and base model it read).
    """

    __tablename__ = "artifacts"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(String(40))
    project: Mapped[str] = mapped_column(String(100))
    owner: Mapped[str] = mapped_column(String(100))
    visibility: Mapped[str] = mapped_column(String(16))
    licence: Mapped[str | None] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    produced_by_job: Mapped[str | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL")
    )
    downloads: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        UniqueConstraint("name", "version", name="uq_artifacts_name_version"),
        CheckConstraint(_in("kind", ArtifactKind), name="kind_valid"),
        CheckConstraint(_in("visibility", Visibility), name="visibility_valid"),
        CheckConstraint("version >= 1 AND size_bytes >= 0", name="version_size_valid"),
        Index("ix_artifacts_project", "project"),
    )


class JobInput(Base):
    """An artifact a job reads: a dataset, or the model it starts from (`init`).

    Pinned at submit to one version, so a retry reads the same bytes.
    """

    __tablename__ = "job_inputs"
    job_id: Mapped[str] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    artifact_id: Mapped[str] = mapped_column(ForeignKey("artifacts.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(8))

    __table_args__ = (
        CheckConstraint(_in("role", InputRole), name="role_valid"),
        Index("ix_job_inputs_artifact", "artifact_id"),
    )
