"""The queue SQLite writers wait in: a thread lock, then an OS file lock.

SQLite admits one writer at a time. A writer that finds the database locked
waits in SQLite's busy handler, which sleeps in steps of 1, 2, 5 ... up to
100 ms and retries: a submit that arrives while the scheduler writes waits
several milliseconds after the lock is free (that was the API's p99, and the
API loop's ceiling with the scheduler in its own process). Writers that queue
here instead wake the moment the one ahead commits: threads of one process on
a `threading.Lock`, processes on an advisory `flock` on `<database>.write.lock`
(blocking, without the GIL; the kernel drops it when a holder dies, even by
SIGKILL). Writers that skip the queue still work: SQLite's own lock stays the
guarantee, this only shortens the wait.
"""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from .engine import private_file


class WriterQueue:
    """Serializes the writers of one SQLite database, across threads and processes."""

    def __init__(self, database: Path | None) -> None:
        """`database`: the SQLite file (None: in memory, one process, threads only)."""
        self._threads = threading.Lock()
        self.path = database.with_suffix(database.suffix + ".write.lock") if database else None
        self._handle: IO[bytes] | None = None

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._threads:
            if self.path is None:
                yield
                return
            handle = self._open()
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _open(self) -> IO[bytes]:
        """The lock file, opened once per process (only while `_threads` is held)."""
        if self._handle is None:
            assert self.path is not None
            private_file(self.path)  # only the pool's user may hold it
            self._handle = open(self.path, "ab")  # noqa: SIM115 - lives with the queue
        return self._handle

    def close(self) -> None:
        with self._threads:
            if self._handle is not None:
                self._handle.close()
                self._handle = None
