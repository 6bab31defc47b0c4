"""The warm per-node executor of command jobs (and of the ranks of warm-started ddp jobs,
`warm_ddp.py`): one long-lived Ray actor per pool node.

A Ray Job per command costs a job supervisor actor, a runtime_env setup and a
driver process before the command runs (about a second here). A command that
ships nothing needs none of that: this actor, started once per node (named
`commonpool-exec-<node id>`, detached, pinned by the node's label, 0 CPUs),
forks the command at once and keeps its record:

- `start(ref, ...)` is idempotent by the run's ref: a second call (a scheduler
  that crashed after launching and the one that replaced it) adopts the run
  instead of starting it again, so no attempt runs twice;
- `start(ref, ..., after=other)` queues the run behind `other`, a run of this
  node still going: it starts the moment `other` ends, however it ends, without
  waiting for the scheduler to record that end (the scheduler's chained
  placements: `scheduler.policy.chain`); `started(ref)` says when it did;
- `wait(ref)` blocks until the run ends and returns its `RunEnd` (with the
  whole output when it is short, so a short command's end and output reach
  the scheduler in one reply); the scheduler holds one such call per run and
  is woken when it returns, so a job's end reaches the scheduler at once, not
  at its next poll;
- `read(ref, offset)` returns output written since `offset` (stdout and
  stderr go to one file per run on this node);
- `stop(ref)` kills the run's process group (SIGTERM, then SIGKILL).

The records live as long as the actor, which outlives scheduler restarts
(detached); a node that dies takes its runs and this actor with it, and the
scheduler then sees the node lost. GPUs are handed out by index from the
node's GPU count (CUDA_VISIBLE_DEVICES), as Ray does for the tasks it places.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

STOP_GRACE_S = 5.0
READ_MAX_BYTES = 1 << 20  # output returned by one `read` call
END_OUTPUT_MAX_BYTES = 64 << 10  # output up to this size comes with the run's end
TAIL_LINES = 40
TAIL_BYTES = 16_384


class NotStartedYet(RuntimeError):
    """The start may succeed on a later try: the launch is in doubt, not failed."""


class AheadNotStarted(NotStartedYet):
    """A run queued behind a run of the same `start_many` call that could not start: its
    slot is not known to be free, so it waits for the next try of both."""


class GpusBusy(NotStartedYet):
    """The node's GPUs are still held by runs that have not ended (e.g. a preempted run
    stopping): the start may succeed once they end, so the launch is retried, not failed."""


@dataclass(frozen=True, slots=True)
class RunEnd:
    """How a run ended: its exit code (None: it never started) and when."""

    exit_code: int | None
    started_at: float
    ended_at: float
    stopped: bool = False
    error: str = ""  # why it could not start (e.g. no such program)
    tail: str = ""  # the last lines of output, for the exit reason
    output: bytes | None = None  # all of it, when at most END_OUTPUT_MAX_BYTES


@dataclass(frozen=True, slots=True)
class _Launch:
    """What a run is started with (kept until then for a run queued behind another)."""

    argv: list[str]
    env: dict[str, str]
    gpus: int
    max_runtime_s: float | None


@dataclass
class _Run:
    launch: _Launch
    log: Path
    started_at: float | None = None  # None: queued behind another run
    gpus: tuple[int, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    end: RunEnd | None = None
    stopped: bool = False
    done: threading.Event = field(default_factory=threading.Event)


class CommandExecutor:
    """Runs command jobs on this node (see the module docstring). Thread-safe: the actor
    is threaded, so `wait` calls block while `start` and `read` are served."""

    def __init__(self, node_id: str, gpu_count: int = 0) -> None:
        self.node_id = node_id
        self.runs_dir = Path(tempfile.mkdtemp(prefix=f"commonpool-exec-{node_id[-8:]}-"))
        self._runs: dict[str, _Run] = {}
        self._free_gpus = list(range(gpu_count))
        self._rendezvous: dict[str, tuple[str, int]] = {}
        self._queued_behind: dict[str, str] = {}  # a running run's ref -> the run after it
        self._lock = threading.Lock()

    def ping(self) -> str:
        return self.node_id

    def rendezvous(self, ref: str) -> tuple[str, int]:
        """This node's address and a port free on it: where rank 0 (`ref`) of a warm-started
        ddp job (`warm_ddp`) listens for its peers (torch's TCPStore binds it at once).
        The same answer for the same ref: a scheduler that crashed between starting one
        rank and the next relaunches the rest with the address the first ones use."""
        import ray

        with self._lock:
            if ref not in self._rendezvous:
                host = ray.util.get_node_ip_address()
                with socket.socket() as sock:
                    sock.bind((host, 0))
                    self._rendezvous[ref] = (host, sock.getsockname()[1])
            return self._rendezvous[ref]

    def start(
        self,
        ref: str,
        argv: list[str],
        env: dict[str, str],
        gpus: int = 0,
        max_runtime_s: float | None = None,
        after: str | None = None,
    ) -> float | None:
        """Start the run (or find the one started for this ref); when it started, or None
        while it waits behind `after` (a run of this node that has not ended; a ref this
        node does not know, or whose run has ended, does not hold it back)."""
        with self._lock:
            existing = self._runs.get(ref)
            if existing is not None:
                return existing.started_at
            workdir = self.runs_dir / ref
            workdir.mkdir(parents=True, exist_ok=True)
            run = _Run(_Launch(argv, env, gpus, max_runtime_s), log=workdir / "output.log")
            ahead = self._runs.get(after) if after else None
            if ahead is not None and not ahead.done.is_set():
                self._runs[ref] = run
                self._queued_behind[after] = ref  # type: ignore[index]
                return None
            if gpus > len(self._free_gpus):
                raise GpusBusy(
                    f"node {self.node_id} has {len(self._free_gpus)} free GPUs, run needs {gpus}"
                )
            self._runs[ref] = run
            self._spawn(ref, run)
            return run.started_at

    def start_many(
        self, starts: list[tuple[str, list[str], dict[str, str], int, float | None, str | None]]
    ) -> list[float | Exception | None]:
        """`start` for each (ref, argv, env, gpus, max_runtime_s, after), in order: one
        call for a step's launches on this node. Each entry is what `start` returned or the
        exception it raised; a run queued behind one of this call that could not start is
        refused too (that run's slot is not known to be free)."""
        results: list[float | Exception | None] = []
        refused: set[str] = set()
        for ref, argv, env, gpus, max_runtime_s, after in starts:
            try:
                if after in refused:
                    raise AheadNotStarted(f"the run ahead of it, {after}, could not start")
                results.append(self.start(ref, argv, env, gpus, max_runtime_s, after))
            except Exception as exc:
                refused.add(ref)
                results.append(exc)
        return results

    def started(self, ref: str) -> float | None:
        """When the run's process started (None: unknown ref, or still queued)."""
        run = self._runs.get(ref)
        return run.started_at if run is not None else None

    def _spawn(self, ref: str, run: _Run) -> None:
        """Fork the run's process and its reaper (called with the lock held)."""
        launch = run.launch
        if launch.gpus > len(self._free_gpus):  # a queued run needs more than its slot gave
            run.started_at = time.time()
            self._finish(ref, run, None, error=f"{launch.gpus} GPUs were not free at its start")
            return
        run.gpus = tuple(self._free_gpus[: launch.gpus])
        del self._free_gpus[: launch.gpus]
        run.started_at = time.time()
        try:
            with open(run.log, "wb") as log:
                run.process = subprocess.Popen(
                    launch.argv,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=run.log.parent,
                    env=_run_env(launch.env, run.gpus),
                    start_new_session=True,  # its own process group, for `stop`
                )
        except OSError as exc:  # no such program, not executable...
            self._finish(ref, run, None, error=f"could not start {launch.argv[0]!r}: {exc}")
            return
        threading.Thread(
            target=self._reap,
            args=(ref, run, launch.max_runtime_s),
            daemon=True,
            name=f"reap-{ref}",
        ).start()

    def _reap(self, ref: str, run: _Run, max_runtime_s: float | None) -> None:
        assert run.process is not None
        try:
            code = run.process.wait(timeout=max_runtime_s)
        except subprocess.TimeoutExpired:
            with open(run.log, "ab") as log:
                log.write(f"\nkilled: max_runtime_s={max_runtime_s:g} reached\n".encode())
            _kill_group(run.process, STOP_GRACE_S)
            code = run.process.wait()
        with self._lock:
            self._finish(ref, run, code)

    def _finish(self, ref: str, run: _Run, code: int | None, error: str = "") -> None:
        """Record the end, give the GPUs back and start the run queued behind this one
        (called with the lock held)."""
        output, tail = _output_and_tail(run.log)
        ended_at = time.time()
        run.end = RunEnd(
            code, run.started_at or ended_at, ended_at, stopped=run.stopped, error=error,
            tail=tail, output=output,
        )  # fmt: skip
        self._free_gpus.extend(run.gpus)
        run.done.set()
        successor = self._queued_behind.pop(ref, None)
        queued = self._runs.get(successor) if successor else None
        if queued is not None and not queued.done.is_set():
            self._spawn(successor, queued)  # type: ignore[arg-type]

    def wait(self, ref: str, timeout_s: float | None = None) -> RunEnd | None:
        """The run's end once it has ended (None: unknown ref, or still running at timeout)."""
        run = self._runs.get(ref)
        if run is None or not run.done.wait(timeout_s):
            return None
        return run.end

    def status(self, ref: str) -> tuple[bool, RunEnd | None]:
        """(known, end): whether this ref was started here, and its end if it has ended."""
        run = self._runs.get(ref)
        return (run is not None, run.end if run is not None else None)

    def read(self, ref: str, offset: int = 0) -> tuple[bytes, int]:
        """Output since byte `offset` (at most READ_MAX_BYTES) and the offset after it."""
        run = self._runs.get(ref)
        if run is None:
            return b"", offset
        try:
            with open(run.log, "rb") as log:
                log.seek(offset)
                data = log.read(READ_MAX_BYTES)
        except FileNotFoundError:
            return b"", offset
        return data, offset + len(data)

    def withdraw(self, ref: str) -> bool:
        """End a run still queued, unstarted; False if it has started (or ended). True for
        a ref this node never saw: nothing of it runs here."""
        with self._lock:
            run = self._runs.get(ref)
            if run is None:
                return True
            if run.process is not None or run.done.is_set():
                return False
            follower = self._queued_behind.pop(ref, None)
            for ahead, queued in list(self._queued_behind.items()):
                if queued == ref:  # the run behind this one now waits for the one ahead
                    del self._queued_behind[ahead]
                    if follower is not None:
                        self._queued_behind[ahead] = follower
            run.stopped = True
            self._finish(ref, run, None)
            return True

    def stop(self, ref: str) -> None:
        """Kill the run's process group and return once its end is recorded (its GPUs are
        free again for the next start); a run still queued ends without starting."""
        if self.withdraw(ref):
            return
        with self._lock:
            run = self._runs.get(ref)
            if run is None or run.done.is_set():
                return
        assert run.process is not None
        run.stopped = True
        _kill_group(run.process, STOP_GRACE_S)
        run.done.wait(STOP_GRACE_S)  # the reaper records the end just after the exit

    def forget(self, refs: list[str]) -> None:
        """Drop ended runs' records and output (the scheduler has stored both)."""
        with self._lock:
            for ref in refs:
                self._rendezvous.pop(ref, None)
                run = self._runs.get(ref)
                if run is not None and run.done.is_set():
                    del self._runs[ref]
                    shutil.rmtree(run.log.parent, ignore_errors=True)


def _output_and_tail(log: Path) -> tuple[bytes | None, str]:
    """(the whole output if short, else None; its last TAIL_LINES lines)."""
    try:
        with open(log, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size <= END_OUTPUT_MAX_BYTES:
                output: bytes | None = handle.read()
                data = output or b""
            else:
                handle.seek(size - TAIL_BYTES)
                output, data = None, handle.read()
    except FileNotFoundError:
        return b"", ""
    return output, "\n".join(data.decode(errors="replace").splitlines()[-TAIL_LINES:])


def _run_env(env: dict[str, str], gpus: tuple[int, ...]) -> dict[str, str]:
    """The node's environment plus the job's; GPUs limited to the ones granted."""
    merged = {**os.environ, **env}
    merged["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)
    return merged


def _kill_group(process: subprocess.Popen[bytes], grace_s: float) -> None:
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue
