"""Starting and stopping one Ray node (the pool's head, or an agent's worker node).

Every port is explicit: Redis owns 6379 (Ray's default GCS port) on many
machines, and several Ray nodes of one test or demo share a host. Each node
runs `ray start --block` in its own session, so stopping it kills exactly
its processes (a plain `ray stop` would kill every Ray process on the host).

A donor's worker node may run inside a `JobSandbox` (`workers/sandbox.py`):
`ray start` then starts as the job user with the donated limits, and so do
the raylet and every Ray worker that runs job code on that node.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from .sandbox import Confinement, JobSandbox, confine, give_dir, release_cgroup, require_root

NODE_LABEL = "commonpool/node"
WORKER_PORT_SPAN = 200
# node manager, object manager, agents, metrics; a head also its gcs, dashboard, client
_FIXED_PORTS = 10
START_TIMEOUT_S = 120.0
_PORT_RANGE = (20000, 32000)  # below the kernel's ephemeral range


def _port_free(port: int, host: str) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port_block(count: int, host: str = "127.0.0.1", rng: random.Random | None = None) -> int:
    """The first port of `count` consecutive ports that are free right now."""
    rng = rng or random.Random()
    for _ in range(200):
        start = rng.randrange(_PORT_RANGE[0], _PORT_RANGE[1] - count)
        if all(_port_free(p, host) for p in range(start, start + count)):
            return start
    raise RuntimeError(f"no block of {count} free ports in {_PORT_RANGE}")


@dataclass(frozen=True)
class RayNodeSpec:
    """What one `ray start` gets: resources, labels and where it listens."""

    num_cpus: float
    log_file: Path
    num_gpus: int = 0
    memory_bytes: int | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    head_address: str | None = None  # GCS host:port to join; None starts a head
    head_dashboard_url: str | None = None  # the head's dashboard, for a joining node
    node_ip: str = "127.0.0.1"
    temp_dir: Path | None = None
    object_store_bytes: int = 256 * 2**20
    auth_token_file: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    sandbox: JobSandbox | None = None  # run the node as an unprivileged job user; needs temp_dir

    @property
    def is_head(self) -> bool:
        return self.head_address is None


@dataclass
class RayNode:
    """A running Ray node; `address` is the GCS address (for a head) others join."""

    process: subprocess.Popen[bytes]
    spec: RayNodeSpec
    address: str
    dashboard_url: str | None = None
    cgroup: Path | None = None
    serve_url: str | None = None  # a head's port for Ray Serve's HTTP proxy (services)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM the node's process group, then SIGKILL it and any escaped workers.

        The node's processes may belong to the job user: the agent, as root,
        may signal them, and finds them as descendants of `ray start` (never
        by user or name, which would hit other nodes of the same job user).
        """
        if self.process.poll() is None:
            self._kill_tree(grace_s)
        release_cgroup(self.cgroup)  # and whatever of the node escaped the tree
        self.cgroup = None

    def _kill_tree(self, grace_s: float) -> None:
        try:
            members = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            members = []
        pgid = self.process.pid  # started with start_new_session: pid == pgid
        _signal_group(pgid, signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        _signal_group(pgid, signal.SIGKILL)
        for child in members:  # Ray workers live in their own process groups
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(members, timeout=5)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def auth_env(token_file: Path | None) -> dict[str, str]:
    """Ray token authentication: every node, driver and client of the cluster needs both."""
    if token_file is None:
        return {}
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file)}


