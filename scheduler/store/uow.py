"""Units of work: the only place that commits.

One unit per API request, scheduler step or agent report. Any exception
rolls back, so nothing is ever half-written; a lost database connection
surfaces as the domain's `Unavailable`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ..domain.errors import Unavailable
from .engine import is_sqlite, sqlite_file
from .write_lock import WriterQueue


class Database:
    """An engine plus the session factories for reads and writes.

    `exclusive=True` (for units that run start to end in one thread) makes a
    SQLite writer wait its turn in the `WriterQueue` first, shared by the
    threads of this process and by the other processes on the same file: it
    wakes the moment the writer ahead commits, where one waiting in SQLite's
    busy handler sleeps in steps of up to 100 ms. It is opt-in because a unit
    whose enter and exit run in different threads (a FastAPI yield dependency)
    must not hold a lock across thread-pool hops.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write = sessionmaker(engine.execution_options(write=True), expire_on_commit=False)
        url = engine.url.render_as_string()
        self._writers = WriterQueue(sqlite_file(url)) if is_sqlite(url) else None

    @contextmanager
    def unit_of_work(self, *, write: bool = True, exclusive: bool = False) -> Iterator[Session]:
        """A session in one transaction, committed on success, rolled back on error."""
        queue = self._writers if write and exclusive else None
        with queue.held() if queue is not None else nullcontext():
            session = (self._write if write else self._read)()
            try:
                with _unavailable_on_connection_loss():
                    yield session
                    session.commit()
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()

    def dispose(self) -> None:
        self.engine.dispose()
        if self._writers is not None:
            self._writers.close()


@contextmanager
def _unavailable_on_connection_loss() -> Iterator[None]:
    try:
        yield
    except OperationalError as exc:
        raise Unavailable(f"database unavailable: {exc.orig}") from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise Unavailable("database connection lost") from exc
        raise
