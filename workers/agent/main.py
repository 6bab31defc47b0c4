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
4. On SIGTERM/SIGINT (`commonpool agent stop`): drain (no new work), wait
   for running jobs to end within a bounded grace, then leave (remaining
   jobs are requeued) and stop the Ray node.
5. Owner reclaim (when a busy file or a CPU threshold is configured): the
   owner's activity is sampled every second (`owner.py`) and the decisions
   of `reclaim.py` carried out here. Owner busy: drain, wait up to the grace
   for the node's jobs to end (they checkpoint meanwhile), leave (the rest
   are preempted and resume elsewhere from their latest checkpoint), stop
   energy sampling and the Ray node: the donor gets back every CPU and byte
   the pool used. The agent process stays, watching the owner, and sends no
   heartbeat while reclaimed: an OFFLINE node has no lease to expire, and a
   heartbeat would bring it back ONLINE. Owner idle for `idle_after_s`: the
   agent heartbeats again (the node goes ONLINE) and restarts its Ray node.

With `job_user`, the agent (which must then run as root) starts the Ray
worker node, and so every job process on it, as that user, limited to the
donated CPUs and memory (`workers/sandbox.py`): jobs cannot read the state
file that holds the node credential. Without it, jobs run as the agent's
own user and can.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import sys
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
from commonpool.scheduler.domain.errors import (
    CommonpoolError,
    StaleLease,
    Unauthorized,
    Unavailable,
)
from commonpool.workers.telemetry import NodeEnergySampler

from ..artifacts import ENV_CACHE
from ..ray_node import NODE_LABEL, RayNode, RayNodeSpec, start_ray_node, write_token_file
from ..sandbox import JobSandbox, require_root
from .energy import EnergyRecorder, JobProcesses
from .owner import OWNER_CHECK_S, OwnerProbe
from .probe import Resources, collective_env
from .reclaim import (
    OwnerWatch,
    ReclaimAction,
    ReclaimPolicy,
    ReclaimState,
    decide_reclaim,
    start_watch,
)
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
    job_user: str | None = None
    """Run the Ray worker node (all job processes) as this user; needs the agent to be root."""
    ca_file: Path | None = None
    """CA bundle to verify an https server with (a pool CA outside the system store)."""
    busy_file: Path | None = None
    """The owner is busy (the node is reclaimed) while this file exists."""
    busy_cpu: float | None = None
    """Owner CPU use (% of logical CPUs) that reclaims the node; None: CPU is not watched."""
    busy_after_s: float = 10.0
    idle_after_s: float = 300.0

    @property
    def reclaim_policy(self) -> ReclaimPolicy:
        return ReclaimPolicy(
            busy_cpu=self.busy_cpu,
            busy_after_s=self.busy_after_s,
            idle_after_s=self.idle_after_s,
            grace_s=self.drain_grace_s,
        )

    @property
    def watches_owner(self) -> bool:
        return self.busy_file is not None or self.busy_cpu is not None


class Agent:
    def __init__(self, config: AgentConfig, on_ready: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.on_ready = on_ready
        self.client = Client(config.server, timeout=15.0, ca_file=config.ca_file)
        self.state: AgentState | None = None
        self.ray: RayNode | None = None
        self._ray_temp: Path | None = None
        self._stop = threading.Event()
        self.energy: EnergyRecorder | None = None
        self.sandbox = job_sandbox(config)  # raises SandboxError before anything is enrolled
        self.owner: OwnerProbe | None = None
        self.watch = OwnerWatch()
        self.held: int | None = None
        """Allocations on this node at the latest accepted heartbeat (None: unknown)."""
        self.node_state: str | None = None
        self._next_beat = 0.0
        self._announced = False
        self._left = False
        self._returning = False

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
                sandbox=self.sandbox,
                # Jobs' artifacts are cached per node, beside the node's other Ray state.
                env={
                    **collective_env(self.config.node_ip),
                    ENV_CACHE: str(self._ray_temp / "artifacts"),
                },
            )
        )

    def announce_sandbox(self) -> None:
        """Say who jobs run as; warn loudly when they could read the node credential."""
        if self.sandbox is not None:
            print(f"agent sandbox: {self.sandbox.describe()}", flush=True)
            return
        who = "root" if os.geteuid() == 0 else "the agent's own user"
        print(
            f"agent WARNING: no --job-user: jobs run as {who} and can read the node "
            f"credential in {self.config.state_file}; run the agent as root with "
            "--job-user NAME (deploy/README.md)",
            file=sys.stderr,
            flush=True,
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

    def stop_energy(self) -> None:
        """Stop sampling; intervals not yet sent are dropped (the pool no longer has the node)."""
        if self.energy is not None:
            self.energy.stop()
            self.energy = None

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
        self.node_state = reply.node.state
        return len(reply.allocations)

    def _heartbeat(self, epoch: int, energy: EnergyReportIn | None) -> HeartbeatReply:
        assert self.state is not None
        return self.client.heartbeat(
            self.state.node_id, self.state.credential, epoch, utilization(), energy=energy
        )

    def rejoin(self, epoch: int) -> None:
        """Fenced: our work was moved elsewhere. Drop it (restart Ray) and take the new epoch."""
        assert self.state is not None
        print(
            f"agent: fenced (epoch {self.state.epoch} is stale, the pool is at {epoch}): "
            "stopping this node's workers and rejoining",
            flush=True,
        )
        self.stop_ray()
        self.state.epoch = epoch
        save_state(self.config.state_file, self.state)
        self._heartbeat(epoch, None)
        if self.watch.state is ReclaimState.SHARING:  # reclaiming: about to leave anyway
            self.join_ray()

    def join_ray(self) -> None:
        """Start this node's Ray worker node; the first time, say so (launchers wait for it)."""
        assert self.state is not None
        self.ray = self.start_ray()
        if self.owner is not None:
            self.owner.invalidate()  # the agent's process tree changed
        if not self._announced:
            self._announced = True
            if self.on_ready:
                self.on_ready(self.state.node_id)
            self.announce_sandbox()  # after the ready line, which launchers read first
        if self.energy is None:
            self.start_energy()

    def run(self) -> None:
        self.state = self.identity()
        policy = self.config.reclaim_policy
        if self.config.watches_owner:
            self.owner = OwnerProbe(
                busy_file=self.config.busy_file,
                watch_cpu=policy.busy_cpu is not None,
                suspicious_percent=policy.idle_cpu or 100.0,
            )
            self.watch = start_watch(self.owner.sample(), policy)
            print(f"agent: the owner's work wins: watching {self.owner.describe()}", flush=True)
        if self.watch.state is ReclaimState.RECLAIMED:
            self._left = True
            print(
                f"agent: owner busy ({self.watch.reason}): not sharing this machine until "
                f"the owner is idle for {policy.idle_after_s:g} s",
                flush=True,
            )
        else:
            self.held = self.beat()
            self.join_ray()
        self._next_beat = time.monotonic() + self.config.heartbeat_s
        self.serve()
        if self.watch.state is ReclaimState.RECLAIMED:
            with contextlib.suppress(CommonpoolError):
                self.leave("donor stopped the agent")  # only if an earlier leave failed
            print("agent: stopped (the node had left the pool: owner busy)", flush=True)
            self.shut_down()
            return
        waited = time.monotonic() - (self.watch.drain_at or time.monotonic())
        self.drain_and_leave(grace_s=max(self.config.drain_grace_s - waited, 0.0))

    def serve(self) -> None:
        """Heartbeat and watch the owner until stopped; acts on every reclaim decision."""
        failures = 0
        while not self._stop.is_set():
            try:
                sharing = self.watch.state is not ReclaimState.RECLAIMED
                if sharing and time.monotonic() >= self._next_beat:
                    failures = self.beat_and_keep_ray(failures)
                if self.owner is not None:
                    self.watch_owner()
            except Unauthorized as exc:
                self.shut_down()
                raise NodeRevoked(
                    f"the pool refuses this node's credential ({exc.detail}): its Ray node is "
                    "stopped; enroll again with a new token if the pool's admin allows it"
                ) from exc
            wait = OWNER_CHECK_S if self.owner is not None else self.config.heartbeat_s
            if self.watch.state is not ReclaimState.RECLAIMED:
                wait = min(wait, self._next_beat - time.monotonic())
            self._stop.wait(max(wait, 0.0))

    def beat_and_keep_ray(self, failures: int) -> int:
        """One heartbeat on schedule; a sharing node's Ray node is (re)started. Failures after."""
        reclaiming = self.watch.state is ReclaimState.RECLAIMING
        try:
            self.held = self.beat()
            failures = 0
            if not reclaiming and (self.ray is None or not self.ray.alive):
                self.join_ray()
            if self._returning:
                self._returning = False
                print(
                    f"agent: back in the pool: node {self.node_id} {self.node_state}, "
                    "Ray node started",
                    flush=True,
                )
        except Unavailable:
            failures += 1
            self.held = None
        # While reclaiming, beat every second: the allocations held say when to leave.
        delay = 1.0 if reclaiming else retry_delay(failures, self.config.heartbeat_s)
        self._next_beat = time.monotonic() + delay
        return failures

    @property
    def node_id(self) -> str:
        assert self.state is not None
        return self.state.node_id

    # -- owner reclaim --------------------------------------------------------
    def watch_owner(self) -> None:
        """Sample the owner, decide, act: drain, leave (stop Ray), or rejoin."""
        assert self.owner is not None
        policy = self.config.reclaim_policy
        self.watch, decision = decide_reclaim(
            self.watch, self.owner.sample(), policy, jobs_held=self.held
        )
        if decision is None:
            return
        if decision.action is ReclaimAction.DRAIN:
            self.reclaim_drain(decision.reason, policy)
        elif decision.action is ReclaimAction.LEAVE:
            self.reclaim_leave(decision.reason, policy)
        else:
            print(f"agent: {decision.reason}: rejoining the pool", flush=True)
            self._left = False
            self._returning = True
            self._next_beat = time.monotonic()  # heartbeat (ONLINE), then start Ray

    def reclaim_drain(self, reason: str, policy: ReclaimPolicy) -> None:
        assert self.state is not None
        print(
            f"agent: owner busy ({reason}): draining node {self.node_id}; its jobs have "
            f"{policy.grace_s:g} s to checkpoint or end, then move",
            flush=True,
        )
        try:
            self.client.drain_node(
                self.node_id, reason=f"owner busy: {reason}", token=self.state.credential
            )
        except Unauthorized:
            raise
        except CommonpoolError as exc:  # already drained by an admin, or the server is away
            print(f"agent: drain not recorded ({exc.detail}); leaving all the same", flush=True)
        self._next_beat = time.monotonic()  # learn at once whether any job is left

    def reclaim_leave(self, why: str, policy: ReclaimPolicy) -> None:
        self.leave(f"owner busy: {self.watch.reason}")
        self.stop_energy()
        self.stop_ray()
        if self.owner is not None:
            self.owner.invalidate()
        self.held = None
        print(
            f"agent: left the pool ({why}); Ray node stopped until the owner is idle "
            f"for {policy.idle_after_s:g} s",
            flush=True,
        )

    def leave(self, reason: str) -> None:
        """Leave the pool once: the node goes OFFLINE, jobs still on it are requeued."""
        assert self.state is not None
        if self._left:
            return
        try:
            self.client.leave(self.node_id, self.state.credential, reason=reason)
            self._left = True
        except Unauthorized:
            raise
        except CommonpoolError as exc:
            print(
                f"agent: could not leave ({exc.detail}): the pool requeues the node's jobs "
                "when its lease expires",
                flush=True,
            )

    def drain_and_leave(self, grace_s: float | None = None) -> None:
        """Drain, wait (bounded) for this node's jobs to end, leave, stop Ray."""
        assert self.state is not None
        try:
            self.client.drain_node(
                self.state.node_id, reason="donor stopped the agent", token=self.state.credential
            )
        except CommonpoolError:
            pass  # already draining, or the server is down: leaving still frees the node
        grace = self.config.drain_grace_s if grace_s is None else grace_s
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                if self.beat() == 0:
                    break
            except CommonpoolError:
                break
            time.sleep(1.0)
        try:
            self.leave("donor stopped the agent")
        except CommonpoolError:
            pass
        self.shut_down()

    def shut_down(self) -> None:
        """Stop sampling and this node's Ray processes (every job process with them)."""
        self.stop_energy()
        self.stop_ray()
        self.client.close()

    def stop(self, *_: object) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        def handler(_sig: int, _frame: FrameType | None) -> None:
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


class NodeRevoked(CommonpoolError):
    """The pool revoked this node (or forgot it): the agent stopped its Ray node and exits."""

    code = "node-revoked"
    title = "Node revoked"


def job_sandbox(config: AgentConfig) -> JobSandbox | None:
    """The sandbox of `config.job_user` with the donated CPUs and memory, checked up front."""
    if config.job_user is None:
        return None
    sandbox = JobSandbox.for_user(
        config.job_user,
        cpus=config.resources.cpus,
        memory_bytes=config.resources.memory_bytes or None,
    )
    require_root(sandbox)
    return sandbox


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
