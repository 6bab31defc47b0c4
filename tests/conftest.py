"""Shared fixtures: a freshly migrated database per test, on SQLite and PostgreSQL.

Migrations run once per session into a template (a SQLite file, or a
PostgreSQL template database); each test gets a copy, as procrastinate's
tests do, so every test starts from exactly the schema Alembic produces.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from commonpool.api.app import create_app
from commonpool.api.bootstrap import bootstrap
from commonpool.migrations import upgrade
from commonpool.scheduler.config import Settings
from commonpool.scheduler.store.engine import make_engine
from commonpool.scheduler.store.uow import Database

PG_ENV = "COMMONPOOL_TEST_POSTGRES_URL"
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.pg)]


# Where the tests that start a Ray cluster live (the collection hook below checks that
# every test with the `ray` marker is here).
RAY_PATHS = (
    "tests/integration/",
    "tests/browser/",
    "tests/multihost/",
    "tests/cli/test_demo.py",
    "tests/chaos/test_scheduler_sigkill_ray.py",
)


def _starts_ray(nodeid: str) -> bool:
    return nodeid.partition("::")[0].startswith(RAY_PATHS)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test with the `ray` marker lives under `RAY_PATHS`: the scheduler below
    routes by path (it sees node ids, not markers). Unmarked tests there go along."""
    for item in items:
        if item.get_closest_marker("ray") is not None and not _starts_ray(item.nodeid):
            raise pytest.UsageError(
                f"{item.nodeid} starts Ray (marker `ray`) outside tests/conftest.py's "
                "RAY_PATHS: add its module there"
            )


@pytest.hookimpl(optionalhook=True)  # a plain `pytest` without xdist still runs
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """`make test` runs two pytest-xdist workers (`-n 2`). Every test that starts a Ray
    cluster goes to one of them, in collection order: they share package-scoped pools,
    keep both cores busy, and two pools started at once could race for the same free
    ports. Every other module is a unit the other worker (or this one, once idle) takes.
    (xdist's `loadgroup` would do this by marker, but its node-id suffix is lost with
    this pytest version.)"""
    from xdist.scheduler import LoadScopeScheduling

    class RayOnOneWorker(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "ray" if _starts_ray(nodeid) else nodeid.partition("::")[0]

    return RayOnOneWorker(config, log)


def postgres_url() -> str | None:
    return os.environ.get(PG_ENV) or None


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


class PostgresTemplates:
    """Creates a migrated template database once, and clones of it on demand."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = make_url(admin_url).set(drivername="postgresql+psycopg")
        self.admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        self.template = f"cp_tpl_{uuid.uuid4().hex[:10]}"
        self.created: list[str] = []
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.template}"'))
        upgrade(self.url_of(self.template))

    def url_of(self, name: str) -> str:
        return self.admin_url.set(database=name).render_as_string(hide_password=False)

    def clone(self) -> str:
        name = f"cp_test_{uuid.uuid4().hex[:12]}"
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"'))
        self.created.append(name)
        return self.url_of(name)

    def drop(self, name: str) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def close(self) -> None:
        for name in [*self.created, self.template]:
            self.drop(name)
        self.admin.dispose()


@pytest.fixture(scope="session")
def pg_templates() -> Iterator[PostgresTemplates]:
    url = postgres_url()
    if url is None and os.environ.get("CI"):
        pytest.fail(f"CI must run the PostgreSQL tests, but {PG_ENV} is not set")
    if url is None:
        pytest.skip(f"{PG_ENV} is not set (make test sets it when PostgreSQL answers)")
    templates = PostgresTemplates(url)
    yield templates
    templates.close()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A freshly migrated, empty database of each backend."""
    if request.param == "sqlite":
        path = tmp_path / "commonpool.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    templates: PostgresTemplates = request.getfixturevalue("pg_templates")
    url = templates.clone()
    yield url
    templates.drop(make_url(url).database or "")
    templates.created.remove(make_url(url).database or "")


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(make_engine(database_url))
    yield database
    database.dispose()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=database_url, state_dir=tmp_path / "state")


@pytest.fixture
def app(settings: Settings, db: Database):  # type: ignore[no-untyped-def]
    return create_app(settings, db)


@pytest.fixture
def admin_token(db: Database, settings: Settings) -> str:
    """The pool's bootstrap admin token (user `admin`, project `default`)."""
    token = bootstrap(db, settings.resolved_token_file)
    assert token is not None
    return token


@pytest.fixture
def admin_headers(admin_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {admin_token}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """uvicorn serving the app on a loopback port, in a thread of this process."""

    def __init__(self, app, **options: object) -> None:  # type: ignore[no-untyped-def]
        """`options` go to uvicorn (e.g. ssl_certfile/ssl_keyfile: the URL is then https)."""
        self.port = free_port()
        scheme = "https" if options.get("ssl_certfile") else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            **options,  # type: ignore[arg-type]
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live_server(app) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    with LiveServer(app) as server:
        yield server
