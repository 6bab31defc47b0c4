"""The migrations produce exactly the models' schema, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from commonpool.migrations import downgrade, upgrade
from commonpool.scheduler.store.engine import make_engine
from commonpool.scheduler.store.models import Base


def _diff(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def test_upgraded_schema_equals_models(database_url: str) -> None:
    assert _diff(database_url) == []


def test_downgrade_then_upgrade_round_trips(database_url: str) -> None:
    downgrade(database_url, "base")
    engine = make_engine(database_url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
    upgrade(database_url)
    assert _diff(database_url) == []


def test_concurrent_upgrades_take_turns(database_url: str) -> None:
    """Replicas that start together all migrate: none may fail or apply a step twice."""
    import subprocess
    import sys

    downgrade(database_url, "base")
    code = "import sys; from commonpool.migrations import upgrade; upgrade(sys.argv[1])"
    replicas = [subprocess.Popen([sys.executable, "-c", code, database_url],
                                 stderr=subprocess.PIPE, text=True) for _ in range(4)]
    failures = [p.communicate(timeout=120)[1] for p in replicas if p.wait(timeout=120) != 0]
    assert failures == []
    assert _diff(database_url) == []
