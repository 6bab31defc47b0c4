"""The pool's `Runner` on Ray: commands on warm per-node executors, the rest as Ray Jobs.

A command job that ships nothing (no `working_dir`) starts through the
`CommandExecutor` actor of its node (see `executor.py`): one actor call,
no Ray job, no runtime_env. ddp jobs, and commands that ship a working
directory (Ray's runtime_env does the shipping), stay Ray Jobs
(`ray_jobs.RayJobsRunner`).

Refs: a warm run's ref is `<job id>-a<attempt>@<node id>`, so any scheduler
process finds the executor that holds it from the ref alone; Ray Job refs
never contain `@`.

Events: for each warm run this process keeps one pending `wait` call, whose
completion calls `on_run_end` (the scheduler loop's `wake`): a command's end
is recorded at once instead of at the next poll. A scheduler that restarts
re-attaches to the runs it finds in the registry (`status`, then `wait`).

The scheduler process connects to the cluster as a Ray driver, which Ray
allows only on a host that runs a Ray node (the head's, normally). If it
cannot connect, commands go through Ray Jobs instead, and the reason is logged.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from commonpool.scheduler.config import Settings
from commonpool.scheduler.logs import get_logger
from commonpool.scheduler.ports import (
    LaunchRequest,
    RunnerUnavailable,
    RunReport,
    RunStatus,
    run_ref,
)
from commonpool.workers.ray_node import NODE_LABEL, auth_env
from commonpool.workers.runner.executor import READ_MAX_BYTES, CommandExecutor, RunEnd
from commonpool.workers.runner.ray_jobs import RayJobsRunner, Storage, command_failure

NAMESPACE = "commonpool"
# An executor serves its control calls (start, read, stop) on a few threads and the
# blocked `wait` calls, one per running command, on a group of their own, so a node
# full of running commands never holds up a start. Ray creates a group's threads when
# the actor starts: thousands of them failed to start in time on a loaded machine.
EXECUTOR_CALL_THREADS = 8
EXECUTOR_WAIT_THREADS = 512
CALL_TIMEOUT_S = 60.0  # an executor's first start on a node includes its worker start
log = get_logger("runner")


def ray_runner(
    settings: Settings, storage: Storage, head_temp_dir: Path | None = None
) -> RayPoolRunner:
    """The runner of a pool with a Ray cluster, from its settings (`ray_address` empty:
    every run is a Ray Job)."""
    jobs = RayJobsRunner(
        settings.ray_dashboard_url,
        storage,
        auth_token=settings.ray_auth_token,
        serve_url=settings.ray_serve_url or None,
    )
    return RayPoolRunner(
        jobs,
        settings.ray_address,
        auth_token_file=settings.ray_auth_token_file,
        head_temp_dir=head_temp_dir,
    )


def executor_name(node_id: str) -> str:
    return f"commonpool-exec-{node_id}"


def warm_ref(request: LaunchRequest) -> str:
    return f"{run_ref(request.job_id, request.attempt)}@{request.workers[0].node_id}"


class RayPoolRunner:
    def __init__(
        self,
        jobs: RayJobsRunner,
        ray_address: str,
        *,
        auth_token_file: Path | None = None,
        head_temp_dir: Path | None = None,
    ) -> None:
        """`jobs` runs what the executors do not; `ray_address` is the head's GCS address."""
        self.jobs = jobs
        self.ray_address = ray_address
        self.auth_token_file = auth_token_file
        self.head_temp_dir = head_temp_dir
        self.on_run_end: Callable[[], None] = lambda: None
        self._executors: dict[str, Any] = {}
        self._ends: dict[str, Future[RunEnd | None]] = {}
        self._offsets: dict[str, int] = {}
        self._started: dict[str, float] = {}  # warm runs started by this process: when
        self._just_ended: set[str] = set()
        self._connected: bool | None = None  # None: not tried yet
        self._saved_env: dict[str, str | None] = {}
        self._lock = threading.Lock()

    # -- routing ---------------------------------------------------------------
    def _warm(self, request: LaunchRequest) -> bool:
        return (
            request.kind == "command"
            and not request.working_dir
            and len(request.workers) == 1
            and self._connect()
        )

    def ref_for(self, request: LaunchRequest) -> str:
        return warm_ref(request) if self._warm(request) else self.jobs.ref_for(request)

    @staticmethod
    def _node_of(ref: str) -> str | None:
        return ref.partition("@")[2] or None

    # -- Runner ----------------------------------------------------------------
    def launch(self, request: LaunchRequest) -> str:
        if not self._warm(request):
            return self.jobs.launch(request)
        import ray

        ref = warm_ref(request)
        (worker,) = request.workers
        if not request.command:
            raise ValueError(f"command job {request.job_id} has no command")
        executor = self._executor(worker.node_id)
        try:
            self._started[ref] = ray.get(
                executor.start.remote(
                    ref, list(request.command), dict(request.env), worker.gpus,
                    request.max_runtime_s,
                ),
                timeout=CALL_TIMEOUT_S,
            )  # fmt: skip
        except ray.exceptions.RayActorError as exc:
            self._executors.pop(worker.node_id, None)  # dead: the next launch starts another
            why = next(iter(str(exc).splitlines()), "") or type(exc).__name__
            raise RunnerUnavailable(f"node {worker.node_id}'s executor died: {why}") from exc
        self._watch(ref, executor)
        return ref

    def poll(self, ref: str) -> RunReport:
        node = self._node_of(ref)
        if node is None:
            return self.jobs.poll(ref)
        future = self._ends.get(ref)
        if future is None:  # started by an earlier scheduler process: re-attach
            future = self._reattach(ref, node)
            if future is None:
                return RunReport(RunStatus.MISSING, f"node {node}'s executor has no run {ref}")
        if not future.done():
            return RunReport(RunStatus.RUNNING, started_at=self._started.get(ref))
        try:
            end = future.result()
        except Exception as exc:  # the executor (so its node, or the actor) died
            return RunReport(RunStatus.MISSING, f"executor of node {node} is gone: {exc}")
        return _report(ref, end)

    def new_log_lines(self, ref: str) -> list[str]:
        node = self._node_of(ref)
        if node is None:
            return self.jobs.new_log_lines(ref)
        import ray

        offset = self._offsets.get(ref, 0)
        end = self._end_if_known(ref)
        if end is not None and end.output is not None:  # it came with the end: no call
            self._offsets[ref] = len(end.output)
            return end.output[offset:].decode(errors="replace").splitlines()
        executor = self._executor(node, create=False)
        if executor is None:
            return []
        text = b""
        try:
            while True:  # output can exceed one read; a short read was all there was
                data, offset = ray.get(executor.read.remote(ref, offset), timeout=CALL_TIMEOUT_S)
                text += data
                if len(data) < READ_MAX_BYTES:
                    break
        except Exception:  # the executor is gone: its output with it
            return []
        self._offsets[ref] = offset
        return text.decode(errors="replace").splitlines()

    def stop(self, ref: str) -> None:
        node = self._node_of(ref)
        if node is None:
            self.jobs.stop(ref)
            return
        import ray

        executor = self._executor(node, create=False)
        if executor is not None:
            try:
                ray.get(executor.stop.remote(ref), timeout=CALL_TIMEOUT_S)
            except Exception as exc:
                log.warning("run.stop_failed", ref=ref, error=str(exc))
        self._forget(ref)

    def forget(self, ref: str) -> None:
        """The registry holds the run's end and output: drop the executor's record; for a
        service, make sure its Serve application is gone (`_delete_application`)."""
        node = self._node_of(ref)
        if node is None:
            application = self.jobs.service_of(ref)
            self.jobs.forget(ref)
            if application is not None:
                self._delete_application(application)
            return
        executor = self._executor(node, create=False)
        if executor is not None:
            executor.forget.remote([ref])  # no reply needed
        self._forget(ref)

    def _delete_application(self, name: str) -> None:
        """Delete a service's Serve application after its run ended. Its driver deletes it
        when stopped (SIGTERM); a driver that crashed or was killed could not, and the
        replicas would keep serving (and holding their nodes' CPUs) with no job behind
        them. Deleting an application that is already gone does nothing."""
        if not self._connect():
            log.warning("service.cleanup_skipped", application=name,
                        reason="not connected to the cluster as a driver")
            return
        try:
            from ray import serve

            serve.delete(name, _blocking=False)
        except Exception as exc:
            log.warning("service.cleanup_failed", application=name, error=str(exc))

    def live_nodes(self) -> set[str] | None:
        return self.jobs.live_nodes()

    def close(self) -> None:
        """Leave the cluster (the executors stay: they outlive scheduler processes)."""
        if self._connected:
            import ray

            ray.shutdown()
            for key, value in self._saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            _reload_auth_config()
        self._connected = None
        self._executors.clear()
        self._ends.clear()

    def ended_refs(self) -> set[str]:
        with self._lock:
            ended, self._just_ended = self._just_ended, set()
        return ended

    # -- internals -------------------------------------------------------------
    def _ended(self, ref: str) -> None:
        """A run's `wait` returned (on Ray's thread): note it and wake the scheduler."""
        with self._lock:
            self._just_ended.add(ref)
        self.on_run_end()

    def _end_if_known(self, ref: str) -> RunEnd | None:
        """The run's end if its `wait` has already returned one, else None."""
        future = self._ends.get(ref)
        if future is None or not future.done() or future.exception() is not None:
            return None
        return future.result()

    def _forget(self, ref: str) -> None:
        self._ends.pop(ref, None)
        self._offsets.pop(ref, None)
        self._started.pop(ref, None)

    def _connect(self) -> bool:
        """Join the cluster as a driver once; False (and Ray Jobs for commands) if we can't."""
        if self._connected is not None:
            return self._connected
        if not self.ray_address:
            self._connected = False
            return False
        with self._lock:
            if self._connected is not None:
                return self._connected
            import ray

            env = auth_env(self.auth_token_file)
            self._saved_env = {key: os.environ.get(key) for key in env}
            os.environ.update(env)
            _reload_auth_config()
            try:
                ray.init(
                    address=self.ray_address,
                    namespace=NAMESPACE,
                    logging_level="WARNING",
                    log_to_driver=False,
                    _temp_dir=str(self.head_temp_dir) if self.head_temp_dir else None,
                )
                self._connected = True
            except Exception as exc:
                log.warning("runner.no_warm_executors", reason=str(exc))
                self._connected = False
            return self._connected

    def _executor(self, node_id: str, create: bool = True) -> Any:
        """The node's executor actor handle (started on first use if `create`)."""
        handle = self._executors.get(node_id)
        if handle is not None:
            return handle
        import ray

        if not self._connect():
            return None
        if create:
            handle = (
                ray.remote(concurrency_groups={"waits": EXECUTOR_WAIT_THREADS})(CommandExecutor)
                .options(
                    name=executor_name(node_id),
                    namespace=NAMESPACE,
                    lifetime="detached",
                    get_if_exists=True,
                    num_cpus=0,
                    max_concurrency=EXECUTOR_CALL_THREADS,
                    label_selector={NODE_LABEL: node_id},
                )
                .remote(node_id, _gpu_count(node_id))
            )
        else:
            try:
                handle = ray.get_actor(executor_name(node_id), namespace=NAMESPACE)
            except ValueError:
                return None
        self._executors[node_id] = handle
        return handle

    def _watch(self, ref: str, executor: Any) -> Future[RunEnd | None]:
        future = self._ends.get(ref)
        if future is None:
            future = executor.wait.options(concurrency_group="waits").remote(ref).future()
            future.add_done_callback(lambda _: self._ended(ref))
            self._ends[ref] = future
        return future

    def _reattach(self, ref: str, node: str) -> Future[RunEnd | None] | None:
        import ray

        executor = self._executor(node, create=False)
        if executor is None:
            return None
        try:
            known, _ = ray.get(executor.status.remote(ref), timeout=CALL_TIMEOUT_S)
        except Exception:
            return None
        return self._watch(ref, executor) if known else None


def _reload_auth_config() -> None:
    """Make Ray re-read RAY_AUTH_* from the environment: it caches its config and token
    at first use (here, possibly before this process knew the pool's token)."""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def _report(ref: str, end: RunEnd | None) -> RunReport:
    if end is None:
        return RunReport(RunStatus.MISSING, f"the executor has no run {ref}")
    if end.stopped:
        return RunReport(RunStatus.STOPPED, "stopped")
    if end.error:
        return RunReport(RunStatus.FAILED, end.error, started_at=end.started_at)
    if end.exit_code == 0:
        return RunReport(RunStatus.SUCCEEDED, started_at=end.started_at)
    message = f"{command_failure('', end.exit_code)}\n{end.tail}".rstrip()
    return RunReport(RunStatus.FAILED, message, started_at=end.started_at)


def _gpu_count(node_id: str) -> int:
    """GPUs Ray counts on the node labelled `node_id` (the executor hands them out)."""
    import ray

    for node in ray.nodes():
        if node.get("Alive") and node.get("Labels", {}).get(NODE_LABEL) == node_id:
            return int(node.get("Resources", {}).get("GPU", 0))
    return 0
