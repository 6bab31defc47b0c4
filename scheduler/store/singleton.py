"""One scheduler per SQLite database, enforced with an OS file lock.

SQLite has one writer anyway, and two schedulers on one file would only
fight over its lock; the second one is refused with a clear error instead.
The lock is an advisory `flock` on `<database>.scheduler.lock`: the kernel
releases it when the process dies, even by SIGKILL, so a crash never leaves
a stale lock behind. PostgreSQL needs no such lock: placements take row
locks on their nodes and compare-and-set job states, so replicas never
double-allocate.
"""

from __future__ import annotations

import fcntl
import os
from typing import IO

from ..domain.errors import Conflict
from .engine import sqlite_file


class SchedulerLock:
    def __init__(self, database_url: str) -> None:
        database = sqlite_file(database_url)
        self.path = database.with_suffix(".scheduler.lock") if database else None
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        if self.path is None:
            return
        handle = open(self.path, "a+")  # noqa: SIM115 - kept open: the lock lives with it
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise Conflict(
                f"a scheduler ({holder}) already runs on this SQLite database; "
                "SQLite supports one scheduler - use PostgreSQL for replicas",
                lock=str(self.path),
            ) from None
        handle.truncate(0)
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> SchedulerLock:
        self.acquire()
        return self

    def __exit__(self, *_: object) -> None:
        self.release()
