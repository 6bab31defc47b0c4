"""Units of work: the only place that commits.

One unit per API request, scheduler step or agent report. Any exception
rolls back, so nothing is ever half-written; a lost database connection
surfaces as the domain's `Unavailable`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ..domain.errors import Unavailable


class Database:
    """An engine plus the session factories for reads and writes."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write = sessionmaker(engine.execution_options(write=True), expire_on_commit=False)

    @contextmanager
    def unit_of_work(self, *, write: bool = True) -> Iterator[Session]:
        """A session in one transaction, committed on success, rolled back on error."""
        factory = self._write if write else self._read
        session = factory()
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
