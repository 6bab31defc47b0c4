"""Wake a scheduler that runs in another process, so a submit starts a step at once.

In one process the API calls the loop's `wake()`. Split, as compose deploys it
(`commonpool server` beside `commonpool scheduler`), the API signals through
what both already share:
- PostgreSQL: `NOTIFY commonpool_wake`; the scheduler LISTENs on a connection
  of its own (across hosts and containers, as far as the database reaches);
- SQLite: a FIFO beside the database file (`<db>.wake`, mode 0600): the two
  processes share that file's host and folder anyway.
A wake is a hint: one that is lost (no scheduler, a full pipe, a database hiccup)
costs at most `scheduler_interval_s`, after which the scheduler steps anyway, so
sending never blocks or fails the request that sends it.
"""

from __future__ import annotations

import contextlib
import os
import select
import stat
import threading
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine

from ..domain.errors import Conflict
from ..logs import get_logger
from .engine import sqlite_file

CHANNEL = "commonpool_wake"
POLL_S = 1.0  # how often a listener checks that it should stop
RETRY_S = 1.0  # a listener whose database connection broke reconnects after this

log = get_logger("scheduler.wake")


def wake_sender(engine: Engine) -> Callable[[], None]:
    """A call that wakes the scheduler of `engine`'s database, wherever it runs."""
    if engine.dialect.name == "postgresql":
        return _Notify(engine)
    path = sqlite_file(engine.url.render_as_string())
    return _FifoWriter(fifo_path(path)) if path is not None else _nothing


def fifo_path(database: Path) -> Path:
    return database.with_suffix(database.suffix + ".wake")


class WakeListener:
    """A daemon thread that calls `wake` for every signal sent to `engine`'s database,
    and once when it starts listening (for whatever was sent before)."""

    def __init__(self, engine: Engine, wake: Callable[[], None]) -> None:
        self.engine, self.wake = engine, wake
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        """Listen; returns once the listener is in place (or the timeout passed)."""
        if self.engine.dialect.name == "postgresql":
            target: Callable[[], None] = self._listen_postgres
        else:
            database = sqlite_file(self.engine.url.render_as_string())
            if database is None:
                return  # in memory: only this process can submit, it wakes the loop itself
            path = fifo_path(database)
            _make_fifo(path)  # here, so a path in the way fails the start, not a thread
            target = lambda: self._listen_fifo(path)  # noqa: E731
        self._thread = threading.Thread(target=target, name="wake-listener", daemon=True)
        self._thread.start()
        self._listening.wait(timeout_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(POLL_S * 3)

    def _listen_postgres(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen_on_one_connection()
            except Exception as exc:  # the database went away: reconnect
                log.warning("scheduler.wake_listener_lost", error=str(exc))
                self._stop.wait(RETRY_S)

    def _listen_on_one_connection(self) -> None:
        pooled = self.engine.raw_connection()
        connection = pooled.driver_connection
        pooled.detach()  # held for as long as it listens: not the pool's any more
        try:
            connection.autocommit = True
            connection.execute(f"LISTEN {CHANNEL}")
            self._listening.set()
            self.wake()
            while not self._stop.is_set():
                for _ in connection.notifies(timeout=POLL_S, stop_after=1):
                    self.wake()
        finally:
            pooled.close()

    def _listen_fifo(self, path: Path) -> None:
        # Open for writing too: with no writer left, a read-only FIFO would poll as
        # hung up, forever.
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        try:
            self._listening.set()
            self.wake()
            while not self._stop.is_set():
                ready, _, _ = select.select([fd], [], [], POLL_S)
                if ready:
                    with contextlib.suppress(BlockingIOError):
                        os.read(fd, 4096)  # every wake sent so far: one step
                    self.wake()
        finally:
            os.close(fd)


def _make_fifo(path: Path) -> None:
    try:
        os.mkfifo(path, 0o600)
    except FileExistsError:
        if not stat.S_ISFIFO(path.stat().st_mode):
            raise Conflict(
                f"{path} is in the way of the scheduler's wake FIFO: move it away", path=str(path)
            ) from None


class _Notify:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __call__(self) -> None:
        try:
            with self.engine.connect() as connection:
                connection.exec_driver_sql(f"NOTIFY {CHANNEL}")
                connection.commit()
        except Exception as exc:  # a hint only: the scheduler's interval catches up
            log.debug("scheduler.wake_not_sent", error=str(exc))


class _FifoWriter:
    """Writes one byte per wake; a scheduler that is not running is not an error."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            for _ in range(2):  # a second try after the reader restarted
                if self._fd is None:
                    try:
                        self._fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
                    except OSError:
                        return  # no FIFO yet, or no scheduler has it open
                    if not stat.S_ISFIFO(os.fstat(self._fd).st_mode):
                        os.close(self._fd)  # not ours to append to (the listener says so)
                        self._fd = None
                        return
                try:
                    os.write(self._fd, b"w")
                    return
                except BlockingIOError:
                    return  # the pipe is full: the scheduler has wakes to read already
                except OSError:  # the scheduler that had it open is gone
                    os.close(self._fd)
                    self._fd = None


def _nothing() -> None:
    """In memory: no other process shares the database."""
