"""`Runner` on the Ray Jobs API: one Ray job per pool job attempt.

Why Ray Jobs rather than a driver inside the scheduler: each run is its own
process with its own runtime_env (the job's working directory and
environment), `stop_job` kills the driver and every Train worker it
started, the job's output (driver + workers) is captured by Ray and
readable after a crash, and a scheduler restart finds runs by their
deterministic submission id (`<job id>-a<attempt>`) instead of losing them.

A ddp job's entrypoint is the driver (`commonpool.workers.runner.driver`,
on the head, 0 CPUs), which pins each Train worker to its allocated node.
A command job has no driver: it is one process on one node, so the Ray
job's entrypoint is the command itself, and Ray places that entrypoint
with the node's label selector and the allocation's CPUs, GPUs and memory
reserved. Its stdout and stderr are the Ray job's logs (read from that
node), and a non-zero exit ends the run FAILED with `exit code N` first in
its message.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from commonpool.scheduler.ports import (
    LaunchRequest,
    RunReport,
    RunStatus,
    job_of_ref,
    launch_each,
    run_ref,
)
from commonpool.workers.ray_node import NODE_LABEL
from commonpool.workers.runner import launch_spec
from commonpool.workers.serving.driver import ENV_SERVE_HOST, ENV_SERVE_PORT

_STATUS = {
    "PENDING": RunStatus.PENDING,
    "RUNNING": RunStatus.RUNNING,
    "SUCCEEDED": RunStatus.SUCCEEDED,
    "FAILED": RunStatus.FAILED,
    "STOPPED": RunStatus.STOPPED,
}
LOG_TAIL_LINES = 40
_JOB_LOG = "job-driver-{ref}.log"  # Ray's name of a Ray job's output file (on its node)
_EXIT_CODE = re.compile(r"exit code (-?\d+)")


def _runtime_env(request: LaunchRequest, env_vars: dict[str, str]) -> dict[str, object]:
    runtime_env: dict[str, object] = {"env_vars": env_vars}
    if request.working_dir:
        runtime_env["working_dir"] = request.working_dir
    return runtime_env


def command_failure(headline: str, exit_code: int | None) -> str:
    """A failed command's headline: `exit code N` (from Ray's record, else from its
    message); Ray's own headline when the command never ran (e.g. its runtime_env
    could not be set up)."""
    if exit_code is None:
        match = _EXIT_CODE.search(headline)
        if match is None:
            return headline
        exit_code = int(match.group(1))
    if exit_code < 0:  # the process was killed: Python's -N for signal N
        try:
            return f"exit code {exit_code} (killed by {signal.Signals(-exit_code).name})"
        except ValueError:
            pass
    return f"exit code {exit_code}"


class RayJobsRunner:
    def __init__(
        self,
        dashboard_url: str,
        storage_path: Storage,
        auth_token: str | None = None,
        serve_url: str | None = None,
    ) -> None:
        """`serve_url`: where the head's Ray Serve proxy listens (services need it)."""
        from ray.job_submission import JobSubmissionClient

        self.headers = {"Authorization": f"Bearer {auth_token}"} if auth_token else {}
        self.dashboard_url = dashboard_url.rstrip("/")
        self.client = JobSubmissionClient(dashboard_url, headers=self.headers or None)
        self.storage_path = storage_path
        self.serve_url = serve_url
        self._log_offsets: dict[str, int] = {}
        # Command runs' refs -> the Ray node their output is on (None: not started yet).
        self._command_nodes: dict[str, str | None] = {}
        self._ddp_refs: set[str] = set()
        self._service_refs: set[str] = set()

    @staticmethod
    def ref_for(request: LaunchRequest) -> str:
        return run_ref(request.job_id, request.attempt)

    def launch_many(self, requests: list[LaunchRequest]) -> list[str | Exception]:
        return launch_each(self, requests)

    def chains(self, request: LaunchRequest) -> bool:
        """A Ray Job starts when submitted: it cannot wait for another run's end."""
        return False

    def launch(self, request: LaunchRequest) -> str:
        ref = self.ref_for(request)
        if self._exists(ref):  # a previous scheduler launched it before crashing: adopt it
            return ref
        metadata = {
            "commonpool_job": request.job_id, "attempt": str(request.attempt), "kind": request.kind,
        }
        if request.kind == "command":
            self._submit_command(request, ref, metadata)
            return ref
        if not is_uri(self.storage_path):  # Ray Train creates the run's prefix in a bucket
            Path(self.storage_path).mkdir(parents=True, exist_ok=True)
        env_vars = {
            **request.env,
            # Train health checks at 0.5 s: a run ends ~1.5 s after its last epoch, not ~6 s.
            "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
            launch_spec.ENV_LAUNCH: launch_spec.dump(request),
            launch_spec.ENV_STORAGE: str(self.storage_path),
        }
        driver = "commonpool.workers.runner.driver"
        if request.kind == "service":
            driver = "commonpool.workers.serving.driver"
            env_vars.update(self._serve_env())
        self.client.submit_job(
            entrypoint=f"{sys.executable} -m {driver}",
            submission_id=ref,
            runtime_env=_runtime_env(request, env_vars),
            entrypoint_num_cpus=0,
            metadata=metadata,
        )
        return ref

    def _serve_env(self) -> dict[str, str]:
        if not self.serve_url:
            raise ValueError(
                "this pool has no Ray Serve address (setting ray_serve_url): it cannot run "
                "services"
            )
        address = httpx.URL(self.serve_url)
        return {ENV_SERVE_HOST: address.host, ENV_SERVE_PORT: str(address.port)}

    def _submit_command(self, request: LaunchRequest, ref: str, metadata: dict[str, str]) -> None:
        """The command itself as the Ray job's entrypoint: on the allocated node (label
        selector), holding the allocation's CPUs, GPUs and memory while it runs."""
        if not request.command or len(request.workers) != 1:
            raise ValueError(
                f"command job {request.job_id} needs a command and exactly one allocation"
            )
        (worker,) = request.workers
        self.client.submit_job(
            entrypoint=shlex.join(request.command),
            submission_id=ref,
            runtime_env=_runtime_env(request, dict(request.env)),
            entrypoint_num_cpus=worker.cpus,
            entrypoint_num_gpus=worker.gpus or None,
            entrypoint_memory=worker.memory_bytes or None,
            entrypoint_label_selector={NODE_LABEL: worker.node_id},
            metadata=metadata,
        )

    def _exists(self, ref: str) -> bool:
        try:
            self.client.get_job_info(ref)
        except RuntimeError:  # "Job <ref> does not exist"
            return False
        return True

    def poll(self, ref: str) -> RunReport:
        try:
            info = self.client.get_job_info(ref)
        except RuntimeError as exc:
            return RunReport(RunStatus.MISSING, f"Ray has no record of {ref}: {exc}")
        self._remember_kind(ref, info)
        status = _STATUS.get(str(info.status), RunStatus.RUNNING)
        message = info.message or ""
        if status is RunStatus.FAILED:
            headline = message.splitlines()[0] if message else "failed"
            if ref in self._command_nodes:
                headline = command_failure(headline, info.driver_exit_code)
            message = self._failure_text(ref, headline, message)
        return RunReport(status, message)

    def _remember_kind(self, ref: str, info: Any) -> None:
        kind = (info.metadata or {}).get("kind")
        if kind == "command":
            self._command_nodes[ref] = info.driver_node_id
        else:
            self._ddp_refs.add(ref)
            if kind == "service":
                self._service_refs.add(ref)

    def service_of(self, ref: str) -> str | None:
        """The Serve application a service run deployed (its job id), if `ref` is one
        (known once polled); None for other runs."""
        return job_of_ref(ref) if ref in self._service_refs else None

    def _failure_text(self, ref: str, headline: str, message: str) -> str:
        """A headline plus the last lines of output: the traceback (or, for a command,
        the stderr) a user needs. Without the logs, the rest of Ray's message."""
        logs = self._output(ref)
        if logs is None:
            rest = message.partition("\n")[2]
            return f"{headline}\n{rest}".rstrip()
        tail = "\n".join(logs.splitlines()[-LOG_TAIL_LINES:])
        return f"{headline}\n{tail}"

    def _output(self, ref: str) -> str | None:
        """The run's output so far; None if it cannot be read (yet).

        A ddp run's output is its driver's, on the head (Train workers' output is
        forwarded to the driver). A command's is written on its own node, so it is
        read from that node's log agent through Ray's state API: `get_job_logs`
        asks the node's job agent, which on a host with several Ray nodes (one
        machine pools, tests) reads the head's copy of the file instead.
        """
        if ref not in self._command_nodes and ref not in self._ddp_refs:
            try:
                self._remember_kind(ref, self.client.get_job_info(ref))
            except RuntimeError:
                return None
        if ref in self._ddp_refs:
            try:
                return self.client.get_job_logs(ref)
            except RuntimeError:
                return None
        node = self._command_nodes[ref]
        if node is None:  # not started when last polled: ask again
            try:
                self._remember_kind(ref, self.client.get_job_info(ref))
            except RuntimeError:
                return None
            node = self._command_nodes[ref]
            if node is None:
                return None
        try:
            response = httpx.get(
                f"{self.dashboard_url}/api/v0/logs/file",
                params={"node_id": node, "filename": _JOB_LOG.format(ref=ref), "lines": -1},
                headers=self.headers,
                timeout=30,
            )
        except httpx.HTTPError:
            return None
        return response.text if response.status_code == 200 else None

    def new_log_lines(self, ref: str) -> list[str]:
        text = self._output(ref)
        if text is None:
            return []
        lines = text.splitlines()
        start = self._log_offsets.get(ref, 0)
        self._log_offsets[ref] = len(lines)
        return lines[start:]

    def live_nodes(self) -> set[str] | None:
        """Our nodes (by label) that Ray's state API reports ALIVE."""
        try:
            response = httpx.get(f"{self.dashboard_url}/api/v0/nodes",
                                 params={"limit": 10_000, "detail": "true"},
                                 headers=self.headers, timeout=10)
            response.raise_for_status()
            nodes = response.json()["data"]["result"]["result"]
        except (httpx.HTTPError, KeyError, ValueError):
            return None
        return {n["labels"][NODE_LABEL] for n in nodes
                if n.get("state") == "ALIVE" and NODE_LABEL in (n.get("labels") or {})}

    def ended_refs(self) -> set[str]:
        return set()  # ends are found by polling

    def checkpoint_location(self, request: LaunchRequest) -> str | None:
        if request.kind != "ddp":
            return None
        return train_run_location(self.storage_path, request.job_id)

    def forget(self, refs: Sequence[str]) -> None:
        """Ray keeps (and expires) its own job records; only our notes of the runs go."""
        for ref in refs:
            self._log_offsets.pop(ref, None)
            self._command_nodes.pop(ref, None)
            self._ddp_refs.discard(ref)
            self._service_refs.discard(ref)

    def withdraw(self, ref: str) -> bool:
        """A Ray Job is never queued behind another run: a chained job here is still
        PLACED, with no run."""
        return True

    def stop(self, ref: str) -> None:
        try:
            self.client.stop_job(ref)
        except RuntimeError:
            pass  # already gone
        self.forget([ref])


Storage = Path | str  # a folder every node mounts, or an object store URI (s3://, gs://...)


def is_uri(storage: Storage) -> bool:
    """An object store (or other pyarrow file system) URI rather than a local folder."""
    return isinstance(storage, str) and "://" in storage


def train_run_location(storage: Storage, job_id: str) -> str:
    """Ray Train's folder of a job's runs (checkpoints): every attempt's run is named after
    the job (`driver.build_trainer`), so a later attempt resumes from it."""
    if is_uri(storage):
        return f"{str(storage).rstrip('/')}/{job_id}"
    return str(Path(storage) / job_id)


def default_storage(state_dir: Path) -> Storage:
    """Where jobs checkpoint: a place every node can reach.

    `COMMONPOOL_CHECKPOINT_STORAGE` may be a URI (`s3://bucket/pool`, as Ray Train
    takes it: in production no node shares a disk) or a folder mounted at the same
    path on every node; without it, on one machine, `<state_dir>/checkpoints`.
    """
    configured = os.environ.get("COMMONPOOL_CHECKPOINT_STORAGE")
    if configured and is_uri(configured):
        return configured
    return Path(configured) if configured else state_dir / "checkpoints"
