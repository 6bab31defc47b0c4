"""The job spec a researcher submits, validated once for the API, CLI and job files.

Limits are product limits, not type limits: a request for a million CPUs or
a 1 MB name is refused with the field that is wrong, before anything is
written.
"""

from __future__ import annotations

import itertools
import math
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from .domain.artifacts import ArtifactRef

MAX_WORKERS = 1024
MAX_CPUS_PER_WORKER = 1024.0
MAX_GPUS_PER_WORKER = 64
MAX_MEMORY_BYTES = 16 * 2**40  # 16 TiB
MAX_RUNTIME_S = 90 * 86400
MAX_ARRAY_TASKS = 10_000

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


def _artifact_ref(value: str) -> str:
    return str(ArtifactRef.parse(value))


ArtifactRefText = Annotated[str, Field(max_length=120), AfterValidator(_artifact_ref)]


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


class ServiceSpec(_Strict):
    """A model served over HTTP (kind `service`): one Ray Serve replica per worker."""

    model: ArtifactRefText = Field(description="The model artifact served, NAME[@VERSION].")
    builder: str | None = Field(
        default=None,
        min_length=3,
        max_length=300,
        pattern=_ENTRYPOINT,
        description="`module:function` returning the nn.Module a checkpoint's weights load "
        "into; not needed for ONNX or TorchScript artifacts.",
    )
    idle_timeout_s: int = Field(
        default=600, ge=0, le=MAX_RUNTIME_S,
        description="Replicas scale to zero after this long without requests (0: never).",
    )
    max_batch_size: int = Field(
        default=32, ge=1, le=4096,
        description="Requests a replica batches into one model call.",
    )


class Dependency(_Strict):
    """Start only after job `job` ended: `ok` SUCCEEDED, `fail` FAILED, `any` any final state.

    `job` may also name a job array (its id): then every task of it must qualify.
    """

    type: Literal["ok", "any", "fail"] = "ok"
    job: Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_]+$")]


def parse_array(text: str) -> tuple[tuple[int, ...], int | None]:
    """Task indices and the running limit from Slurm's `--array` syntax.

    `1-100`, `0-15:4` (step), `1,3,5-7`, each optionally `%N` (at most N at once).
    """
    body, _, limit_text = text.strip().partition("%")
    indices: list[int] = []
    for part in body.split(","):
        match = re.fullmatch(r"\s*(\d+)(?:-(\d+)(?::(\d+))?)?\s*", part)
        if not match:
            raise ValueError(f"not an array range: {part!r} (use e.g. 1-100, 0-15:4, 1,3,5-7%2)")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        step = int(match.group(3) or 1)
        if last < first or step < 1:
            raise ValueError(f"empty array range: {part!r}")
        if (last - first) // step + 1 + len(indices) > MAX_ARRAY_TASKS:
            raise ValueError(f"an array has at most {MAX_ARRAY_TASKS} tasks")
        indices.extend(range(first, last + 1, step))
    if len(set(indices)) != len(indices):
        raise ValueError(f"array indices repeat in {text!r}")
    limit: int | None = None
    if limit_text:
        if not limit_text.isdigit() or int(limit_text) < 1:
            raise ValueError(f"array limit must be a positive integer, not {limit_text!r}")
        limit = int(limit_text)
    return tuple(indices), limit


class JobSpec(_Strict):
    """Everything needed to run a job; stored on the job row.

    `kind`: `ddp` runs `entrypoint` as distributed training on `workers`;
    `command` runs `command` (argv, or one string for `/bin/sh -c`) on one node.
    `array` or `sweep` make one submit insert many tasks (see `array_tasks`).
    """

    name: Name
    kind: Literal["ddp", "command", "service"] = Field(
        default="ddp",
        description="`ddp` (a training loop on Ray Train), `command` (argv) or `service` (a "
        "model served over HTTP until stopped).",
    )
    entrypoint: str | None = Field(
        default=None,
        min_length=3,
        max_length=300,
        pattern=_ENTRYPOINT,
        description="`module:function` of the training loop; it receives the `args` dict.",
    )
    command: list[Annotated[str, Field(max_length=4096)]] | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="A command job's argv; a string is run by `/bin/sh -c`.",
    )
    array: str | None = Field(
        default=None,
        max_length=200,
        description="Slurm-style task indices, e.g. `1-100%10` (at most 10 at once).",
    )
    sweep: dict[
        Annotated[str, Field(max_length=100, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")],
        Annotated[list[Any], Field(min_length=1, max_length=MAX_ARRAY_TASKS)],
    ] | None = Field(
        default=None,
        max_length=20,
        description="A parameter grid: one task per combination, its values merged into args.",
    )
    max_running: int | None = Field(
        default=None, ge=1, le=MAX_ARRAY_TASKS,
        description="At most this many tasks of the array or sweep at once (like `%N`).",
    )
    after: list[Dependency] = Field(default_factory=list, max_length=100)
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
    job_type: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="What the job trains, as the pool's throughput table names it (e.g. "
        "`ResNet-50 (batch size 64)`): `+hetero` policies then place it, and may move it, "
        "where it runs fastest. Unknown names are allowed and get no preference.",
    )
    deadline: datetime | None = None
    max_attempts: int = Field(default=3, ge=1, le=100)
    framework: Literal["torch", "tensorflow"] = Field(
        default="torch", description="The Ray Train trainer: TorchTrainer or TensorflowTrainer."
    )
    carbon: Literal["aware", "ignore"] = Field(
        default="ignore",
        description="`aware`: with a deadline and max_runtime_s it may wait for cleaner power.",
    )
    datasets: list[ArtifactRefText] = Field(
        default_factory=list,
        max_length=20,
        description="Dataset artifacts (`name` or `name@version`) staged on every worker's "
        "node before training; the loop finds them with `job.input_dir(name)`.",
    )
    init_from: ArtifactRefText | None = Field(
        default=None,
        description="A model artifact whose files the loop starts from (`job.init_dir()`).",
    )
    service: ServiceSpec | None = Field(
        default=None, description="What a `service` job serves (and how)."
    )
    publish: Name | None = Field(
        default=None,
        description="On success, publish the final checkpoint as the next version of this "
        "model artifact (owned by the job's owner and project, visibility `project`).",
    )

    @field_validator("command", mode="before")
    @classmethod
    def _shell(cls, value: Any) -> Any:
        if isinstance(value, str):
            return ["/bin/sh", "-c", value]
        return value

    @field_validator("array")
    @classmethod
    def _array(cls, value: str | None) -> str | None:
        if value is not None:
            parse_array(value)
        return value

    @model_validator(mode="after")
    def _kind_fields(self) -> JobSpec:
        if self.kind != "service" and self.service is not None:
            raise ValueError("service is for kind: service")
        if self.kind == "ddp":
            if self.entrypoint is None:
                raise ValueError("a ddp job needs an entrypoint (module:function)")
            if self.command is not None:
                raise ValueError("command is for kind: command (a ddp job runs its entrypoint)")
        elif self.kind == "service":
            if self.service is None:
                raise ValueError("a service job needs `service` (the model it serves)")
            if (self.entrypoint or self.command or self.args or self.datasets or self.init_from
                    or self.publish):
                raise ValueError(
                    "a service serves `service.model` as `service` says: entrypoint, command, "
                    "args, datasets, init_from and publish are for other kinds"
                )
            if self.is_array:
                raise ValueError("a service cannot be an array or sweep")
        else:
            if self.command is None:
                raise ValueError("a command job needs a command")
            if self.entrypoint is not None:
                raise ValueError("entrypoint is for kind: ddp (a command job runs its command)")
            if self.workers.max != 1:
                raise ValueError("a command job runs on one node: workers must be 1")
            if self.datasets or self.init_from or self.publish:
                raise ValueError(
                    "datasets, init_from and publish are for ddp jobs (a command job can "
                    "fetch an artifact itself: `commonpool artifacts download`)"
                )
        if len({ArtifactRef.parse(d).name for d in self.datasets}) < len(self.datasets):
            raise ValueError("datasets name the same artifact twice")
        if self.array is not None and self.sweep is not None:
            raise ValueError("give array or sweep, not both")
        if self.max_running is not None and self.array is None and self.sweep is None:
            raise ValueError("max_running limits the tasks of an array or sweep")
        if self.array is not None and "%" in self.array and self.max_running is not None:
            raise ValueError("give the running limit once: array's %N or max_running")
        if self.sweep is not None and math.prod(map(len, self.sweep.values())) > MAX_ARRAY_TASKS:
            raise ValueError(f"a sweep has at most {MAX_ARRAY_TASKS} combinations")
        if self.sweep is not None and len({k.upper() for k in self.sweep}) < len(self.sweep):
            # each parameter reaches the task as env COMMONPOOL_PARAM_<NAME> (upper case)
            raise ValueError("sweep parameter names must differ in more than letter case")
        return self

    @property
    def is_array(self) -> bool:
        """True when one submit makes many tasks (`array` or `sweep`)."""
        return self.array is not None or self.sweep is not None

    def array_tasks(self) -> list[tuple[int, dict[str, Any]]]:
        """(index, sweep parameters) of each task; [] for a single job."""
        if self.array is not None:
            return [(i, {}) for i in parse_array(self.array)[0]]
        if self.sweep is not None:
            keys = list(self.sweep)
            grid = itertools.product(*(self.sweep[k] for k in keys))
            return [(i, dict(zip(keys, values, strict=True))) for i, values in enumerate(grid)]
        return []

    @property
    def array_limit(self) -> int | None:
        """At most this many tasks at once (None: no limit)."""
        if self.array is not None and "%" in self.array:
            return parse_array(self.array)[1]
        return self.max_running

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
