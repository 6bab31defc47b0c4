"""Submit throughput and latency of the REST API: a real uvicorn server, over HTTP.

    python -m benchmarks.api_submit                              # SQLite and PostgreSQL
    python -m benchmarks.api_submit --backend postgres --workers 1,2 --concurrency 32
    python -m benchmarks.api_submit --profile /tmp/prof          # py-spy stacks per run

For each backend and uvicorn worker count: a fresh migrated database (a temp SQLite
file, or a scratch PostgreSQL database ``cp_bench_<hex>``), ``uvicorn --workers W``
as a separate process on a free loopback port, a warm-up, then ``--requests`` POST
/api/v1/jobs from ``--concurrency`` keep-alive connections driven by one asyncio
loop in this process. Latency is send-to-last-byte per request; throughput is
successful submits / wall time of the measured phase. The job and event rows are
counted afterwards, so a 201 that stored nothing would show. Server and client CPU
are reported because on a small machine the two share the same cores.

``--client raw`` (default) is a minimal HTTP/1.1 keep-alive client on asyncio
streams that costs far less CPU per request than httpx, leaving the cores to the
server; ``--client httpx`` uses ``httpx.AsyncClient`` instead. Prints a table and,
last, one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from commonpool.scheduler.store.engine import make_engine
from commonpool.scheduler.store.uow import Database

ROOT = Path(__file__).resolve().parent.parent
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PG_ENV = "COMMONPOOL_TEST_POSTGRES_URL"
SUBMIT_PATH = "/api/v1/jobs"
APP_FACTORY = "benchmarks.api_submit:make_app"  # the real, unmodified app


def make_app() -> Any:
    """uvicorn factory (``--factory``): the real app, configured from COMMONPOOL_* env."""
    from commonpool.api.app import create_app
    from commonpool.scheduler.config import Settings

    return create_app(Settings())


def job_body(i: int) -> bytes:
    """A realistic small spec: a 2-worker GPU gang with a few args and env vars."""
    return json.dumps(
        {
            "name": f"bench-{i}",
            "entrypoint": "commonpool.workers.examples.mnist:train",
            "args": {"epochs": 3, "lr": 0.001, "batch_size": 64},
            "env": {"NCCL_DEBUG": "WARN"},
            "workers": {"min": 2, "max": 2},
            "resources": {"cpus": 4, "memory_bytes": "16GiB", "gpus": 1, "gpu_type": "a100"},
            "priority": i % 10,
            "project": "bench",
            "owner": "bench",
        },
        separators=(",", ":"),
    ).encode()


# -- databases -------------------------------------------------------------------------


@contextlib.contextmanager
def scratch_sqlite() -> Iterator[str]:
    folder = Path(tempfile.mkdtemp(prefix="cp_bench_"))
    try:
        yield f"sqlite:///{folder / 'commonpool.db'}"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def scratch_postgres(admin_url: str) -> Iterator[str]:
    admin = make_url(admin_url)
    if admin.drivername == "postgresql":
        admin = admin.set(drivername="postgresql+psycopg")
    name = f"cp_bench_{uuid.uuid4().hex[:10]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield admin.set(database=name).render_as_string(hide_password=False)
        finally:
            with engine.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


def postgres_reachable(admin_url: str) -> bool:
    url = make_url(admin_url)
    try:
        with socket.create_connection((url.host or "127.0.0.1", url.port or 5432), timeout=1):
            return True
    except OSError:
        return False


def bench_user_token(url: str) -> str:
    """User `bench`, member of project `bench`, with a jobs:write token: submits are
    authenticated and authorized as in production (a cached principal per request)."""
    from commonpool.scheduler.domain.principal import Role, Scope
    from commonpool.scheduler.services import accounts

    engine = make_engine(url)
    try:
        with Database(engine).unit_of_work() as session:
            accounts.create_user(session, "bench", actor="bench")
            accounts.create_project(session, "bench", actor="bench")
            accounts.set_membership(session, "bench", "bench", Role.MEMBER, actor="bench")
            token, _ = accounts.create_token(
                session, "bench", scopes=[Scope.JOBS_WRITE], actor="bench"
            )
    finally:
        engine.dispose()
    return token


def count_rows(url: str) -> tuple[int, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            jobs = conn.execute(text("SELECT count(*) FROM jobs")).scalar_one()
            events = conn.execute(text("SELECT count(*) FROM job_events")).scalar_one()
        return int(jobs), int(events)
    finally:
        engine.dispose()


# -- server ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``uvicorn --factory benchmarks.api_submit:make_app`` in its own session."""

    def __init__(self, database_url: str, workers: int, state_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "COMMONPOOL_DATABASE_URL": database_url,
            "COMMONPOOL_STATE_DIR": str(state_dir),
            "COMMONPOOL_CONFIG": str(state_dir / "absent.toml"),
            # Throughput of the submit path itself: no per-token rate limit.
            "COMMONPOOL_SUBMIT_RATE_PER_S": "0",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        cmd = [
            sys.executable, "-m", "uvicorn", APP_FACTORY, "--factory",
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers),
            "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, env=env, cwd=ROOT, start_new_session=True)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {self.proc.returncode}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("uvicorn did not become ready")

    def processes(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        # Workers of the supervisor we started share its session id == its pid.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=5)


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def busy_pct(before: Any, after: Any) -> float:
    """Whole-machine CPU use between two `psutil.cpu_times()`, 100% = every core busy."""
    idle = (after.idle - before.idle) + (after.iowait - before.iowait)
    total = sum(after) - sum(before)
    return 100 * (1 - idle / total) if total > 0 else float("nan")


def postgres_cpu(database: str) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend serving `database`, by pid."""
    found: dict[int, float] = {}
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if f" {database} " in " ".join(proc.info["cmdline"] or ()) + " ":
                found[proc.pid] = cpu_seconds([proc])
    return found


def postgres_cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """Backends opened meanwhile count in full; those closed meanwhile are missed."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


# -- clients ---------------------------------------------------------------------------


@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


async def _raw_connection(
    port: int, bodies: Iterator[bytes], tally: Tally, delay: float, token: str
) -> None:
    """One keep-alive connection sending requests back to back until `bodies` runs out.

    Connections open `delay` apart: a burst lets one uvicorn worker accept them all.
    """
    await asyncio.sleep(delay)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"POST {SUBMIT_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    head += f"Content-Type: application/json\r\nAuthorization: Bearer {token}\r\n"
    try:
        for body in bodies:
            request = f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
            started = time.perf_counter()
            writer.write(request)
            status_line = await reader.readuntil(b"\r\n")
            headers = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in headers.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            elapsed = (time.perf_counter() - started) * 1000
            status = int(status_line.split(b" ", 2)[1])
            if status == 201:
                tally.latencies_ms.append(elapsed)
            else:
                tally.error(f"http {status}")
    except (OSError, asyncio.IncompleteReadError) as exc:
        tally.error(type(exc).__name__)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _httpx_worker(
    client: httpx.AsyncClient, bodies: Iterator[bytes], tally: Tally, token: str
) -> None:
    headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
    for body in bodies:
        started = time.perf_counter()
        try:
            response = await client.post(SUBMIT_PATH, content=body, headers=headers)
        except httpx.HTTPError as exc:
            tally.error(type(exc).__name__)
            continue
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code == 201:
            tally.latencies_ms.append(elapsed)
        else:
            tally.error(f"http {response.status_code}")


async def drive(
    url: str, port: int, first: int, n: int, concurrency: int, client: str, token: str
) -> Tally:
    """Send `n` submits over `concurrency` connections; all share one body iterator."""
    tally = Tally()
    bodies = (job_body(i) for i in range(first, first + n))
    if client == "raw":
        await asyncio.gather(
            *(_raw_connection(port, bodies, tally, 0.005 * k, token) for k in range(concurrency))
        )
        return tally
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as http:
        await asyncio.gather(
            *(_httpx_worker(http, bodies, tally, token) for _ in range(concurrency))
        )
    return tally


# -- one run ---------------------------------------------------------------------------


@dataclass
class RunResult:
    backend: str
    workers: int
    client: str
    concurrency: int
    requests: int
    ok: int
    errors: dict[str, int]
    seconds: float
    submits_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    server_cpu_pct: float
    server_cpu_pct_by_process: list[float]
    server_cpu_ms_per_submit: float
    client_cpu_pct: float
    postgres_cpu_pct: float | None
    machine_busy_pct: float
    load_avg_1m: float
    jobs_stored: int
    events_stored: int


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    if len(sorted_values) == 1:
        return sorted_values[0]
    return statistics.quantiles(sorted_values, n=1000, method="inclusive")[int(q * 10) - 1]


def run_one(backend: str, database_url: str, workers: int, args: argparse.Namespace) -> RunResult:
    from commonpool.migrations import upgrade

    upgrade(database_url)
    token = bench_user_token(database_url)
    state_dir = Path(tempfile.mkdtemp(prefix="cp_bench_state_"))
    server = Server(database_url, workers, state_dir)
    profiler: subprocess.Popen[bytes] | None = None
    try:
        server.wait_ready()
        warmup = asyncio.run(
            drive(server.url, server.port, 0, args.warmup, args.concurrency, args.client, token)
        )
        if warmup.errors:
            raise RuntimeError(f"warm-up failed: {warmup.errors}")
        procs = server.processes()
        pg_db = make_url(database_url).database if backend == "postgres" else None
        if args.profile:
            profiler = start_profiler(args.profile, backend, workers, procs)
        per_proc0 = [cpu_seconds([p]) for p in procs]
        pg_cpu0 = postgres_cpu(pg_db) if pg_db else {}
        machine0 = psutil.cpu_times()
        client0 = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        tally = asyncio.run(
            drive(
                server.url,
                server.port,
                args.warmup,
                args.requests,
                args.concurrency,
                args.client,
                token,
            )
        )
        seconds = time.perf_counter() - started
        client1 = resource.getrusage(resource.RUSAGE_SELF)
        machine1 = psutil.cpu_times()
        per_proc = [cpu_seconds([p]) - c0 for p, c0 in zip(procs, per_proc0, strict=True)]
        server_cpu = sum(per_proc)
        pg_cpu = postgres_cpu_delta(pg_cpu0, postgres_cpu(pg_db)) if pg_db else 0.0
        load = os.getloadavg()[0]
    finally:
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                profiler.wait(timeout=30)
        server.stop()
        shutil.rmtree(state_dir, ignore_errors=True)
    client_cpu = (client1.ru_utime - client0.ru_utime) + (client1.ru_stime - client0.ru_stime)
    jobs, events = count_rows(database_url)
    lat = sorted(tally.latencies_ms)
    return RunResult(
        backend=backend,
        workers=workers,
        client=args.client,
        concurrency=args.concurrency,
        requests=args.requests,
        ok=len(lat),
        errors=tally.errors,
        seconds=round(seconds, 3),
        submits_per_s=round(len(lat) / seconds, 1),
        p50_ms=round(percentile(lat, 50), 2),
        p95_ms=round(percentile(lat, 95), 2),
        p99_ms=round(percentile(lat, 99), 2),
        max_ms=round(lat[-1], 2) if lat else float("nan"),
        server_cpu_pct=round(100 * server_cpu / seconds, 1),
        server_cpu_pct_by_process=[round(100 * c / seconds, 1) for c in per_proc],
        server_cpu_ms_per_submit=round(1000 * server_cpu / max(len(lat), 1), 3),
        client_cpu_pct=round(100 * client_cpu / seconds, 1),
        postgres_cpu_pct=round(100 * pg_cpu / seconds, 1) if pg_db else None,
        machine_busy_pct=round(busy_pct(machine0, machine1), 1),
        load_avg_1m=round(load, 2),
        jobs_stored=jobs,
        events_stored=events,
    )


def start_profiler(
    folder: str, backend: str, workers: int, procs: list[psutil.Process]
) -> subprocess.Popen[bytes]:
    """py-spy on the worker that serves requests (the only process when workers == 1)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    target = procs[-1].pid
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    svg = out / f"api_submit_{backend}_w{workers}.collapsed.txt"
    cmd = [
        py_spy,
        "record",
        "--pid",
        str(target),
        "--rate",
        "100",
        "--gil",
        "--format",
        "raw",
        "--output",
        str(svg),
    ]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# -- main ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--requests", type=int, default=2000, help="Measured submits per run.")
    parser.add_argument("--warmup", type=int, default=200, help="Unmeasured submits first.")
    parser.add_argument("--concurrency", type=int, default=16, help="Open connections.")
    parser.add_argument(
        "--workers", default="1,2", help="uvicorn worker counts, comma-separated (one run each)."
    )
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(PG_ENV) or PG_DEFAULT,
        help=f"Admin URL used to create the scratch database (env {PG_ENV}).",
    )
    parser.add_argument("--profile", metavar="DIR", help="Record a py-spy SVG per run into DIR.")
    args = parser.parse_args(argv)
    args.worker_counts = [int(w) for w in str(args.workers).split(",") if w.strip()]
    return args


def render(results: list[RunResult]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="POST /api/v1/jobs (real uvicorn over loopback HTTP)")
    for col in ("backend", "W", "C", "ok", "submits/s", "p50 ms", "p95 ms", "p99 ms",
                "server CPU", "ms CPU/req", "pg CPU", "client CPU", "machine"):  # fmt: skip
        table.add_column(col, justify="left" if col == "backend" else "right")
    for r in results:
        table.add_row(
            r.backend, str(r.workers), str(r.concurrency), f"{r.ok}/{r.requests}",
            f"{r.submits_per_s:,.0f}", f"{r.p50_ms:.1f}", f"{r.p95_ms:.1f}", f"{r.p99_ms:.1f}",
            f"{r.server_cpu_pct:.0f}%", f"{r.server_cpu_ms_per_submit:.2f}",
            "-" if r.postgres_cpu_pct is None else f"{r.postgres_cpu_pct:.0f}%",
            f"{r.client_cpu_pct:.0f}%", f"{r.machine_busy_pct:.0f}%",
        )  # fmt: skip
    Console(stderr=True, width=max(Console().width, 130)).print(table)
    print(
        "W = uvicorn workers, C = connections; CPU % of one core, machine % of all cores",
        file=sys.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    if "postgres" in backends and not postgres_reachable(args.postgres_url):
        if args.backend == "postgres":
            print(f"PostgreSQL not reachable at {args.postgres_url}", file=sys.stderr)
            return 2
        print("PostgreSQL not reachable: SQLite only", file=sys.stderr)
        backends.remove("postgres")
    results: list[RunResult] = []
    for backend in backends:
        for workers in args.worker_counts:
            scratch = (
                scratch_sqlite() if backend == "sqlite" else scratch_postgres(args.postgres_url)
            )
            with scratch as url:
                results.append(run_one(backend, url, workers, args))
    render(results)
    print(json.dumps({"benchmark": "api_submit", "cpus": os.cpu_count(),
                      "runs": [asdict(r) for r in results]}))  # fmt: skip
    failed = any(r.errors or r.ok != r.requests for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
