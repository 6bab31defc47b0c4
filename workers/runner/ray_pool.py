"""The pool's `Runner` on Ray: warm runs on per-node executors, the rest as Ray Jobs.

A command job that ships nothing (no `working_dir`) starts through the
`CommandExecutor` actor of its node (see `executor.py`): one actor call,
no Ray job, no runtime_env. In a pool that starts ddp jobs warm
(`ddp_start = "warm"`), a torch ddp job that ships nothing either (no
`working_dir`, no artifact inputs, no model to publish) starts the same
way, one process per rank (`warm_ddp.py`), without Ray Train. Everything
else is a Ray Job (`ray_jobs.RayJobsRunner`): Ray Train's TorchTrainer for
ddp, runtime_env shipping a working directory.

Refs: a warm command's ref is `<job id>-a<attempt>@<node id>` and a warm ddp
run's `<job id>-a<attempt>@ddp:<node of rank 0>,<node of rank 1>,...` (each
rank's executor knows it as `<ref>#<rank>`), so any scheduler process finds
the executors that hold a run from its ref alone; Ray Job refs never contain
`@`.

Events: for each warm run this process keeps one pending `wait` call, whose
completion calls `on_run_end` (the scheduler loop's `wake`): a command's end
is recorded at once instead of at the next poll. A scheduler that restarts
re-attaches to the runs it finds in the registry (`status`, then `wait`).

The scheduler process connects to the cluster as a Ray driver, which Ray
allows only on a host that runs a Ray node (the head's, normally). If it
cannot connect, commands go through Ray Jobs instead, and the reason is logged.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from commonpool.scheduler.config import Settings
from commonpool.scheduler.logs import get_logger
from commonpool.scheduler.ports import (
    LaunchInDoubt,
    LaunchRequest,
    RunnerUnavailable,
    RunReport,
    RunStatus,
    WorkerPlacement,
    run_ref,
)
from commonpool.workers.job import ENV_CHECKPOINT_DIR, ENV_NODE_ID
from commonpool.workers.ray_node import NODE_LABEL, auth_env
from commonpool.workers.runner import launch_spec
from commonpool.workers.runner.executor import (
    READ_MAX_BYTES,
    CommandExecutor,
    GpusBusy,
    NotStartedYet,
    RunEnd,
)
from commonpool.workers.runner.ray_jobs import RayJobsRunner, Storage, command_failure, is_uri

NAMESPACE = "commonpool"
# An executor serves its control calls (start, read, stop) on a few threads and the
# blocked `wait` calls, one per running command, on a group of their own, so a node
# full of running commands never holds up a start. Ray creates a group's threads when
# the actor starts: thousands of them failed to start in time on a loaded machine.
EXECUTOR_CALL_THREADS = 8
EXECUTOR_WAIT_THREADS = 512
CALL_TIMEOUT_S = 60.0  # an executor's first start on a node includes its worker start
WARM_DDP = "ddp:"  # marks a warm ddp run's list of rank nodes in its ref
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
        warm_ddp=settings.ddp_start == "warm",
    )


def executor_name(node_id: str) -> str:
    return f"commonpool-exec-{node_id}"


def warm_ref(request: LaunchRequest) -> str:
    ref = run_ref(request.job_id, request.attempt)
    if request.kind == "command":
        return f"{ref}@{request.workers[0].node_id}"
    return f"{ref}@{WARM_DDP}" + ",".join(w.node_id for w in _by_rank(request))


def rank_runs(ref: str) -> list[tuple[str, str]]:
    """(node, the executor's key) of each rank of a warm run, in rank order; [] for a
    Ray Job's ref. A warm command is one rank whose key is the ref itself."""
    where = ref.partition("@")[2]
    if not where:
        return []
    if not where.startswith(WARM_DDP):
        return [(where, ref)]
    nodes = where.removeprefix(WARM_DDP).split(",")
    return [(node, f"{ref}#{rank}") for rank, node in enumerate(nodes)]


def _by_rank(request: LaunchRequest) -> list[WorkerPlacement]:
    return sorted(request.workers, key=lambda w: w.rank)


class RayPoolRunner:
    def __init__(
        self,
        jobs: RayJobsRunner,
        ray_address: str,
        *,
        auth_token_file: Path | None = None,
        head_temp_dir: Path | None = None,
        warm_ddp: bool = False,
    ) -> None:
        """`jobs` runs what the executors do not; `ray_address` is the head's GCS address;
        `warm_ddp`: start the ddp jobs that ship nothing on the executors (module docstring)."""
        self.jobs = jobs
        self.ray_address = ray_address
        self.auth_token_file = auth_token_file
        self.head_temp_dir = head_temp_dir
        self.warm_ddp = warm_ddp
        self.call_timeout_s = CALL_TIMEOUT_S
        self.on_run_end: Callable[[], None] = lambda: None
        self._executors: dict[str, Any] = {}
        self._ends: dict[str, Future[RunEnd | None]] = {}  # by executor key
        self._offsets: dict[str, int] = {}  # by executor key
        self._started: dict[str, float] = {}  # warm runs started by this process: when
        self._stopping: set[str] = set()  # warm ddp runs whose other ranks were told to stop
        self._just_ended: set[str] = set()
        self._connected: bool | None = None  # None: not tried yet
        self._saved_env: dict[str, str | None] = {}
        self._lock = threading.Lock()

    # -- routing ---------------------------------------------------------------
    def _warm(self, request: LaunchRequest) -> bool:
        if request.working_dir:
            return False
        if request.kind == "command":
            return len(request.workers) == 1 and self._connect()
        return (
            request.kind == "ddp"
            and self.warm_ddp
            and request.framework == "torch"
            and not request.inputs
            and not request.publish
            and not is_uri(self.jobs.storage_path)  # the ranks keep checkpoints in a folder
            and self._connect()
        )

    def ref_for(self, request: LaunchRequest) -> str:
        return warm_ref(request) if self._warm(request) else self.jobs.ref_for(request)

    def chains(self, request: LaunchRequest) -> bool:
        """A warm command behind a warm command of its node: that node's executor queues it."""
        return (
            request.after is not None
            and request.kind == "command"
            and self._warm(request)
            and rank_runs(request.after) == [(request.workers[0].node_id, request.after)]
        )

    # -- Runner ----------------------------------------------------------------
    def launch(self, request: LaunchRequest) -> str:
        if not self._warm(request):
            return self.jobs.launch(request)
        import ray

        ref = warm_ref(request)
        runs = rank_runs(ref)
        after = request.after if self.chains(request) else None
        try:
            started = ray.get(
                [
                    self._executor(node).start.remote(
                        key, argv, env, worker.gpus, request.max_runtime_s, after
                    )
                    for (node, key), (argv, env), worker in zip(
                        runs, self._rank_commands(request), _by_rank(request), strict=True
                    )
                ],
                timeout=self.call_timeout_s,
            )
        except ray.exceptions.RayError as exc:
            failure = self._start_failure(exc, runs)
            if failure is exc:
                raise
            raise failure from exc
        if None not in started:  # None: queued behind `after` (a command's one rank)
            self._started[ref] = min(started)
        for node, key in runs:
            self._watch(ref, key, self._executors[node])
        return ref

    def launch_many(self, requests: list[LaunchRequest]) -> list[str | Exception]:
        """Warm commands with one `start_many` call per node, in order (a chained command
        after the run it waits behind); anything else with `launch`."""
        import ray

        outcomes: list[str | Exception] = [RuntimeError("not launched")] * len(requests)
        by_node: dict[str, list[tuple[int, tuple[Any, ...]]]] = {}
        for i, request in enumerate(requests):
            try:
                if request.kind != "command" or not self._warm(request):
                    outcomes[i] = self.launch(request)
                    continue
                ((argv, env),) = self._rank_commands(request)
            except Exception as exc:
                outcomes[i] = exc
                continue
            after = request.after if self.chains(request) else None
            key = warm_ref(request)
            start = (key, argv, env, request.workers[0].gpus, request.max_runtime_s, after)
            by_node.setdefault(request.workers[0].node_id, []).append((i, start))
        calls = {
            node: self._executor(node).start_many.remote([start for _, start in starts])
            for node, starts in by_node.items()
        }
        for node, call in calls.items():
            starts = by_node[node]
            try:
                results = ray.get(call, timeout=self.call_timeout_s)
            except ray.exceptions.RayError as exc:
                failure = self._start_failure(exc, [(node, start[0]) for _, start in starts])
                for i, _ in starts:
                    outcomes[i] = failure
                continue
            for (i, start), result in zip(starts, results, strict=True):
                outcomes[i] = self._started_command(node, start[0], result)
        return outcomes

    def _started_command(self, node: str, ref: str, result: float | Exception | None) -> Any:
        """A warm command's launch outcome from its executor's `start_many` entry."""
        if isinstance(result, NotStartedYet):
            return LaunchInDoubt(_why_not_yet(result))
        if isinstance(result, Exception):
            return result
        if result is not None:  # None: queued behind the run ahead of it
            self._started[ref] = result
        self._watch(ref, ref, self._executors[node])
        return ref

    def _start_failure(self, exc: Exception, runs: list[tuple[str, str]]) -> Exception:
        """What a failed start call means for the launch of `runs` ((node, key) pairs):
        no answer in time is a launch in doubt, a dead executor makes the pool unavailable
        (its handle is dropped: the next launch starts another), GPUs still held by a
        stopping run are a passing doubt, any other error is the run's."""
        import ray

        nodes = ", ".join(sorted({node for node, _ in runs}))
        if isinstance(exc, ray.exceptions.GetTimeoutError):
            return LaunchInDoubt(
                f"no answer from the executor of node {nodes} in {self.call_timeout_s:g} s"
            )
        if isinstance(exc, ray.exceptions.RayTaskError):
            if isinstance(exc.cause, NotStartedYet):
                return LaunchInDoubt(_why_not_yet(exc.cause))
            return exc
        if isinstance(exc, ray.exceptions.RayActorError):
            for node, key in runs:  # no rank may be left waiting for the rest
                executor = self._executors.pop(node, None)
                if executor is not None:
                    with contextlib.suppress(Exception):  # that one is the dead one
                        executor.stop.remote(key)
            why = next(iter(str(exc).splitlines()), "") or type(exc).__name__
            return RunnerUnavailable(f"executor died (node {nodes}): {why}")
        return exc

    def _rank_commands(self, request: LaunchRequest) -> list[tuple[list[str], dict[str, str]]]:
        """Each rank's argv and environment (a command job: its one command)."""
        if request.kind == "command":
            if not request.command:
                raise ValueError(f"command job {request.job_id} has no command")
            return [(list(request.command), dict(request.env))]
        import ray

        workers = _by_rank(request)
        (node, key), *_ = rank_runs(warm_ref(request))
        host, port = ray.get(
            self._executor(node).rendezvous.remote(key), timeout=self.call_timeout_s
        )
        common = {
            **request.env,
            launch_spec.ENV_LAUNCH: launch_spec.dump(request),
            ENV_CHECKPOINT_DIR: self._warm_checkpoints(request),
            "MASTER_ADDR": host,
            "MASTER_PORT": str(port),
            "WORLD_SIZE": str(len(workers)),
        }
        argv = [sys.executable, "-m", "commonpool.workers.runner.warm_ddp"]
        commands = []
        for worker in workers:
            on_node = [w.rank for w in workers if w.node_id == worker.node_id]
            env = {
                **common,
                "RANK": str(worker.rank),
                "LOCAL_RANK": str(on_node.index(worker.rank)),
                "LOCAL_WORLD_SIZE": str(len(on_node)),
                ENV_NODE_ID: worker.node_id,
                # As Ray Train does: a rank's intra-op threads match its CPUs.
                "OMP_NUM_THREADS": str(max(1, int(worker.cpus))),
            }
            commands.append((argv, env))
        return commands

    def checkpoint_location(self, request: LaunchRequest) -> str | None:
        if request.kind == "ddp" and self._warm(request):
            return self._warm_checkpoints(request)
        return self.jobs.checkpoint_location(request)

    def _warm_checkpoints(self, request: LaunchRequest) -> str:
        """Where a warm run's rank 0 keeps checkpoints (`job.ENV_CHECKPOINT_DIR`)."""
        return str(Path(self.jobs.storage_path) / request.job_id / "warm")

    def poll(self, ref: str) -> RunReport:
        ranks = rank_runs(ref)
        if not ranks:
            return self.jobs.poll(ref)
        futures = []
        for node, key in ranks:
            future = self._ends.get(key) or self._reattach(ref, key, node)
            if future is None:
                return RunReport(RunStatus.MISSING, f"node {node}'s executor has no run {key}")
            futures.append(future)
        ends: dict[int, RunEnd | None] = {}  # ranks that have ended (None: unknown there)
        for rank, ((node, _), future) in enumerate(zip(ranks, futures, strict=True)):
            if not future.done():
                continue
            try:
                ends[rank] = future.result()
            except Exception as exc:  # the executor (so its node, or the actor) died
                self._stop_ranks(ref)  # the other ranks would wait for it in vain
                return RunReport(RunStatus.MISSING, f"executor of node {node} is gone: {exc}")
        if not ends and len(ranks) == 1 and not self._has_started(ref):
            return RunReport(RunStatus.PENDING, "waiting for the run ahead of it to end")
        return self._combined(ref, [key for _, key in ranks], ends)

    def _has_started(self, ref: str) -> bool:
        """Whether a command's run has started: known since its launch, else (a chained run
        queued behind another, or a run this process adopted) asked of its executor."""
        if ref in self._started:
            return True
        import ray

        ((node, key),) = rank_runs(ref)
        executor = self._executor(node, create=False)
        try:
            started = ray.get(executor.started.remote(key), timeout=self.call_timeout_s)
        except Exception:  # the executor is gone: its wait says so
            return False
        if started is None:
            return False
        self._started[ref] = started
        return True

    def _combined(self, ref: str, keys: list[str], ends: dict[int, RunEnd | None]) -> RunReport:
        """One report of a run's ranks: running until every rank has ended; then failed
        with the earliest failure's message (rank-prefixed when there are several ranks).
        A rank that fails leaves its peers blocked in a collective: they are stopped."""
        failed = [
            (end.ended_at if end else 0.0, rank, _report(keys[rank], end))
            for rank, end in ends.items()
            if end is None or (not end.stopped and (end.error or end.exit_code != 0))
        ]
        if len(ends) < len(keys):
            if failed and ref not in self._stopping:
                self._stopping.add(ref)
                self._stop_ranks(ref)
            return RunReport(RunStatus.RUNNING, started_at=self._started.get(ref))
        if failed:
            _, rank, first = min(failed, key=lambda f: (f[0], f[1]))
            prefix = f"rank {rank}: " if len(keys) > 1 else ""
            return RunReport(first.status, prefix + first.message, started_at=first.started_at)
        reports = [_report(keys[rank], ends[rank]) for rank in range(len(keys))]
        if any(r.status is RunStatus.STOPPED for r in reports):
            return RunReport(RunStatus.STOPPED, "stopped")
        return reports[0]

    def new_log_lines(self, ref: str) -> list[str]:
        ranks = rank_runs(ref)
        if not ranks:
            return self.jobs.new_log_lines(ref)
        lines: list[str] = []
        for rank, (node, key) in enumerate(ranks):
            prefix = f"[rank {rank}] " if rank else ""
            lines += [prefix + line for line in self._new_output(node, key)]
        return lines

    def _new_output(self, node: str, key: str) -> list[str]:
        import ray

        offset = self._offsets.get(key, 0)
        end = self._end_if_known(key)
        if end is not None and end.output is not None:  # it came with the end: no call
            self._offsets[key] = len(end.output)
            return end.output[offset:].decode(errors="replace").splitlines()
        executor = self._executor(node, create=False)
        if executor is None:
            return []
        text = b""
        try:
            while True:  # output can exceed one read; a short read was all there was
                data, offset = ray.get(
                    executor.read.remote(key, offset), timeout=self.call_timeout_s
                )
                text += data
                if len(data) < READ_MAX_BYTES:
                    break
        except Exception:  # the executor is gone: its output with it
            return []
        self._offsets[key] = offset
        return text.decode(errors="replace").splitlines()

    def withdraw(self, ref: str) -> bool:
        import ray

        ranks = rank_runs(ref)
        if len(ranks) != 1:  # a Ray Job or a warm ddp run: never queued
            return self.jobs.withdraw(ref) if not ranks else True
        ((node, key),) = ranks
        executor = self._executor(node, create=False)
        if executor is None:
            return True  # no executor on its node: nothing of it runs there
        try:
            return bool(ray.get(executor.withdraw.remote(key), timeout=self.call_timeout_s))
        except Exception as exc:  # unsure whether it started: it stays
            log.warning("run.withdraw_failed", ref=key, error=str(exc))
            return False

    def stop(self, ref: str) -> None:
        if not rank_runs(ref):
            self.jobs.stop(ref)
            return
        self._stop_ranks(ref, wait=True)
        self._forget(ref)

    def _stop_ranks(self, ref: str, wait: bool = False) -> None:
        import ray

        calls = []
        for node, key in rank_runs(ref):
            executor = self._executor(node, create=False)
            if executor is not None:
                calls.append((key, executor.stop.remote(key)))
        if not wait:
            return
        for key, call in calls:
            try:
                ray.get(call, timeout=self.call_timeout_s)
            except Exception as exc:
                log.warning("run.stop_failed", ref=key, error=str(exc))

    def forget(self, refs: Sequence[str]) -> None:
        """The registry holds the runs' ends and output: drop the executors' records (one
        message per node); for a service, make sure its Serve application is gone
        (`_delete_application`)."""
        keys_by_node: dict[str, list[str]] = defaultdict(list)
        for ref in refs:
            ranks = rank_runs(ref)
            if not ranks:
                application = self.jobs.service_of(ref)
                self.jobs.forget([ref])
                if application is not None:
                    self._delete_application(application)
                continue
            for node, key in ranks:
                keys_by_node[node].append(key)
            self._forget(ref)
        for node, keys in keys_by_node.items():
            executor = self._executor(node, create=False)
            if executor is not None:
                executor.forget.remote(keys)  # no reply needed

    def _delete_application(self, name: str) -> None:
        """Delete a service's Serve application after its run ended. Its driver deletes it
        when stopped (SIGTERM); a driver that crashed or was killed could not, and the
        replicas would keep serving (and holding their nodes' CPUs) with no job behind
        them. Deleting an application that is already gone does nothing."""
        if not self._connect():
            log.warning(
                "service.cleanup_skipped",
                application=name,
                reason="not connected to the cluster as a driver",
            )
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

    def _end_if_known(self, key: str) -> RunEnd | None:
        """The rank's end if its `wait` has already returned one, else None."""
        future = self._ends.get(key)
        if future is None or not future.done() or future.exception() is not None:
            return None
        return future.result()

    def _forget(self, ref: str) -> None:
        for _, key in rank_runs(ref):
            self._ends.pop(key, None)
            self._offsets.pop(key, None)
        self._started.pop(ref, None)
        self._stopping.discard(ref)

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
            from ray._private import ray_constants

            env = auth_env(self.auth_token_file)
            self._saved_env = {key: os.environ.get(key) for key in env}
            os.environ.update(env)
            _reload_auth_config()
            # A driver installs absl's failure-signal handler, SIGTERM included, and a
            # process that then handles SIGTERM itself aborts on its way out (exit -6):
            # `commonpool up`/`server` own SIGTERM (drain, stop) and must exit 0. This is
            # RAY_DISABLE_FAILURE_SIGNAL_HANDLER, read when Ray is imported, which has
            # happened by now; it applies to this process only, not to Ray's own.
            ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = True
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

    def _watch(self, ref: str, key: str, executor: Any) -> Future[RunEnd | None]:
        """Hold the rank's `wait` call; its return wakes the scheduler for the run."""
        future = self._ends.get(key)
        if future is None:
            future = executor.wait.options(concurrency_group="waits").remote(key).future()
            future.add_done_callback(lambda _: self._ended(ref))
            self._ends[key] = future
        return future

    def _reattach(self, ref: str, key: str, node: str) -> Future[RunEnd | None] | None:
        import ray

        executor = self._executor(node, create=False)
        if executor is None:
            return None
        try:
            known, _ = ray.get(executor.status.remote(key), timeout=self.call_timeout_s)
        except Exception:
            return None
        return self._watch(ref, key, executor) if known else None


def _reload_auth_config() -> None:
    """Make Ray re-read RAY_AUTH_* from the environment: it caches its config and token
    at first use (here, possibly before this process knew the pool's token)."""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def _why_not_yet(exc: NotStartedYet) -> str:
    """A start to try again: why, for the job's in-doubt reason."""
    if isinstance(exc, GpusBusy):
        return f"{exc}: a stopping run still holds them"
    return str(exc)


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
