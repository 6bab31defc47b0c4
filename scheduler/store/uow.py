"""Units of work: the only place that commits.

One unit per API request, scheduler step or agent report. Any exception
rolls back, so nothing is ever half-written; a lost database connection
surfaces as the domain's `Unavailable`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ..domain.errors import Unavailable
from .engine import is_sqlite


class Database:
    """An engine plus the session factories for reads and writes.

    `exclusive=True` (for units that run start to end in one thread) makes
    writers of this process queue on an in-process lock first, on SQLite:
    SQLite admits one writer at a time anyway, and a thread waiting on a lock
    wakes the moment it is free, where one waiting in SQLite's busy handler
    sleeps in steps of up to 100 ms (that was the API's p99). It is opt-in
    because a unit whose enter and exit run in different threads (a FastAPI
    yield dependency) must not hold a lock across thread-pool hops.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write = sessionmaker(engine.execution_options(write=True), expire_on_commit=False)
        self._write_lock: AbstractContextManager[object] = (
            threading.Lock() if is_sqlite(engine.url.render_as_string()) else nullcontext()
        )

    @contextmanager
    def unit_of_work(self, *, write: bool = True, exclusive: bool = False) -> Iterator[Session]:
        """A session in one transaction, committed on success, rolled back on error."""
        with self._write_lock if write and exclusive else nullcontext():
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
