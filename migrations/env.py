"""Alembic environment: runs migrations on the engine commonpool itself would use."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from alembic import context
from sqlalchemy import event, text
from sqlalchemy.engine import make_url

from commonpool.scheduler.store.engine import is_sqlite, make_engine
from commonpool.scheduler.store.models import Base

config = context.config
LOCK_KEY = 0x636F6D6D6F6E  # "common": the advisory lock of commonpool's migrations
target_metadata = Base.metadata


@contextmanager
def _sqlite_file_lock(url: str) -> Iterator[None]:
    """Migrations of one SQLite file take turns (PostgreSQL uses an advisory lock)."""
    database = make_url(url).database
    if not database or database == ":memory:":
        yield
        return
    lock = Path(database).expanduser().with_name(Path(database).name + ".migrate.lock")
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url must be set"
    engine = make_engine(url)
    sqlite = is_sqlite(url)
    if sqlite:
        # A batch ALTER rebuilds the table: copy, drop the old one, rename. With foreign
        # keys on, dropping `jobs` would cascade-delete every allocation, event and log
        # line. SQLite's documented procedure: keys off, rebuild, then check them.
        @event.listens_for(engine, "connect")
        def _keys_off(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.execute("PRAGMA foreign_keys=OFF")

    with _sqlite_file_lock(url) if sqlite else nullcontext(), engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=sqlite,  # SQLite needs table rebuilds for ALTERs
            compare_type=True,
        )
        with context.begin_transaction():
            if not sqlite:
                # Servers and schedulers all migrate at start: replicas starting together
                # take turns; the later ones find the schema at head and do nothing.
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
            context.run_migrations()
            if sqlite:
                broken = connection.execute(text("PRAGMA foreign_key_check")).all()
                if broken:
                    raise RuntimeError(f"migration left dangling references: {broken[:5]}")
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit(
        "offline (SQL script) migrations are not supported; run `commonpool db upgrade`"
    )
run_migrations_online()
