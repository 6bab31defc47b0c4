"""All of commonpool's settings, in one place.

Read from `COMMONPOOL_*` environment variables first, then a TOML file
(`COMMONPOOL_CONFIG`, default `~/.config/commonpool/config.toml`), then the
defaults below. The embedded default is a SQLite file under the state dir,
so a fresh machine needs no database server.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .blobs import LocalBlobStore, open_blob_store


def default_config_file() -> Path:
    return Path(
        os.environ.get("COMMONPOOL_CONFIG", "~/.config/commonpool/config.toml")
    ).expanduser()


def default_state_dir() -> Path:
    return Path(os.environ.get("COMMONPOOL_STATE_DIR", "~/.local/share/commonpool")).expanduser()


class Settings(BaseSettings):
    """Settings shared by the server, the scheduler loop, the CLI and the agent."""

    model_config = SettingsConfigDict(env_prefix="COMMONPOOL_", extra="ignore")

    state_dir: Path = Field(
        default_factory=default_state_dir, description="Where local state lives."
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL; empty means the SQLite file <state_dir>/commonpool.db.",
    )
    server_url: str = Field(
        default="http://127.0.0.1:8765", description="API base URL for clients."
    )
    host: str = Field(default="127.0.0.1", description="Address the API server binds.")
    port: int = Field(default=8765, ge=1, le=65535)
    policy: str = Field(default="fifo", description="Placement policy name.")
    scheduler_interval_s: float = Field(
        default=1.0,
        gt=0,
        le=3600,
        description="Longest time between two full scheduling steps (a submit or a run's "
        "end also wakes the scheduler at once).",
    )
    scheduler_quick_depth: int = Field(
        default=100,
        ge=0,
        description="Queued jobs a step woken by an event looks at between full steps "
        "(like Slurm's default_queue_depth); such a step preempts nothing. 0: every step "
        "reads the whole queue.",
    )
    scheduler_chain_window_s: float = Field(
        default=1.0,
        ge=0,
        le=3600,
        description="A queued single-node command job may wait on a node behind a command "
        "run started at most this many seconds ago, and start the moment it ends, without "
        "a scheduling step in between; it goes back to the queue if that run lasts longer "
        "(0: never).",
    )
    scheduler_chain_depth: int = Field(
        default=8,
        ge=0,
        le=64,
        description="How many such jobs may wait behind one run, one after the other "
        "(0: none).",
    )
    requeue_backoff_s: float = Field(
        default=2.0,
        ge=0,
        description="After a failed attempt (node lost, left, revoked) a job waits this long "
        "before it may be placed again, doubling per failure (0: no wait).",
    )
    requeue_backoff_max_s: float = Field(default=300.0, ge=0, description="Cap of that wait.")
    elastic_grow_after_s: float = Field(
        default=60.0,
        ge=0,
        description="An elastic job running below workers_max is regrown (checkpoint, relaunch "
        "at full size) once it ran this long and the pool has room with nothing waiting.",
    )
    node_lease_s: float = Field(default=30.0, gt=0, le=86400)
    ray_address: str = Field(
        default="", description="GCS address (host:port) of the pool's Ray head, given to agents."
    )
    ray_dashboard_url: str = Field(
        default="", description="Ray dashboard URL the runner submits jobs to (Ray Jobs API)."
    )
    ray_serve_url: str = Field(
        default="",
        description="Where the head's Ray Serve HTTP proxy listens (services run behind it); "
        "internal to the pool like Ray's other ports: users reach services through the API.",
    )
    ray_auth_token_file: Path | None = Field(
        default=None,
        description="File holding the Ray cluster's auth token (RAY_AUTH_MODE=token); "
        "handed to enrolled agents and used by the runner.",
    )
    runner: Literal["ray", "local", "local-sleep"] = Field(
        default="ray",
        description="What runs placed jobs: `ray` (Ray Jobs at ray_dashboard_url); `local` "
        "(one process per job on the scheduler's machine, for tests and small single-machine "
        "pools, not DDP); `local-sleep` (simulator-style jobs that only sleep, for chaos tests).",
    )
    ddp_start: Literal["trainer", "warm"] = Field(
        default="trainer",
        description="How ddp jobs start on a Ray pool: `trainer` (a Ray Jobs driver runs Ray "
        "Train's TorchTrainer: ~10 s to the first step here) or `warm` (a torch job that ships "
        "no working_dir, inputs or model to publish starts one process per rank on the warm "
        "executors of its nodes, torchrun-style, without Ray Train: ~1-2 s; its checkpoints "
        "are kept in the checkpoint storage folder, not an object store URI).",
    )
    runs_dir: Path | None = Field(
        default=None,
        description="Run records of the local runners; empty means <state_dir>/runs.",
    )
    energy_bucket_s: int = Field(
        default=60, gt=0, le=86400, description="Width of a job's energy time-series bucket."
    )
    energy_retention_s: int = Field(
        default=7 * 86400,
        gt=0,
        description="Energy buckets older than this are pruned (job totals are kept).",
    )
    tls_cert_file: Path | None = Field(
        default=None, description="PEM certificate (chain) the API serves HTTPS with."
    )
    tls_key_file: Path | None = Field(default=None, description="PEM private key of tls_cert_file.")
    ca_file: Path | None = Field(
        default=None,
        description="PEM CA bundle clients (CLI, agents, jobs) verify the server's certificate "
        "with, for a pool CA that is not in the system store; empty means the system store.",
    )
    job_code_dirs: list[Path] = Field(
        default_factory=list,
        description="Folders on the scheduler's machine from which non-admin users' jobs may "
        "ship a local working_dir (the runner reads it there and uploads it to Ray); outside "
        "them only remote URIs (s3://, gs://, https://...zip) are accepted.",
    )
    log_format: Literal["console", "json"] = Field(
        default="console",
        description="Logs of the server and the scheduler: `console` for people, `json` (one "
        "object per line, with job and node ids) for log shippers.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info")
    max_request_bytes: int = Field(default=1_000_000, gt=0)
    artifacts_url: str = Field(
        default="",
        description="Where artifact blobs live: a directory, or an fsspec URL such as "
        "s3://bucket/prefix (needs s3fs; endpoint via artifacts_s3_endpoint); empty means "
        "<state_dir>/artifacts.",
    )
    artifacts_s3_endpoint: str = Field(
        default="", description="Endpoint of an S3-compatible server for artifacts_url."
    )
    artifact_max_bytes: int = Field(
        default=4 * 2**30, gt=0, description="Largest artifact one upload may store."
    )
    page_size_max: int = Field(default=500, gt=0, le=10_000)
    token: str | None = Field(
        default=None,
        description="API token the CLI sends (COMMONPOOL_TOKEN); empty falls back to token_file.",
    )
    token_file: Path | None = Field(
        default=None,
        description="File holding the CLI's API token; empty means <state_dir>/admin-token, "
        "which `commonpool up`/`demo` write with the bootstrap admin token.",
    )
    auth_cache_s: float = Field(
        default=2.0,
        ge=0,
        le=300,
        description="How long an API process trusts a checked credential (0: check every "
        "request); bounds how long a credential revoked by another process still works.",
    )
    submit_rate_per_s: float = Field(
        default=100.0, ge=0, description="Job submits per second per token (0: unlimited)."
    )
    submit_burst: int = Field(default=500, ge=1, description="Submits a token may burst.")
    heartbeat_rate_per_s: float = Field(
        default=5.0, ge=0, description="Heartbeats per second per node (0: unlimited)."
    )
    heartbeat_burst: int = Field(default=20, ge=1)
    job_log_max_bytes: int = Field(
        default=16 * 2**20, ge=0, description="Log bytes stored per job (0: no cap)."
    )

    @property
    def ray_auth_token(self) -> str | None:
        if self.ray_auth_token_file is None:
            return None
        return self.ray_auth_token_file.read_text().strip()

    @property
    def resolved_token_file(self) -> Path:
        return self.token_file or self.state_dir / "admin-token"

    def client_token(self) -> str | None:
        """The CLI's credential: `token`, else the token file when it exists."""
        if self.token:
            return self.token
        path = self.resolved_token_file
        return path.read_text().strip() if path.is_file() else None

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.state_dir / 'commonpool.db'}"

    def blob_store(self) -> LocalBlobStore:
        """The artifact blob store `artifacts_url` names (created on first use)."""
        options = {"endpoint_url": self.artifacts_s3_endpoint} if self.artifacts_s3_endpoint else {}
        return open_blob_store(
            self.artifacts_url or str(self.state_dir / "artifacts"),
            staging=self.state_dir / "artifacts-staging",
            **options,
        )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=default_config_file())
        return (init_settings, env_settings, toml)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests build `Settings(...)` directly instead."""
    return Settings()
