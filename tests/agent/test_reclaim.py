"""Owner reclaim: the pure decisions stepped with synthetic samples, the owner probe's
arithmetic, the pid file behind `agent stop`, and the agent acting on the decisions
against a real API (Ray stubbed out: tests/integration/test_owner_reclaim.py runs it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commonpool.api.client.sdk import Client
from commonpool.scheduler.services.nodes import create_enrollment_token
from commonpool.scheduler.store.uow import Database
from commonpool.workers.agent.main import Agent, AgentConfig
from commonpool.workers.agent.owner import OwnerProbe
from commonpool.workers.agent.pidfile import (
    AgentAlreadyRunning,
    NoAgentRunning,
    find_running_agent,
    pid_file,
    pid_file_for,
    remove_pid_file,
    stop_agent,
    write_pid_file,
)
from commonpool.workers.agent.probe import Resources
from commonpool.workers.agent.reclaim import (
    OwnerSample,
    OwnerWatch,
    ReclaimAction,
    ReclaimPolicy,
    ReclaimState,
    decide_reclaim,
    start_watch,
)
from tests.conftest import LiveServer

DRAIN, LEAVE, REJOIN = ReclaimAction.DRAIN, ReclaimAction.LEAVE, ReclaimAction.REJOIN


def step(
    samples: Sequence[OwnerSample],
    policy: ReclaimPolicy,
    jobs: Callable[[float], int | None] = lambda _at: 0,
    watch: OwnerWatch | None = None,
) -> tuple[OwnerWatch, list[tuple[float, ReclaimAction, str]]]:
    """Feed samples one at a time; (final watch, [(at, action, reason)])."""
    watch = watch or OwnerWatch()
    decisions = []
    for sample in samples:
        watch, decision = decide_reclaim(watch, sample, policy, jobs_held=jobs(sample.at))
        if decision is not None:
            decisions.append((sample.at, decision.action, decision.reason))
    return watch, decisions


def cpu(values: Sequence[float], start: float = 0.0) -> list[OwnerSample]:
    """One sample a second with these owner CPU percentages."""
    return [OwnerSample(at=start + i, cpu_percent=v) for i, v in enumerate(values)]


def files(flags: str, start: float = 0.0) -> list[OwnerSample]:
    """One sample a second; `B` the busy file exists, `.` it does not."""
    return [OwnerSample(at=start + i, busy_file=f == "B") for i, f in enumerate(flags)]


# -- decisions -----------------------------------------------------------------


def test_busy_file_drains_at_once_leaves_when_no_job_is_left_and_rejoins_after_idle() -> None:
    policy = ReclaimPolicy(idle_after_s=3, grace_s=60)
    held = {0.0: 2, 1.0: 2, 2.0: 0}
    watch, decisions = step(files("..BB....."), policy, jobs=lambda at: held.get(at, 0))
    assert decisions == [
        (2.0, DRAIN, "busy file exists"),
        (3.0, LEAVE, "no pool job left on the node"),
        (7.0, REJOIN, "owner idle for 3 s"),  # idle from 4 s (the file gone) to 7 s
    ]
    assert watch.state is ReclaimState.SHARING


def test_jobs_that_do_not_end_get_the_grace_then_are_requeued() -> None:
    policy = ReclaimPolicy(grace_s=5, idle_after_s=100)
    _, decisions = step(files("B" * 10), policy, jobs=lambda _at: 2)
    assert [(at, action) for at, action, _ in decisions] == [(0.0, DRAIN), (5.0, LEAVE)]
    assert decisions[1][2] == "grace of 5 s over: 2 allocation(s) preempted and requeued"


def test_unknown_jobs_mean_waiting_for_the_whole_grace() -> None:
    """The server did not answer: the agent cannot know the node is empty, so it waits."""
    policy = ReclaimPolicy(grace_s=3)
    _, decisions = step(files("BBBBB"), policy, jobs=lambda _at: None)
    assert [(at, action) for at, action, _ in decisions] == [(0.0, DRAIN), (3.0, LEAVE)]
    assert "its jobs preempted" in decisions[1][2]


def test_owner_cpu_must_stay_busy_for_busy_after() -> None:
    policy = ReclaimPolicy(busy_cpu=50, busy_after_s=3)
    # 80% for 3 s, a dip to 10% breaks the run, then 60% long enough
    _, decisions = step(cpu([80, 80, 80, 10, 60, 60, 60, 60]), policy)
    assert decisions[0] == (7.0, DRAIN, "CPU 60% >= 50% for 3 s")


def test_a_short_burst_never_drains() -> None:
    policy = ReclaimPolicy(busy_cpu=50, busy_after_s=5)
    watch, decisions = step(cpu([100, 100, 100, 0] * 10), policy)
    assert decisions == [] and watch.state is ReclaimState.SHARING


def test_between_the_levels_the_owner_is_neither_busy_nor_idle() -> None:
    """Hysteresis: 40% with busy at 50% (idle below 25%) drains nothing and rejoins nothing."""
    policy = ReclaimPolicy(busy_cpu=50, busy_after_s=2, idle_after_s=3)
    watch, decisions = step(cpu([40] * 20), policy)
    assert decisions == [] and watch.state is ReclaimState.SHARING
    reclaimed, decisions = step(cpu([90, 90, 90, 40, 40, 40, 40, 40, 40, 40, 40]), policy)
    assert [a for _, a, _ in decisions] == [DRAIN, LEAVE]
    assert reclaimed.state is ReclaimState.RECLAIMED  # 40% is not idle: stays reclaimed
    _, decisions = step(cpu([20, 20, 20, 20], start=20), policy, watch=reclaimed)
    assert [(at, a) for at, a, _ in decisions] == [(23.0, REJOIN)]


def test_a_started_reclaim_finishes_even_if_the_owner_goes_quiet() -> None:
    policy = ReclaimPolicy(grace_s=4, idle_after_s=2)
    _, decisions = step(files("B........."), policy, jobs=lambda _at: 1)
    # drained at 0 although the file went at 1; left at the grace; idle counted from the leave
    assert [(at, a) for at, a, _ in decisions] == [(0.0, DRAIN), (4.0, LEAVE), (6.0, REJOIN)]


def test_cpu_is_ignored_unless_busy_cpu_is_set() -> None:
    _, decisions = step(cpu([100.0] * 30), ReclaimPolicy(busy_cpu=None, busy_after_s=0))
    assert decisions == []


def test_busy_file_at_start_means_not_joining_until_idle() -> None:
    policy = ReclaimPolicy(idle_after_s=2)
    watch = start_watch(OwnerSample(at=0, busy_file=True), policy)
    assert watch.state is ReclaimState.RECLAIMED and watch.reason == "busy file exists"
    _, decisions = step(files("BB...", start=1), policy, watch=watch)
    assert [(at, a) for at, a, _ in decisions] == [(5.0, REJOIN)]
    assert start_watch(OwnerSample(at=0), policy).state is ReclaimState.SHARING


def test_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        ReclaimPolicy(busy_cpu=0)
    with pytest.raises(ValueError):
        ReclaimPolicy(busy_cpu=150)
    with pytest.raises(ValueError):
        ReclaimPolicy(grace_s=-1)
    assert ReclaimPolicy(busy_cpu=60).idle_cpu == 30


samples_strategy = st.lists(
    st.tuples(
        st.floats(min_value=0.1, max_value=3.0),  # seconds since the previous sample
        st.one_of(st.none(), st.floats(min_value=0, max_value=100)),
        st.booleans(),
        st.one_of(st.none(), st.integers(min_value=0, max_value=3)),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(
    steps=samples_strategy,
    busy_cpu=st.one_of(st.none(), st.floats(min_value=5, max_value=100)),
    busy_after=st.floats(min_value=0, max_value=10),
    idle_after=st.floats(min_value=0, max_value=10),
    grace=st.floats(min_value=0, max_value=10),
)
def test_decisions_follow_the_cycle_and_the_donor_always_wins(
    steps: list[tuple[float, float | None, bool, int | None]],
    busy_cpu: float | None,
    busy_after: float,
    idle_after: float,
    grace: float,
) -> None:
    policy = ReclaimPolicy(busy_cpu, busy_after, idle_after, grace)
    watch, at = OwnerWatch(), 0.0
    cycle = {ReclaimState.SHARING: DRAIN, ReclaimState.RECLAIMING: LEAVE,
             ReclaimState.RECLAIMED: REJOIN}
    for gap, percent, busy_file, jobs in steps:
        at += gap
        sample = OwnerSample(at=at, cpu_percent=percent, busy_file=busy_file)
        before = watch
        watch, decision = decide_reclaim(watch, sample, policy, jobs_held=jobs)
        if decision is None:
            assert watch.state is before.state
            # the busy file never leaves a sharing node sharing; a reclaim ends by its grace
            assert not (busy_file and watch.state is ReclaimState.SHARING)
            if watch.state is ReclaimState.RECLAIMING:
                assert before.drain_at is not None and at - before.drain_at < grace
            continue
        assert decision.action is cycle[before.state]  # one step around the cycle, never a skip
        if decision.action is REJOIN:
            assert not busy_file  # never back while the owner says busy
            assert busy_cpu is None or (percent is not None and percent < busy_cpu / 2)
        if decision.action is LEAVE:
            assert jobs == 0 or at - (before.drain_at or at) >= grace


# -- the owner probe -------------------------------------------------------------


class FakeTimes:
    """psutil.cpu_times()-like readings: busy and idle seconds summed over CPUs."""

    def __init__(self) -> None:
        self.user = self.idle = 0.0
        self.nice = self.system = 0.0

    def __call__(self) -> SimpleNamespace:
        return SimpleNamespace(user=self.user, nice=0.0, system=0.0, idle=self.idle)


def test_owner_cpu_is_the_machine_minus_the_agents_process_tree(tmp_path: Path) -> None:
    times = FakeTimes()
    probe = OwnerProbe(watch_cpu=True, cpu_times=times)
    ours = [0.0]
    probe._tree_cpu_s = lambda: ours[0]  # type: ignore[method-assign]
    times.user, times.idle, ours[0] = 6.0, 4.0, 4.0  # 10 CPU-s: 6 busy, 4 of them ours
    assert probe.sample().cpu_percent == pytest.approx(20.0)
    times.user, times.idle, ours[0] = 7.0, 13.0, 3.0  # ours can exceed busy (skew): 0%
    assert probe.sample().cpu_percent == 0.0


def test_owner_probe_sees_the_busy_file_and_scans_the_agents_descendants(tmp_path: Path) -> None:
    flag = tmp_path / "busy"
    probe = OwnerProbe(busy_file=flag, watch_cpu=True, root_pid=os.getpid())
    assert probe.sample().busy_file is False
    flag.touch()
    assert probe.sample().busy_file is True
    assert "busy file" in probe.describe() and "CPU" in probe.describe()
    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
    child = subprocess.Popen([sys.executable, "-c", spin + "print(flush=True); time.sleep(30)"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "\n"  # it burnt 0.3 s
        real, used = probe._tree_cpu_s, []
        probe._tree_cpu_s = lambda: used.append(real()) or used[-1]  # type: ignore[method-assign]
        probe.invalidate()  # the agent started its Ray node: rescan
        probe.sample()
        assert {os.getpid(), child.pid} <= probe._tree
        assert used[0] >= 0.3  # first seen in the tree: counted from its start, not the owner's
    finally:
        child.kill()
        child.wait()


# -- the pid file behind `agent stop` --------------------------------------------------


def test_pid_file_is_private_refuses_a_second_agent_and_is_removed(tmp_path: Path) -> None:
    path = pid_file_for(tmp_path / "state" / "agent.json")
    assert path.name == "agent.pid"
    with pid_file(path):
        assert path.stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
        running = find_running_agent(path)
        assert running is not None and running.pid == os.getpid()
        with pytest.raises(AgentAlreadyRunning):
            write_pid_file(path)
    assert not path.exists()


def test_stale_or_reused_pid_files_are_not_an_agent(tmp_path: Path) -> None:
    path = tmp_path / "agent.pid"
    dead = subprocess.Popen(["true"])
    dead.wait()
    path.write_text(json.dumps({"pid": dead.pid, "started_at": 1.0}))
    assert find_running_agent(path) is None
    # our own pid, but another start time: the pid was reused by someone else
    path.write_text(json.dumps({"pid": os.getpid(), "started_at": 1.0}))
    assert find_running_agent(path) is None
    write_pid_file(path)  # a stale file is replaced
    assert find_running_agent(path) is not None
    remove_pid_file(path, pid=os.getpid() + 1)  # not ours: kept
    assert path.exists()


def test_stop_signals_the_agent_and_waits_for_it(tmp_path: Path) -> None:
    path = tmp_path / "agent.pid"
    with pytest.raises(NoAgentRunning):
        stop_agent(path, timeout_s=1)
    agent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    write_pid_file(path, pid=agent.pid)
    assert stop_agent(path, timeout_s=10).pid == agent.pid  # a zombie until we reap it
    assert agent.wait(timeout=5) == -15


def test_stop_gives_up_after_its_timeout_with_progress(tmp_path: Path) -> None:
    path = tmp_path / "agent.pid"
    stubborn = subprocess.Popen([sys.executable, "-c", (
        "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    try:
        assert stubborn.stdout is not None and stubborn.stdout.readline() == "ready\n"
        write_pid_file(path, pid=stubborn.pid)
        seen: list[float] = []
        with pytest.raises(TimeoutError):
            stop_agent(path, timeout_s=1.5, every_s=0.5, on_wait=lambda _p, w: seen.append(w))
        assert len(seen) >= 2 and stubborn.poll() is None
    finally:
        stubborn.kill()
        stubborn.wait()


# -- the agent carrying the decisions out, against a real API ------------------------


class FakeRay:
    """Stands in for the agent's Ray worker node: starts and stops, counted."""

    started = 0

    def __init__(self) -> None:
        FakeRay.started += 1
        self.process = SimpleNamespace(pid=os.getpid())
        self.stopped = False

    @property
    def alive(self) -> bool:
        return not self.stopped

    def stop(self) -> None:
        self.stopped = True


@pytest.fixture
def reclaiming_agent(
    live_server: LiveServer, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Agent]:
    with db.unit_of_work() as session:
        token, _ = create_enrollment_token(session, ttl=timedelta(minutes=5))
    config = AgentConfig(
        server=live_server.url, state_file=tmp_path / "agent.json",
        resources=Resources(cpus=1, memory_bytes=2**30), name="donor", enroll_token=token,
        sample_s=0, heartbeat_s=0.2, drain_grace_s=5, busy_file=tmp_path / "busy",
        idle_after_s=1.0)
    worker = Agent(config)
    FakeRay.started = 0
    monkeypatch.setattr(worker, "start_ray", FakeRay)
    yield worker
    worker.stop()


def _until(check: Callable[[], Any], timeout_s: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return value


def test_agent_drains_leaves_stays_silent_and_rejoins_with_the_owner(
    reclaiming_agent: Agent, live_server: LiveServer, admin_token: str,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    agent, busy = reclaiming_agent, reclaiming_agent.config.busy_file
    assert busy is not None
    beats: list[float] = []
    real_heartbeat = agent.client.heartbeat

    def counted(*args: Any, **kwargs: Any) -> Any:
        beats.append(time.monotonic())
        return real_heartbeat(*args, **kwargs)

    monkeypatch.setattr(agent.client, "heartbeat", counted)
    runner = threading.Thread(target=agent.run)
    runner.start()
    with Client(live_server.url, token=admin_token) as admin:
        node_id = _until(lambda: agent.state and agent.ray and agent.state.node_id)
        _until(lambda: admin.get_node(node_id).state == "ONLINE")

        busy.touch()  # the owner is back: no job here, so drain and leave at once
        _until(lambda: admin.get_node(node_id).state == "OFFLINE")
        _until(lambda: agent.ray is None)
        drains = admin.audit_page(action="node.drain").items
        assert [(e.target, e.detail.get("reason")) for e in drains] == [
            (node_id, "owner busy: busy file exists")]
        left_at = time.monotonic()
        time.sleep(2.0)  # reclaimed, and longer than idle_after: no heartbeat, still OFFLINE
        assert [b for b in beats if b > left_at] == []
        assert admin.get_node(node_id).state == "OFFLINE"

        busy.unlink()  # the owner went away: idle for 1 s, then back in the pool
        _until(lambda: admin.get_node(node_id).state == "ONLINE")
        _until(lambda: agent.ray is not None)
        assert FakeRay.started == 2

        agent.stop()  # what SIGTERM does: drain, leave, stop Ray, return
        runner.join(timeout=20)
        assert not runner.is_alive()
        assert admin.get_node(node_id).state == "OFFLINE"
    out = capsys.readouterr().out
    assert "agent: owner busy (busy file exists): draining node" in out
    assert "agent: left the pool (no pool job left on the node); Ray node stopped" in out
    assert "agent: owner idle for 1 s: rejoining the pool" in out
    assert f"agent: back in the pool: node {node_id} ONLINE" in out


def test_agent_started_while_the_owner_is_busy_waits_before_joining(
    reclaiming_agent: Agent, live_server: LiveServer, admin_token: str,
) -> None:
    agent, busy = reclaiming_agent, reclaiming_agent.config.busy_file
    assert busy is not None
    busy.touch()
    ready: list[str] = []
    agent.on_ready = ready.append
    runner = threading.Thread(target=agent.run)
    runner.start()
    try:
        node_id = _until(lambda: agent.state and agent.state.node_id)
        time.sleep(1.5)
        with Client(live_server.url, token=admin_token) as admin:
            assert admin.get_node(node_id).state == "ENROLLED"  # never heartbeated
            assert ready == [] and FakeRay.started == 0
            busy.unlink()
            _until(lambda: admin.get_node(node_id).state == "ONLINE")
            assert _until(lambda: ready) == [node_id]
    finally:
        agent.stop()
        runner.join(timeout=20)


def test_stopping_a_reclaimed_agent_just_exits(
    reclaiming_agent: Agent, live_server: LiveServer, admin_token: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    agent, busy = reclaiming_agent, reclaiming_agent.config.busy_file
    assert busy is not None
    runner = threading.Thread(target=agent.run)
    runner.start()
    with Client(live_server.url, token=admin_token) as admin:
        node_id = _until(lambda: agent.state and agent.ray and agent.state.node_id)
        busy.touch()
        _until(lambda: agent.watch.state is ReclaimState.RECLAIMED and agent.ray is None)
        started = time.monotonic()
        agent.stop()
        runner.join(timeout=10)
        assert not runner.is_alive() and time.monotonic() - started < 3  # no second grace
        assert admin.get_node(node_id).state == "OFFLINE"
        assert len(admin.audit_page(action="node.drain").items) == 1
    assert "agent: stopped (the node had left the pool: owner busy)" in capsys.readouterr().out
