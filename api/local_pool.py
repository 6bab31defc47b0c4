"""An all-in-one pool on one machine: the composition root of `commonpool up` and the demo.

One process tree: the API (uvicorn) and the scheduler loop in this process,
a Ray head (0 CPUs: it only coordinates and hosts job drivers), and N agent
processes, each enrolling with its own token and running its own labelled
Ray worker node. Everything is stopped, in reverse order, on exit.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import IO

import uvicorn

from commonpool.migrations import upgrade
from commonpool.scheduler.carbon.forecast_cache import forecasts_for_policy
from commonpool.scheduler.config import Settings
from commonpool.scheduler.launcher import Launcher
from commonpool.scheduler.logs import configure_logging
from commonpool.scheduler.loop import SchedulerLoop
from commonpool.scheduler.policy import make_policy
from commonpool.scheduler.services.nodes import create_enrollment_token
from commonpool.scheduler.services.preemption import RequeueBackoff
from commonpool.scheduler.store.engine import make_engine
from commonpool.scheduler.store.singleton import SchedulerLock
from commonpool.scheduler.store.uow import Database
from commonpool.scheduler.store.wake import wake_sender
from commonpool.workers.ray_node import (
    NODE_LABEL,
    RayNode,
    RayNodeSpec,
    free_port_block,
    start_ray_node,
    write_token_file,
)
from commonpool.workers.runner.ray_jobs import Storage, default_storage, is_uri
from commonpool.workers.runner.ray_pool import RayPoolRunner, ray_runner
from commonpool.workers.sandbox import JobSandbox, share_dir

from .app import create_app
from .bootstrap import local_admin_token
from .cli.agent import READY
from .cli.server import SCHEDULER_READY
from .client.sdk import Client

AGENT_READY_TIMEOUT_S = 180.0
AGENT_STOP_GRACE_S = 30.0
SCHEDULER_READY_TIMEOUT_S = 60.0  # a `commonpool scheduler` child: its imports and wake listener


class LocalPool:
    def __init__(
        self,
        state_dir: Path,
        *,
        agents: int = 2,
        cpus_per_agent: float = 1.0,
        memory_per_agent: int | None = None,
        region: str | None = "GB",
        port: int | None = None,
        policy: str = "fifo",
        log: IO[str] | None = None,
        token_file: Path | None = None,
        job_user: str | None = None,
        host: str = "127.0.0.1",
        run_scheduler: bool = True,
        scheduler_process: bool = False,
        ddp_start: str | None = None,
    ) -> None:
        """`token_file` is where the pool's admin token is kept (default: in `state_dir`).

        `host` is the address the API and the Ray head bind and advertise: loopback
        by default; a private address when agents on other hosts join.
        `run_scheduler=False` leaves scheduling to a separate `commonpool scheduler`
        process (see `scheduler_env`), e.g. to crash-test it.
        `scheduler_process=True` runs the scheduler as such a child process (the API's
        submits wake it through the database, as in the compose deployment) instead of
        a thread beside the API: the two no longer share one interpreter's lock.
        `ddp_start`: the `ddp_start` setting (None: from COMMONPOOL_DDP_START, else trainer).
        """
        self.host = host
        self.run_scheduler = run_scheduler
        self.scheduler_process = scheduler_process and run_scheduler
        self.scheduler_child: subprocess.Popen[bytes] | None = None
        self.ddp_start = ddp_start
        self.state_dir = state_dir
        self.token_file = token_file or state_dir / "admin-token"
        self.admin_token = ""
        self.agents = agents
        self.cpus_per_agent = cpus_per_agent
        self.memory_per_agent = memory_per_agent
        self.region = region
        self.port = port or free_port_block(1, host)
        self.policy = policy
        self.log = log or sys.stderr
        self.job_user = job_user  # agents run their Ray nodes (so jobs) as this user
        self.head: RayNode | None = None
        self.ray_temp = Path(tempfile.mkdtemp(prefix="cp-ray-"))  # short: socket paths are limited
        self.agent_procs: dict[int, subprocess.Popen[str]] = {}
        self.node_ids: list[str] = []
        self.server: uvicorn.Server | None = None
        self.loop: SchedulerLoop | None = None
        self.runner: RayPoolRunner | None = None
        self.settings: Settings | None = None
        self._log_file: IO[str] | None = None
        self.db: Database | None = None
        self._scheduler_lock: SchedulerLock | None = None
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client(self) -> Client:
        """A client of this pool's API with its admin token."""
        return Client(self.url, token=self.admin_token)

    def say(self, message: str) -> None:
        print(f"[pool] {message}", file=self.log, flush=True)

    def __enter__(self) -> LocalPool:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.say("starting the Ray head (explicit ports, 0 CPUs, token auth)")
        token_file = write_token_file(self.ray_temp / "auth_token", secrets.token_hex(32))
        self.head = start_ray_node(
            RayNodeSpec(
                num_cpus=0,
                labels={NODE_LABEL: "head"},
                node_ip=self.host,
                temp_dir=self.ray_temp,
                auth_token_file=token_file,
                log_file=self.state_dir / "logs" / "ray-head.log",
            )
        )
        settings = Settings(
            state_dir=self.state_dir,
            port=self.port,
            server_url=self.url,
            ray_address=self.head.address,
            ray_dashboard_url=self.head.dashboard_url or "",
            ray_serve_url=self.head.serve_url or "",
            ray_auth_token_file=token_file,
            scheduler_interval_s=0.5,
            policy=self.policy,
            **({"ddp_start": self.ddp_start} if self.ddp_start else {}),
        )
        upgrade(settings.resolved_database_url)
        self.settings = settings
        logs = self.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self._log_file = open(logs / "scheduler.log", "a", buffering=1)  # noqa: SIM115
        configure_logging(settings.log_format, settings.log_level, stream=self._log_file)
        if self._scheduler_thread:
            self._scheduler_lock = SchedulerLock(settings.resolved_database_url)
            self._scheduler_lock.acquire()
        self.db = Database(make_engine(settings.resolved_database_url))
        self.admin_token = local_admin_token(self.db, self.token_file)
        runner = self.runner = ray_runner(
            settings, self._checkpoint_storage(), head_temp_dir=self.ray_temp
        )
        self.loop = SchedulerLoop(
            self.db,
            make_policy(settings.policy, grow_after_s=settings.elastic_grow_after_s),
            interval_s=settings.scheduler_interval_s,
            quick_depth=settings.scheduler_quick_depth,
            chain_window_s=settings.scheduler_chain_window_s,
            chain_depth=settings.scheduler_chain_depth,
            on_error=lambda exc: self.say(f"scheduler step failed: {exc}"),
            launcher=Launcher(
                self.db,
                runner,
                server_url=self.url,
                log_max_bytes=settings.job_log_max_bytes,
                backoff=RequeueBackoff.of(settings),
            ),
            forecasts=forecasts_for_policy(settings.policy),
            backoff=RequeueBackoff.of(settings),
        )
        wake = self.loop.wake if self._scheduler_thread else wake_sender(self.db.engine)
        app = create_app(settings, self.db, wake_scheduler=wake)
        self.loop.after_step = app.state.metrics.observe_step  # decision latency on /metrics
        self.server = uvicorn.Server(
            uvicorn.Config(
                app, host=self.host, port=self.port, log_level="warning", access_log=False
            )
        )
        self._spawn(self.server.run, "api")
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.05)
        self.say(f"API on {self.url} ({settings.resolved_database_url})")
        if self._scheduler_thread:
            self._spawn(self.loop.run_forever, "scheduler")
        elif self.scheduler_process:
            self._start_scheduler_child()
        for index in range(self.agents):  # one after another: they share Ray's session dir
            self.node_ids.append(self.add_agent(index))

    @property
    def _scheduler_thread(self) -> bool:
        return self.run_scheduler and not self.scheduler_process

    def _start_scheduler_child(self) -> None:
        """`commonpool scheduler` for this pool; returns once it schedules (or raises)."""
        log = self.state_dir / "logs" / "scheduler-process.log"
        with open(log, "ab") as err:
            self.scheduler_child = subprocess.Popen(
                [sys.executable, "-m", "commonpool", "scheduler"],
                env={**os.environ, **self.scheduler_env()},
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        deadline = time.monotonic() + SCHEDULER_READY_TIMEOUT_S
        while SCHEDULER_READY not in log.read_text(errors="replace"):
            if self.scheduler_child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the scheduler process did not start; see {log}")
            time.sleep(0.05)
        self.say(f"scheduler in process {self.scheduler_child.pid} (log: {log})")

    def scheduler_env(self) -> dict[str, str]:
        """The environment of a `commonpool scheduler` process that schedules this pool."""
        settings = self.settings
        assert settings is not None, "the pool is not started"
        return {
            "COMMONPOOL_STATE_DIR": str(self.state_dir),
            "COMMONPOOL_DATABASE_URL": settings.resolved_database_url,
            "COMMONPOOL_SERVER_URL": self.url,
            "COMMONPOOL_RAY_DASHBOARD_URL": settings.ray_dashboard_url,
            "COMMONPOOL_RAY_SERVE_URL": settings.ray_serve_url,
            "COMMONPOOL_RAY_ADDRESS": settings.ray_address,
            "COMMONPOOL_RAY_AUTH_TOKEN_FILE": str(settings.ray_auth_token_file or ""),
            "COMMONPOOL_POLICY": settings.policy,
            "COMMONPOOL_SCHEDULER_INTERVAL_S": str(settings.scheduler_interval_s),
        }

    def _checkpoint_storage(self) -> Storage:
        """Where jobs checkpoint; with a job user, shared with it: its workers write there."""
        storage = default_storage(self.state_dir)
        if self.job_user and not is_uri(storage):
            share_dir(Path(storage), JobSandbox.for_user(self.job_user))
        return storage

    def _spawn(self, target: object, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def add_agent(self, index: int) -> str:
        """Start agent `index` and wait until its Ray node runs; returns its node id.

        The agent keeps its identity in `<state_dir>/agent-<index>/agent.json`,
        so starting an index again resumes the same node instead of enrolling.
        """
        assert self.db is not None
        with self.db.unit_of_work() as session:
            token, _ = create_enrollment_token(session, ttl=timedelta(minutes=10))
        agent_dir = self.state_dir / f"agent-{index}"
        args = [
            sys.executable,
            "-m",
            "commonpool",
            "agent",
            "--server",
            self.url,
            "--enroll-token",
            token,
            "--cpus",
            f"{self.cpus_per_agent:g}",
            "--name",
            f"local-{index}",
            "--heartbeat",
            "2",
            "--drain-grace",
            "10",
            "--state-file",
            str(agent_dir / "agent.json"),
        ]
        if self.memory_per_agent:
            args += ["--memory", str(self.memory_per_agent)]
        if self.region:
            args += ["--region", self.region]
        if self.job_user:
            args += ["--job-user", self.job_user]
        env = {**os.environ, "COMMONPOOL_STATE_DIR": str(agent_dir)}
        process = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        self.agent_procs[index] = process
        node_id = self._await_ready(process, index)
        self.say(f"agent {index} joined as {node_id}")
        return node_id

    def _await_ready(self, process: subprocess.Popen[str], index: int) -> str:
        assert process.stdout is not None
        found: list[str] = []
        output: list[str] = []

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                output.append(line.rstrip())
                if line.startswith(READY) and not found:
                    found.append(line[len(READY) :].strip())

        self._spawn(read, f"agent-{index}-output")
        deadline = time.monotonic() + AGENT_READY_TIMEOUT_S
        while not found:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"agent {index} did not become ready: " + " | ".join(output[-10:])
                )
            time.sleep(0.1)
        return found[0]

    def stop_agent(self, index: int) -> int:
        """SIGTERM agent `index` (it drains, leaves and stops its Ray node); its exit code."""
        process = self.agent_procs.pop(index)
        if process.poll() is None:
            process.terminate()
        try:
            return process.wait(timeout=AGENT_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            return process.wait(timeout=10)

    def stop(self) -> None:
        """Agents drain and leave, then the scheduler, the API and the Ray head stop."""
        for index in list(self.agent_procs):
            self.agent_procs[index].terminate()
        for index in list(self.agent_procs):
            self.stop_agent(index)
        if self.loop is not None:
            self.loop.stop()
        if self.scheduler_child is not None:
            self.scheduler_child.terminate()  # SIGTERM: it ends its step and exits
            try:
                self.scheduler_child.wait(timeout=AGENT_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.scheduler_child.kill()
                self.scheduler_child.wait(timeout=10)
        if self.server is not None:
            self.server.should_exit = True
        for thread in self._threads:
            thread.join(timeout=10)
        if self.runner is not None:
            self.runner.close()
        if self.head is not None:
            self.head.stop()
        if self.db is not None:
            self.db.dispose()
        if self._scheduler_lock is not None:
            self._scheduler_lock.release()
        if self._log_file is not None:
            configure_logging()  # back to stderr before the file closes
            self._log_file.close()
        shutil.rmtree(self.ray_temp, ignore_errors=True)