def write_token_file(path: Path, token: str) -> Path:
    """The token in a file only its owner can read (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token)
    return path


def ray_executable() -> str:
    return str(Path(sys.executable).parent / "ray")


def start_ray_node(spec: RayNodeSpec) -> RayNode:
    """Start the node and wait until `ray start` says it runs (or raise with its log tail)."""
    # One block for everything, so the node's own ports can never overlap each other.
    base = free_port_block(_FIXED_PORTS + WORKER_PORT_SPAN, spec.node_ip)
    workers = base + _FIXED_PORTS
    args = [
        ray_executable(),
        "start",
        "--block",
        "--disable-usage-stats",
        f"--node-ip-address={spec.node_ip}",
        f"--num-cpus={spec.num_cpus:g}",
        f"--num-gpus={spec.num_gpus}",
        f"--node-manager-port={base}",
        f"--object-manager-port={base + 1}",
        f"--dashboard-agent-listen-port={base + 2}",
        f"--dashboard-agent-grpc-port={base + 3}",
        f"--runtime-env-agent-port={base + 4}",
        f"--metrics-export-port={base + 5}",
        f"--min-worker-port={workers}",
        f"--max-worker-port={workers + WORKER_PORT_SPAN - 1}",
        f"--object-store-memory={spec.object_store_bytes}",
    ]
    if spec.memory_bytes:
        args.append(f"--memory={spec.memory_bytes}")
    if spec.labels:
        args.append("--labels=" + ",".join(f"{k}={v}" for k, v in spec.labels.items()))
    dashboard_url = None
    if spec.is_head:
        gcs, dashboard, client = base + 6, base + 7, base + 8
        serve_url = f"http://{spec.node_ip}:{base + 9}"  # Serve starts its proxy there
        address = f"{spec.node_ip}:{gcs}"
        dashboard_url = f"http://{spec.node_ip}:{dashboard}"
        # Declare a silent node dead after ~5 s (1 s checks, 5 misses), not Ray's ~30 s:
        # donated machines vanish, and their jobs should move soon.
        env_extra = {
            "RAY_health_check_period_ms": "1000",
            "RAY_health_check_failure_threshold": "5",
        }
        args += [
            "--head",
            f"--port={gcs}",
            "--include-dashboard=true",
            f"--dashboard-host={spec.node_ip}",
            f"--dashboard-port={dashboard}",
            f"--ray-client-server-port={client}",
        ]
    else:
        env_extra = {}
        serve_url = None
        address = spec.head_address or ""
        dashboard_url = spec.head_dashboard_url
        args.append(f"--address={address}")
    if spec.temp_dir:
        # Per node: nodes sharing a session dir on one host also share runtime_env
        # unpack dirs, and one node re-extracting a job's working_dir deletes the cwd
        # of a driver on another node.
        args.append(f"--temp-dir={spec.temp_dir}")
    log_path = spec.log_file
    log_path.parent.mkdir(parents=True, exist_ok=True)
    confinement = _confinement(spec) if spec.sandbox else None
    env = {
        **(confinement.env if confinement else os.environ),
        "RAY_USAGE_STATS_ENABLED": "0",
        # A stopping node must fail its Train workers at once, not drain them for 30 s
        # (Train would see a "preemption" and retry placement instead of failing).
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
        # Ray's own Prometheus metrics pipeline (per worker and per node agent) costs CPU the
        # donor's training needs; the pool exports its own metrics at /metrics.
        "RAY_enable_metrics_collection": "0",
        **env_extra,
        **auth_env(spec.auth_token_file),
        # Ray's own helpers (e.g. Train's placement-group cleaner) look the cluster up
        # by address; with several Ray clusters on one host they must be told which.
        **({"RAY_API_SERVER_ADDRESS": dashboard_url} if dashboard_url else {}),
        **spec.env,
    }
    # The agent opens the log and hands the node its descriptor: a sandboxed node writes
    # it without any access to the agent's (private) log directory.
    cgroup = confinement.cgroup if confinement else None
    with open(log_path, "ab") as log:
        try:
            process = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
                preexec_fn=confinement.preexec if confinement else None,
                cwd=confinement.cwd if confinement else None,
            )
        except BaseException:
            release_cgroup(cgroup)
            raise
    node = RayNode(process, spec, address, dashboard_url, cgroup, serve_url)
    _wait_started(node, log_path)
    return node


def _confinement(spec: RayNodeSpec) -> Confinement:
    """Hand the node's temp dir (sessions, sockets, unpacked working_dirs, HOME) and the
    Ray token, which the raylet must read, to the job user; then confine the start."""
    assert spec.sandbox is not None
    if spec.temp_dir is None:
        raise ValueError("a sandboxed Ray node needs its own temp_dir")
    require_root(spec.sandbox)
    give_dir(spec.temp_dir, spec.sandbox)
    if spec.auth_token_file is not None:
        os.chown(spec.auth_token_file, spec.sandbox.uid, spec.sandbox.gid)
    name = spec.labels.get(NODE_LABEL)
    return confine(spec.sandbox, spec.temp_dir / "home", os.environ, cgroup_name=name)


def _wait_started(node: RayNode, log_path: Path) -> None:
    """Until `ray start` says the node runs and, on a head, its dashboard (the Jobs API, a
    process of its own that may answer seconds later on a loaded machine) answers."""
    deadline = time.monotonic() + START_TIMEOUT_S

    def started() -> bool:
        return log_path.exists() and "Ray runtime started" in log_path.read_text(errors="replace")

    _wait_for(node, log_path, deadline, started, "ray start did not come up")
    if node.spec.is_head and node.dashboard_url:
        version = f"{node.dashboard_url}/api/version"
        _wait_for(node, log_path, deadline, lambda: _answers(version), "Ray's dashboard is silent")


def _wait_for(
    node: RayNode, log_path: Path, deadline: float, ready: Callable[[], bool], failure: str
) -> None:
    while time.monotonic() < deadline:
        if node.process.poll() is not None:
            raise RuntimeError(f"ray start exited {node.process.returncode}: {_tail(log_path)}")
        if ready():
            return
        time.sleep(0.2)
    node.stop()
    raise RuntimeError(f"{failure} after {START_TIMEOUT_S:.0f}s: {_tail(log_path)}")


def _answers(url: str) -> bool:
    """Whether an HTTP server answers at `url` (any status: token auth may refuse us)."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
