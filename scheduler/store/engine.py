"""Engines for SQLite (embedded default) and PostgreSQL: the only dialect switch.

SQLite is tuned for a small multi-process pool: WAL so readers never block
the writer, foreign keys on, a busy timeout, and write transactions that
start with `BEGIN IMMEDIATE` so two writers queue on the lock instead of one
failing with "database is locked" when it upgrades a read transaction.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Bound parameters per IN list: well under SQLite's limit (32,766) and PostgreSQL's (65,535).
IDS_PER_STATEMENT = 5_000

_Id = TypeVar("_Id")


def id_batches(ids: Sequence[_Id]) -> Iterator[Sequence[_Id]]:
    """`ids` in slices small enough for one `IN (...)` list on every dialect."""
    for start in range(0, len(ids), IDS_PER_STATEMENT):
        yield ids[start : start + IDS_PER_STATEMENT]


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite database URL; None for PostgreSQL or an in-memory database."""
    if not is_sqlite(url):
        return None
    database = make_url(url).database
    return Path(database).expanduser() if database and database != ":memory:" else None


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`; a SQLite file's folder is created when missing."""
    if is_sqlite(url):
        return _sqlite_engine(url, **kwargs)
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    # pre-ping: recover by itself after a database restart (one cheap round trip).
    kwargs.setdefault("pool_pre_ping", True)
    # As many pooled connections as the API's worker threads (anyio's default 40):
    # overflow connections are closed on return, each reopen costs a new backend.
    kwargs.setdefault("pool_size", 40)
    kwargs.setdefault("max_overflow", 10)
    return create_engine(parsed, **kwargs)


def private_file(path: Path) -> None:
    """Create the database file readable by its owner only (it holds token hashes and
    every job's spec); SQLite gives its -wal and -shm files the same mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def _sqlite_engine(url: str, **kwargs: Any) -> Engine:
    database = sqlite_file(url)
    if database is not None:
        private_file(database)
    connect_args = kwargs.pop("connect_args", {})
    connect_args.setdefault("check_same_thread", False)
    connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_MS / 1000)
    engine = create_engine(url, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = "IMMEDIATE" if conn.get_execution_options().get("write") else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine
