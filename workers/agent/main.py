"""The donor's agent: enroll (once), join Ray with the donated resources, heartbeat, drain.

Lifecycle:
1. Load the node identity from the state file, or enroll with the
   single-use token and save it (a restart never becomes a new node).
2. Ask the server where the pool's Ray head is; start a Ray worker node
   with only the donated CPUs/GPUs/memory and the label
   `commonpool/node=<node id>`, which is how the runner pins workers here.
3. Heartbeat every `lease/3` seconds with utilization and the energy
   measured since the last accepted heartbeat (see `energy.py`: sampled
   at `sample_s`, attributed to the jobs' Ray workers, bounded batches);
   the reply says which allocations this node holds. A stale-epoch reply means the node
   was declared lost and its jobs moved: the agent restarts its Ray node
   (killing that work) and rejoins under the new epoch.
4. On SIGTERM/SIGINT: drain (no new work), wait for running jobs to end
   within a bounded grace, then leave (remaining jobs are requeued) and
   stop the Ray node.
"""

from __future__ import annotations

import random
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import psutil

from commonpool.api.client.sdk import Client
from commonpool.api.schemas import EnergyReportIn, HeartbeatReply, NodeEnroll
from commonpool.scheduler.domain.errors import CommonpoolError, StaleLease, Unavailable
from commonpool.workers.telemetry import NodeEnergySampler

from ..ray_node import NODE_LABEL, RayNode, RayNodeSpec, start_ray_node, write_token_file
from .energy import EnergyRecorder, JobProcesses
from .probe import Resources
from .state import AgentState, load_state, save_state

BACKOFF_MAX_S = 30.0


@dataclass
class AgentConfig:
    server: str
    state_file: Path
    resources: Resources
    name: str
    enroll_token: str | None = None
    gpu_type: str | None = None
    region: str | None = None
    donor_project: str | None = None
    pue: float = 1.0
    labels: dict[str, str] = field(default_factory=dict)
    heartbeat_s: float = 5.0
    sample_s: float = 1.0
    """Energy sampling period; 0 turns energy telemetry off."""
    drain_grace_s: float = 60.0
    node_ip: str = "127.0.0.1"
    log_dir: Path = Path(".")


