"""Alembic environment: runs migrations on the engine commonpool itself would use."""

from __future__ import annotations

from alembic import context

from commonpool.scheduler.store.engine import is_sqlite, make_engine
from commonpool.scheduler.store.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url must be set"
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=is_sqlite(url),  # SQLite needs table rebuilds for ALTERs
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit(
        "offline (SQL script) migrations are not supported; run `commonpool db upgrade`"
    )
run_migrations_online()
