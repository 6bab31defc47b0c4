"""The seams between the scheduler and what runs jobs.

The scheduler decides and records; a `Runner` (implemented in
`commonpool.workers.runner` on Ray) executes. Tests and the simulator can
plug in another runner without the scheduler importing Ray.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class WorkerPlacement:
    """One rank of a launch, pinned to the registry node that was allocated."""

    rank: int
    node_id: str
    cpus: float
    gpus: int
    memory_bytes: int


@dataclass(frozen=True, slots=True)
class InputArtifact:
    """An artifact a job reads, pinned at submit: workers fetch `ref` and check `sha256`."""

    name: str
    version: int
    role: str  # "dataset" or "init"
    sha256: str
    size_bytes: int

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True, slots=True)
class LaunchRequest:
    job_id: str
    attempt: int
    entrypoint: str | None  # kind ddp: the training loop
    args: dict[str, Any]
    workers: tuple[WorkerPlacement, ...]
    working_dir: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    max_runtime_s: int | None = None
    framework: str = "torch"  # or "tensorflow": which Ray Train trainer runs the loop
    kind: str = "ddp"  # or "command": `command` (argv) runs once on the one allocated node
    command: tuple[str, ...] | None = None
    inputs: tuple[InputArtifact, ...] = ()  # ddp, service: staged on every worker's node
    publish: str | None = None  # kind ddp: publish the final checkpoint as this model
    # A chained job (`policy.chain`): the ref of the run whose end starts this one, on the
    # same node (launched only where `Runner.chains` says the runner can queue it).
    after: str | None = None


class RunStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"
    MISSING = "MISSING"  # the runner has no record of it (e.g. the cluster restarted)

    @property
    def ended(self) -> bool:
        return self in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.STOPPED,
                        RunStatus.MISSING)


@dataclass(frozen=True, slots=True)
class RunReport:
    status: RunStatus
    message: str = ""
    started_at: float | None = None  # epoch seconds the run's process started, if known


def run_ref(job_id: str, attempt: int) -> str:
    """The one name of a job attempt's run, in every runner: a relaunch after a crash
    finds (adopts) the run instead of starting a second one, and the launcher can record
    the ref before the run exists, so no run is ever started without a record of it."""
    return f"{job_id}-a{attempt}"


def job_of_ref(ref: str) -> str:
    """The job id a run ref (`run_ref`, maybe suffixed `@<where>`) names."""
    return ref.partition("@")[0].rsplit("-a", 1)[0]


def is_run_of(ref: str, job_id: str, attempt: int) -> bool:
    """Whether `ref` names this job attempt's run (a runner may suffix `@<where>`)."""
    return ref.partition("@")[0] == run_ref(job_id, attempt)


class RunnerUnavailable(Exception):
    """`launch` could not reach what the run needs (e.g. its node's executor died): the
    job is not at fault, so it is requeued (one attempt spent), not failed."""


class LaunchInDoubt(Exception):
    """`launch` got no answer in time (a busy or paused node), so the run may have started
    or not; or part of it could not start yet for a passing reason (GPUs a stopping run
    still holds). Launches are idempotent by ref, so the launcher keeps the job PLACED and
    launches it again next step, which starts the run or adopts what did start; only after
    `Launcher.max_launch_retries` of these in a row is it requeued as `RunnerUnavailable`."""


class Runner(Protocol):
    """Executes launches. Every method is idempotent: the loop may retry after a crash."""

    def ref_for(self, request: LaunchRequest) -> str:
        """The ref `launch` will return: recorded before the launch (see `run_ref`)."""
        ...

    def launch(self, request: LaunchRequest) -> str:
        """Start the run (or adopt the one already started for this job attempt); its ref.
        Raises `RunnerUnavailable` when the failure is the pool's, not the job's."""
        ...

    def launch_many(self, requests: list[LaunchRequest]) -> list[str | Exception]:
        """`launch` of each request, in order (a chained one after the run it waits
        behind): each entry the ref, or the exception `launch` would have raised. Lets a
        runner start a step's runs with a call per node rather than per run."""
        ...

    def chains(self, request: LaunchRequest) -> bool:
        """Whether `launch` can queue this chained request behind `request.after`, to start
        when that run ends (else the launcher keeps it PLACED until the run ahead ended).
        Its poll reports PENDING until it started."""
        ...

    def withdraw(self, ref: str) -> bool:
        """End a chained run still queued behind another, unstarted; False if it has started
        (or ended): then it stays. True when no run of `ref` was started at all."""
        ...

    def poll(self, ref: str) -> RunReport: ...

    def new_log_lines(self, ref: str) -> list[str]:
        """Output lines produced since the previous call for this ref."""
        ...

    def stop(self, ref: str) -> None: ...

    def forget(self, refs: Sequence[str]) -> None:
        """These runs' ends and output are recorded: the runner may drop its own copies
        (all of a step's at once: one message per node, not one per run)."""
        ...

    def ended_refs(self) -> set[str]:
        """Runs known to have ended since the last call (polled at once, not on schedule);
        empty for runners that only learn an end by polling."""
        ...

    def checkpoint_location(self, request: LaunchRequest) -> str | None:
        """Where the run keeps its checkpoints (a folder or an object store URI; shown as
        the job's `checkpoint_uri`); None when it keeps none."""
        ...

    def live_nodes(self) -> set[str] | None:
        """Registry ids of the nodes the cluster sees alive now; None if it cannot tell."""
        ...


def launch_each(runner: Runner, requests: list[LaunchRequest]) -> list[str | Exception]:
    """`Runner.launch_many` for runners with no batched start: one `launch` at a time."""
    outcomes: list[str | Exception] = []
    for request in requests:
        try:
            outcomes.append(runner.launch(request))
        except Exception as exc:
            outcomes.append(exc)
    return outcomes
