"""`Runner` on local processes, for tests and small single-machine pools (not for DDP).

One run is one detached process on this machine (its own session, so a
scheduler crash does not take it down), started by a tiny `/bin/sh` wrapper
that keeps the run's records in a runs directory, named by the run's
deterministic ref `<job id>-a<attempt>`:

- `<ref>.start`: created exclusively (`O_EXCL`) by the wrapper *before* it runs
  anything, holding its pid. This is the claim: of any number of wrappers
  started for one ref (e.g. by a scheduler that was SIGKILLed after spawning
  and the one that replaced it), exactly one creates it and runs the job; the
  others exit without running anything. Its mtime is when the run started.
- `<ref>.end`: `exit <code>` written by the wrapper when the job ended, or
  `stopped` written by `stop()`. Its mtime is when the run ended.
- `<ref>.log`: the job's stdout and stderr.
- `journal`: one appended line per claim (`run <ref> <pid>`), refused claim
  (`taken <ref> <pid>`) and end (`end <ref> <code>`): the run records that
  tests read to prove no attempt ran twice.

So every method is idempotent and needs no memory of earlier calls: a new
scheduler process polls, adopts and stops the runs an earlier one started.
`launch()` returns only once the ref is claimed (by its wrapper or another),
so a ref the launcher records always has its start record.

What runs: `command_for(mode)` turns a launch into argv. `local` runs a
command job's argv as it is, and a ddp job's `module:function` entrypoint
in a fresh Python with the `args` dict; `local-sleep` is the
simulator-style fast job (sleep `args["duration_s"]`, default 0.01 s, then
exit `args["exit_code"]`, default 0), for chaos tests of the scheduler at
thousands of jobs. A job runs as one process whatever its `workers`;
`max_runtime_s` is not enforced here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from commonpool.scheduler.ports import LaunchRequest, RunReport, RunStatus, launch_each, run_ref

# $1: the records' path prefix (<runs_dir>/<ref>); the rest: the job's argv.
# SIGPIPE is ignored so that a scheduler dying before it reads the answer
# cannot kill a wrapper between its claim and its run.
_WRAPPER = r"""
trap '' PIPE
set -C
p=$1; shift
ref=${p##*/}; journal=${p%/*}/journal
if ! { echo "$$" > "$p.start"; } 2>/dev/null; then
  echo taken
  echo "taken $ref $$" >> "$journal"
  exit 0
fi
echo claimed
exec >| "$p.log" 2>&1 < /dev/null
echo "run $ref $$" >> "$journal"
"$@"
rc=$?
{ echo "exit $rc" > "$p.end"; } 2>/dev/null
echo "end $ref $rc" >> "$journal"
"""
_PYTHON_ENTRY = (
    "import importlib, json, sys; module, _, name = sys.argv[1].partition(':'); "
    "getattr(importlib.import_module(module), name)(json.loads(sys.argv[2]))"
)
LOG_TAIL_LINES = 40
_PROC = Path("/proc")


def python_command(request: LaunchRequest) -> list[str]:
    """The job's `module:function`, called with its args in a fresh interpreter."""
    return [sys.executable, "-c", _PYTHON_ENTRY, request.entrypoint, json.dumps(request.args)]


def local_command(request: LaunchRequest) -> list[str]:
    """A command job's own argv; a ddp job's entrypoint (see `python_command`)."""
    if request.kind == "command":
        if not request.command:
            raise ValueError(f"command job {request.job_id} has no command")
        return list(request.command)
    return python_command(request)


def sleep_command(request: LaunchRequest) -> list[str]:
    """A simulator-style job: sleep `duration_s`, exit `exit_code` (no Python started)."""
    duration = float(request.args.get("duration_s", 0.01))
    code = int(request.args.get("exit_code", 0))
    if code == 0:
        return ["sleep", f"{duration:.3f}"]
    return ["/bin/sh", "-c", 'sleep "$0"; exit "$1"', f"{duration:.3f}", str(code)]


def command_for(mode: str) -> Callable[[LaunchRequest], list[str]]:
    return {"local": local_command, "local-sleep": sleep_command}[mode]


class LocalRunsRunner:
    def __init__(
        self,
        runs_dir: Path,
        command: Callable[[LaunchRequest], list[str]] = local_command,
    ) -> None:
        self.runs_dir = runs_dir
        self.command = command
        self._log_offsets: dict[str, int] = {}
        self._children: list[subprocess.Popen[bytes]] = []

    @staticmethod
    def ref_for(request: LaunchRequest) -> str:
        return run_ref(request.job_id, request.attempt)

    def launch_many(self, requests: list[LaunchRequest]) -> list[str | Exception]:
        return launch_each(self, requests)

    def chains(self, request: LaunchRequest) -> bool:
        """A local process starts when launched: it cannot wait for another run's end."""
        return False

    def _path(self, ref: str, kind: str) -> Path:
        return self.runs_dir / f"{ref}.{kind}"

    def _read(self, ref: str, kind: str) -> str | None:
        try:
            return self._path(ref, kind).read_text()
        except FileNotFoundError:
            return None

    def _reap(self) -> None:
        self._children = [child for child in self._children if child.poll() is None]

    def launch(self, request: LaunchRequest) -> str:
        ref = self.ref_for(request)
        self._reap()
        if self._path(ref, "start").exists():  # started before (maybe by a crashed scheduler)
            return ref
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        child = subprocess.Popen(
            ["/bin/sh", "-c", _WRAPPER, "commonpool-run", str(self.runs_dir / ref),
             *self.command(request)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            cwd=request.working_dir or self.runs_dir,
            # The scheduler's own settings (database URL, ...) are not the job's business.
            env={**{k: v for k, v in os.environ.items() if not k.startswith("COMMONPOOL_")},
                 **request.env},
        )
        assert child.stdout is not None
        with child.stdout:
            answer = child.stdout.readline().strip()
        self._children.append(child)
        if answer not in (b"claimed", b"taken") or not self._path(ref, "start").exists():
            raise RuntimeError(f"could not start run {ref} in {self.runs_dir}")
        return ref

    def poll(self, ref: str) -> RunReport:
        self._reap()
        ended = self._ended(ref)
        if ended is not None:
            return ended
        start = self._read(ref, "start")
        if start is None:
            return RunReport(RunStatus.MISSING, f"no run record {ref} in {self.runs_dir}")
        pid = _pid(start)
        if pid is None or self._alive(ref, pid):
            return RunReport(RunStatus.RUNNING)
        ended = self._ended(ref)  # it may have ended between the two reads
        if ended is not None:
            return ended
        return RunReport(RunStatus.FAILED, f"run {ref} (pid {pid}) vanished without an exit code")

    def _ended(self, ref: str) -> RunReport | None:
        end = self._read(ref, "end")
        if not end or not end.endswith("\n"):  # none yet, or being written
            return None
        if end.startswith("stopped"):
            return RunReport(RunStatus.STOPPED, "stopped")
        code = end.split()[-1]
        if code == "0":
            return RunReport(RunStatus.SUCCEEDED)
        log = self._read(ref, "log") or ""
        tail = "\n".join(log.splitlines()[-LOG_TAIL_LINES:])
        return RunReport(RunStatus.FAILED, f"exited with code {code}\n{tail}".rstrip())

    def new_log_lines(self, ref: str) -> list[str]:
        try:
            with self._path(ref, "log").open("rb") as log:
                log.seek(self._log_offsets.get(ref, 0))
                data = log.read()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]
        self._log_offsets[ref] = self._log_offsets.get(ref, 0) + len(complete)
        return complete.decode(errors="replace").splitlines()

    def ended_refs(self) -> set[str]:
        return set()  # ends are found by polling

    def checkpoint_location(self, request: LaunchRequest) -> str | None:
        return None  # a local run keeps no checkpoints for the pool

    def forget(self, refs: Sequence[str]) -> None:
        """Nothing to drop: the run's records are its output, kept for `logs` after a crash."""

    def withdraw(self, ref: str) -> bool:
        """A local run is never queued behind another run: a chained job here is still
        PLACED, with no run."""
        return True

    def stop(self, ref: str) -> None:
        """Kill the run's process group; a ref never claimed is claimed dead, so no late
        wrapper (spawned by a scheduler that crashed) can start it afterwards."""
        self._log_offsets.pop(ref, None)
        if self._read(ref, "end") is not None:
            return
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        if not _create(self._path(ref, "start"), "stopped\n"):
            pid = _pid(self._read(ref, "start") or "")
            if pid is not None and self._alive(ref, pid):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        _create(self._path(ref, "end"), "stopped\n")
        self._reap()

    def live_nodes(self) -> set[str] | None:
        return None  # one machine: a node's loss is the agent's lease expiring

    def _alive(self, ref: str, pid: int) -> bool:
        """Whether `pid` is still this ref's wrapper (not a zombie, not a reused pid)."""
        if not _PROC.is_dir():  # no /proc here: trust the pid
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                pass
            return True
        try:
            cmdline = (_PROC / str(pid) / "cmdline").read_bytes()
        except OSError:
            return False
        return str(self.runs_dir / ref).encode() in cmdline.split(b"\0")


def _pid(start: str) -> int | None:
    text = start.strip()
    return int(text) if text.isdigit() else None


def _create(path: Path, content: str) -> bool:
    """Write `path` only if it does not exist yet; whether this call created it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    return True
