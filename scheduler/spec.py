"""The job spec a researcher submits, validated once for the API, CLI and job files.

Limits are product limits, not type limits: a request for a million CPUs or
a 1 MB name is refused with the field that is wrong, before anything is
written.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_WORKERS = 1024
MAX_CPUS_PER_WORKER = 1024.0
MAX_GPUS_PER_WORKER = 64
MAX_MEMORY_BYTES = 16 * 2**40  # 16 TiB
MAX_RUNTIME_S = 90 * 86400

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
_ENTRYPOINT = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$"
_LABEL = r"^[A-Za-z0-9][A-Za-z0-9._/-]*$"
_MEMORY_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}

Name = Annotated[str, Field(min_length=1, max_length=100, pattern=_NAME)]
LabelKey = Annotated[str, Field(min_length=1, max_length=63, pattern=_LABEL)]
LabelValue = Annotated[str, Field(max_length=63)]


def parse_memory(value: str | int) -> int:
    """Bytes from `2GiB`, `512M`, `1.5 GB` or a plain integer."""
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", value)
    if not match or match.group(2).lower() not in _MEMORY_UNITS:
        raise ValueError(f"not a memory size: {value!r} (use e.g. 512MiB, 2GiB, 1GB)")
    return int(float(match.group(1)) * _MEMORY_UNITS[match.group(2).lower()])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorkersSpec(_Strict):
    """How many DDP workers (one per allocation); an elastic job gives a range."""

    min: int = Field(default=1, ge=1, le=MAX_WORKERS)
    max: int = Field(default=1, ge=1, le=MAX_WORKERS)

    @model_validator(mode="after")
    def _ordered(self) -> WorkersSpec:
        if self.max < self.min:
            raise ValueError(f"workers.max ({self.max}) is below workers.min ({self.min})")
        return self


class ResourcesSpec(_Strict):
    """What ONE worker needs."""

    cpus: float = Field(default=1.0, gt=0, le=MAX_CPUS_PER_WORKER)
    memory_bytes: int = Field(default=0, ge=0, le=MAX_MEMORY_BYTES)
    gpus: int = Field(default=0, ge=0, le=MAX_GPUS_PER_WORKER)
    gpu_type: Name | None = None

    @field_validator("memory_bytes", mode="before")
    @classmethod
    def _memory(cls, value: Any) -> Any:
        return parse_memory(value) if isinstance(value, str) else value


class JobSpec(_Strict):
    """Everything needed to run a job; stored on the job row."""

    name: Name
    entrypoint: str = Field(
        min_length=3,
        max_length=300,
        pattern=_ENTRYPOINT,
        description="`module:function` of the training loop; it receives the `args` dict.",
    )
    args: dict[str, Any] = Field(default_factory=dict, description="Config passed to the loop.")
    working_dir: str | None = Field(default=None, max_length=1000)
    env: dict[
        Annotated[str, Field(max_length=100, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")],
        Annotated[str, Field(max_length=4096)],
    ] = Field(default_factory=dict, max_length=100)
    workers: WorkersSpec = Field(default_factory=WorkersSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    label_selector: dict[LabelKey, LabelValue] = Field(default_factory=dict, max_length=20)
    priority: int = Field(default=0, ge=-1000, le=1000)
    project: Name | None = Field(
        default=None,
        description="Project the job is charged to; may be omitted by a member of one project.",
    )
    owner: Name | None = Field(
        default=None, description="Defaults to the submitter; only an admin may name another."
    )
    max_runtime_s: int | None = Field(default=None, gt=0, le=MAX_RUNTIME_S)
    deadline: datetime | None = None
    max_attempts: int = Field(default=3, ge=1, le=100)
    framework: Literal["torch", "tensorflow"] = Field(
        default="torch", description="The Ray Train trainer: TorchTrainer or TensorflowTrainer."
    )
    carbon: Literal["aware", "ignore"] = Field(
        default="ignore",
        description="`aware`: with a deadline and max_runtime_s it may wait for cleaner power.",
    )

    @field_validator("workers", mode="before")
    @classmethod
    def _workers_int(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return {"min": value, "max": value}
        return value

    @field_validator("deadline")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("deadline needs a timezone (e.g. 2026-12-01T12:00:00Z)")
        return value
