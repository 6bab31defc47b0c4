"""Process commands: server, scheduler, db upgrade.

Heavy imports (Alembic, SQLAlchemy, uvicorn) happen inside the commands, so
the client commands of the CLI start fast.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING

import typer

from commonpool.scheduler.config import Settings, get_settings

from . import render

SCHEDULER_READY = "scheduler running policy"  # its first line once it schedules

if TYPE_CHECKING:
    from commonpool.scheduler.launcher import Launcher
    from commonpool.scheduler.loop import SchedulerLoop
    from commonpool.scheduler.store.uow import Database

db_app = typer.Typer(help="Database schema management.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target Alembic revision.")) -> None:
    """Apply migrations to the configured database (COMMONPOOL_DATABASE_URL)."""
    from commonpool.migrations import upgrade as upgrade_database

    url = get_settings().resolved_database_url
    upgrade_database(url, revision)
    render.console.print(f"database at revision {revision}: {_redact(url)}")


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def open_database(settings: Settings) -> Database:
    """Migrate the configured database to head and connect to it."""
    from commonpool.migrations import upgrade as upgrade_database
    from commonpool.scheduler.store.engine import make_engine
    from commonpool.scheduler.store.uow import Database

    upgrade_database(settings.resolved_database_url)
    return Database(make_engine(settings.resolved_database_url))


def build_loop(settings: Settings, db: Database, policy: str | None = None) -> SchedulerLoop:
    from commonpool.scheduler.carbon.forecast_cache import forecasts_for_policy
    from commonpool.scheduler.logs import get_logger
    from commonpool.scheduler.loop import SchedulerLoop
    from commonpool.scheduler.policy import make_policy
    from commonpool.scheduler.services.preemption import RequeueBackoff

    log = get_logger("scheduler")

    def log_error(exc: Exception) -> None:
        log.warning("scheduler.step_failed", error=f"{type(exc).__name__}: {exc}")

    return SchedulerLoop(
        db,
        make_policy(policy or settings.policy, grow_after_s=settings.elastic_grow_after_s),
        interval_s=settings.scheduler_interval_s,
        quick_depth=settings.scheduler_quick_depth,
        chain_window_s=settings.scheduler_chain_window_s,
        chain_depth=settings.scheduler_chain_depth,
        on_error=log_error,
        launcher=build_launcher(settings, db),
        forecasts=forecasts_for_policy(policy or settings.policy),
        backoff=RequeueBackoff.of(settings),
    )


def build_launcher(settings: Settings, db: Database) -> Launcher | None:
    """The Ray launcher when the pool has a Ray cluster (ray_dashboard_url), else None.

    Without it the loop still places jobs (QUEUED -> PLACED) but starts none,
    and says so at start-up. `runner = local | local-sleep` instead runs each job
    as a process on this machine, with its records under `runs_dir` (tests and
    small single-machine pools; see `workers/runner/local_runs.py`).
    """
    from commonpool.scheduler.services.preemption import RequeueBackoff

    if settings.runner != "ray":
        from commonpool.scheduler.launcher import Launcher
        from commonpool.workers.runner.local_runs import LocalRunsRunner, command_for

        local = LocalRunsRunner(
            settings.runs_dir or settings.state_dir / "runs", command_for(settings.runner)
        )
        # Polling a local run is a few file reads: poll every step.
        return Launcher(
            db,
            local,
            server_url=settings.server_url,
            poll_interval_s=0.0,
            log_max_bytes=settings.job_log_max_bytes,
            backoff=RequeueBackoff.of(settings),
        )
    if not settings.ray_dashboard_url:
        render.err_console.print(
            "[yellow]no ray_dashboard_url configured: jobs will be placed but not launched[/]"
        )
        return None
    from commonpool.scheduler.launcher import Launcher
    from commonpool.workers.runner.ray_jobs import default_storage
    from commonpool.workers.runner.ray_pool import ray_runner

    runner = ray_runner(settings, default_storage(settings.state_dir))
    return Launcher(
        db,
        runner,
        server_url=settings.server_url,
        log_max_bytes=settings.job_log_max_bytes,
        ca_pem=settings.ca_file.read_text() if settings.ca_file else None,
        backoff=RequeueBackoff.of(settings),
    )


def _configure_logging(settings: Settings) -> None:
    from commonpool.scheduler.logs import configure_logging

    configure_logging(settings.log_format, settings.log_level)


def announce_bootstrap(settings: Settings, db: Database) -> None:
    """On a pool without an admin, create one and print its token this once."""
    from ..bootstrap import bootstrap

    secret = bootstrap(db, settings.resolved_token_file)
    if secret is None:
        return
    render.err_console.print(
        "[bold]first start: created user 'admin' and project 'default'.[/]\n"
        f"admin token (shown once; also saved to {settings.resolved_token_file}, mode 0600):"
    )
    print(secret, flush=True)


def server(
    host: str | None = typer.Option(None, help="Bind address (default 127.0.0.1)."),
    port: int | None = typer.Option(None, min=1, max=65535, help="Port (default 8765)."),
    with_scheduler: bool = typer.Option(
        False, "--with-scheduler", help="Also run the scheduler loop in this process."
    ),
) -> None:
    """Run the REST API (migrating the database first)."""
    import uvicorn

    from ..app import create_app

    settings = get_settings()
    _configure_logging(settings)
    db = open_database(settings)
    announce_bootstrap(settings, db)
    loop = build_loop(settings, db) if with_scheduler else None
    from commonpool.scheduler.store.singleton import SchedulerLock
    from commonpool.scheduler.store.wake import WakeListener, wake_sender

    lock = SchedulerLock(settings.resolved_database_url)
    if loop is not None:
        lock.acquire()  # held while this process lives (the kernel drops it on exit)
    app = create_app(settings, db, wake_scheduler=loop.wake if loop else wake_sender(db.engine))
    if loop is not None:
        loop.after_step = app.state.metrics.observe_step  # decision latency on /metrics
        WakeListener(db.engine, loop.wake).start()  # submits through other API replicas
        threading.Thread(target=loop.run_forever, name="scheduler", daemon=True).start()
    tls = settings.tls_cert_file is not None
    if tls != (settings.tls_key_file is not None):
        render.err_console.print("[red]set both tls_cert_file and tls_key_file, or neither[/]")
        raise typer.Exit(2)
    scheme = "https" if tls else "http"
    render.err_console.print(
        f"commonpool API on {scheme}://{host or settings.host}:{port or settings.port}"
        f" ({_redact(settings.resolved_database_url)})"
    )
    uvicorn.run(
        app,
        host=host or settings.host,
        port=port or settings.port,
        log_level="warning",
        access_log=False,
        ssl_certfile=str(settings.tls_cert_file) if tls else None,
        ssl_keyfile=str(settings.tls_key_file) if tls else None,
    )
    if loop is not None:
        loop.stop()


def scheduler(
    policy: str | None = typer.Option(None, help="Placement policy (default from config: fifo)."),
    interval: float | None = typer.Option(
        None,
        min=0.01,
        help="Longest seconds between two full cycles (a submit or a run's end wakes it "
        "at once).",
    ),
    once: bool = typer.Option(False, help="Run one cycle, print what it did, and exit."),
) -> None:
    """Run the scheduling loop against the registry."""
    settings = get_settings()
    _configure_logging(settings)
    db = open_database(settings)
    loop = build_loop(settings, db, policy)
    from commonpool.scheduler.store.singleton import SchedulerLock
    from commonpool.scheduler.store.wake import WakeListener

    lock = SchedulerLock(settings.resolved_database_url)
    lock.acquire()  # held while this process lives (the kernel drops it on exit)
    if interval is not None:
        loop.interval_s = interval
    if once:
        report = loop.step()
        render.console.print(
            f"placed {len(report.placed)}, pending {report.pending}, "
            f"rejected {len(report.rejected)}, lost nodes {len(report.lost_nodes)}"
            f" in {report.seconds * 1000:.1f} ms"
        )
        return

    def _stop(_sig: int, _frame: FrameType | None) -> None:
        loop.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    listener = WakeListener(db.engine, loop.wake)  # the API's submits wake it at once
    listener.start()
    render.err_console.print(
        f"{SCHEDULER_READY} {loop.policy.name}: on every submit and run end, and "
        f"at least every {loop.interval_s}s"
    )
    loop.run_forever()
    listener.stop()