class Agent:
    def __init__(self, config: AgentConfig, on_ready: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.on_ready = on_ready
        self.client = Client(config.server, timeout=15.0)
        self.state: AgentState | None = None
        self.ray: RayNode | None = None
        self._ray_temp: Path | None = None
        self._stop = threading.Event()
        self.energy: EnergyRecorder | None = None

    # -- identity ---------------------------------------------------------
    def identity(self) -> AgentState:
        """The saved node identity, or a new one from the enrollment token."""
        state = load_state(self.config.state_file)
        if state is not None:
            return state
        if not self.config.enroll_token:
            raise SystemExit(f"no state in {self.config.state_file}: pass --enroll-token to enroll")
        r = self.config.resources
        enrolled = self.client.enroll(
            NodeEnroll(
                token=self.config.enroll_token,
                name=self.config.name,
                cpus=r.cpus,
                memory_bytes=r.memory_bytes,
                gpus=r.gpus,
                gpu_model=r.gpu_model,
                gpu_memory_bytes=r.gpu_memory_bytes,
                gpu_type=self.config.gpu_type,
                labels=self.config.labels,
                region=self.config.region,
                donor_project=self.config.donor_project,
                pue=self.config.pue,
            )
        )
        state = AgentState(
            server=self.config.server,
            node_id=enrolled.node.id,
            credential=enrolled.credential,
            epoch=enrolled.node.lease_epoch,
        )
        save_state(self.config.state_file, state)
        return state

    # -- Ray ----------------------------------------------------------------
    def start_ray(self) -> RayNode:
        assert self.state is not None
        cluster = self.client.ray_cluster(self.state.credential)
        r = self.config.resources
        self._ray_temp = Path(tempfile.mkdtemp(prefix="cp-ray-"))  # short: socket path limit
        token_file = (
            write_token_file(self._ray_temp / "auth_token", cluster.auth_token)
            if cluster.auth_token
            else None
        )
        return start_ray_node(
            RayNodeSpec(
                num_cpus=r.cpus,
                num_gpus=r.gpus,
                memory_bytes=r.memory_bytes or None,
                labels={NODE_LABEL: self.state.node_id},
                head_address=cluster.address,
                head_dashboard_url=cluster.dashboard_url,
                node_ip=self.config.node_ip,
                temp_dir=self._ray_temp,
                auth_token_file=token_file,
                log_file=self.config.log_dir / f"ray-{self.state.node_id}.log",
            )
        )

    def stop_ray(self) -> None:
        if self.ray is not None:
            self.ray.stop()
            self.ray = None
        if self._ray_temp is not None:
            shutil.rmtree(self._ray_temp, ignore_errors=True)
            self._ray_temp = None

    # -- loop ---------------------------------------------------------------
    # -- energy ---------------------------------------------------------------
    def start_energy(self) -> None:
        """Choose the energy method per device (recorded in every batch) and start sampling."""
        if self.config.sample_s <= 0:
            return
        sampler = NodeEnergySampler.probe()
        self.energy = EnergyRecorder(
            sampler,
            JobProcesses(lambda: self.ray.process.pid if self.ray is not None else None),
            interval_s=self.config.sample_s,
        )
        self.energy.start()
        print(f"agent {self.energy.describe()}", flush=True)

    def beat(self) -> int:
        """One heartbeat with the pending energy batch; returns the allocations held.

        A batch is forgotten only once a heartbeat carrying it succeeded; a
        batch the server refuses as malformed is dropped (logged), so bad
        telemetry can never cost the node its lease.
        """
        assert self.state is not None
        energy = self.energy.take() if self.energy is not None else None
        try:
            reply = self._heartbeat(self.state.epoch, energy)
        except StaleLease as exc:
            self.rejoin(int(exc.fields.get("current_epoch", self.state.epoch + 1)))
            return 0
        except Unavailable:
            raise
        except CommonpoolError as exc:
            if energy is None:
                raise
            print(f"agent: energy batch refused, dropped: {exc.detail}", flush=True)
            assert self.energy is not None
            self.energy.ack(energy)
            reply = self._heartbeat(self.state.epoch, None)
        if self.energy is not None:
            self.energy.ack(energy)
        return len(reply.allocations)

    def _heartbeat(self, epoch: int, energy: EnergyReportIn | None) -> HeartbeatReply:
        assert self.state is not None
        return self.client.heartbeat(
            self.state.node_id, self.state.credential, epoch, utilization(), energy=energy
        )

    def rejoin(self, epoch: int) -> None:
        """Fenced: our work was moved elsewhere. Drop it (restart Ray) and take the new epoch."""
        assert self.state is not None
        self.stop_ray()
        self.state.epoch = epoch
        save_state(self.config.state_file, self.state)
        self._heartbeat(epoch, None)
        self.ray = self.start_ray()

    def run(self) -> None:
        self.state = self.identity()
        self.beat()
        self.ray = self.start_ray()
        if self.on_ready:
            self.on_ready(self.state.node_id)
        self.start_energy()  # after the ready line, which launchers read first
        failures = 0
        while not self._stop.is_set():
            try:
                self.beat()
                failures = 0
                if self.ray is not None and not self.ray.alive:
                    self.ray = self.start_ray()
            except Unavailable:
                failures += 1
            self._stop.wait(retry_delay(failures, self.config.heartbeat_s))
        self.drain_and_leave()

    def drain_and_leave(self) -> None:
        """Drain, wait (bounded) for this node's jobs to end, leave, stop Ray."""
        assert self.state is not None
        try:
            self.client.drain_node(self.state.node_id, reason="donor stopped the agent")
        except CommonpoolError:
            pass  # already draining, or the server is down: leaving still frees the node
        deadline = time.monotonic() + self.config.drain_grace_s
        while time.monotonic() < deadline:
            try:
                if self.beat() == 0:
                    break
            except CommonpoolError:
                break
            time.sleep(1.0)
        try:
            self.client.leave(
                self.state.node_id, self.state.credential, reason="donor stopped the agent"
            )
        except CommonpoolError:
            pass
        if self.energy is not None:
            self.energy.stop()
        self.stop_ray()
        self.client.close()

    def stop(self, *_: object) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        def handler(_sig: int, _frame: FrameType | None) -> None:
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def retry_delay(failures: int, base_s: float, rng: random.Random | None = None) -> float:
    """The next heartbeat's delay: `base_s` when healthy; after failures, exponential
    backoff capped at BACKOFF_MAX_S with jitter, so a pool's agents do not all retry
    in step when the server comes back."""
    if failures == 0:
        return base_s
    ceiling = min(BACKOFF_MAX_S, base_s * 2 ** min(failures, 5))
    return (rng or random).uniform(ceiling / 2, ceiling)


def utilization() -> dict[str, float]:
    memory = psutil.virtual_memory()
    return {"cpu_percent": psutil.cpu_percent(interval=None), "memory_percent": memory.percent}
