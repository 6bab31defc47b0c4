"""The running agent's pid file, next to its state file: how `commonpool agent stop` finds it.

`<state file>.pid` (e.g. `agent.pid` beside `agent.json`) holds the agent's
pid and its process start time, mode 0600 in the state's 0700 directory.
The start time makes a stale file harmless: after a crash (no clean exit
removed it) a new process may reuse the pid, and `stop` would otherwise
signal a stranger. Created with O_EXCL, it also keeps a second agent from
running on the same identity (two Ray nodes under one node label).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil

from .state import FILE_MODE, private_dir


class AgentAlreadyRunning(RuntimeError):
    pass


class NoAgentRunning(RuntimeError):
    pass


def pid_file_for(state_file: Path) -> Path:
    return state_file.with_suffix(".pid")


def _start_time(pid: int) -> float:
    return psutil.Process(pid).create_time()


def write_pid_file(path: Path, pid: int | None = None) -> None:
    """Record `pid` (this process); refuse while another live agent holds the file."""
    pid = pid or os.getpid()
    private_dir(path.parent)
    body = json.dumps({"pid": pid, "started_at": _start_time(pid)})
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
        except FileExistsError:
            running = find_running_agent(path)
            if running is not None:
                raise AgentAlreadyRunning(
                    f"an agent (pid {running.pid}) already runs with this state file "
                    f"({path}); stop it first with `commonpool agent stop`"
                ) from None
            path.unlink(missing_ok=True)  # stale: its agent died without removing it
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(body)
        return
    raise AgentAlreadyRunning(f"could not create {path}: another agent is starting")


def remove_pid_file(path: Path, pid: int | None = None) -> None:
    """Remove the file if it is still ours (never another agent's)."""
    pid = pid or os.getpid()
    with contextlib.suppress(OSError, ValueError, KeyError):
        if json.loads(path.read_text())["pid"] == pid:
            path.unlink()


@contextlib.contextmanager
def pid_file(path: Path) -> Iterator[None]:
    write_pid_file(path)
    try:
        yield
    finally:
        remove_pid_file(path)


def find_running_agent(path: Path) -> psutil.Process | None:
    """The live process the file names, or None (no file, unreadable, or stale)."""
    try:
        record = json.loads(path.read_text())
        process = psutil.Process(int(record["pid"]))
        if abs(process.create_time() - float(record["started_at"])) > 0.01:
            return None  # the pid was reused by another process
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process
    except (OSError, ValueError, KeyError, TypeError, psutil.Error):
        return None


def stop_agent(
    path: Path,
    *,
    timeout_s: float,
    on_wait: Callable[[psutil.Process, float], None] | None = None,
    every_s: float = 5.0,
) -> psutil.Process:
    """SIGTERM the agent of `path` and wait until it exited; returns the (gone) process.

    Raises NoAgentRunning when none runs, TimeoutError when it is still
    running after `timeout_s`, PermissionError when it belongs to another user.
    """
    process = find_running_agent(path)
    if process is None:
        raise NoAgentRunning(f"no agent runs with this state file (no live pid in {path})")
    process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    told = started
    while not _exited(process):
        now = time.monotonic()
        if now - started >= timeout_s:
            raise TimeoutError(f"the agent (pid {process.pid}) still runs after {timeout_s:g} s")
        if on_wait is not None and now - told >= every_s:
            on_wait(process, now - started)
            told = now
        time.sleep(0.2)
    return process


def _exited(process: psutil.Process) -> bool:
    """Gone, or a zombie its parent has not reaped yet (it has exited all the same)."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
