"""The agent's heartbeat carries its energy batch and forgets it only once stored."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from commonpool.api.client.sdk import Client
from commonpool.scheduler.domain.errors import Invalid, Unavailable
from commonpool.scheduler.services.nodes import create_enrollment_token
from commonpool.scheduler.store.uow import Database
from commonpool.workers.agent.main import Agent, AgentConfig
from commonpool.workers.agent.probe import Resources
from tests.agent.conftest import Clock, steady_recorder
from tests.conftest import LiveServer


@pytest.fixture
def agent(live_server: LiveServer, db: Database, tmp_path: Path) -> Agent:
    with db.unit_of_work() as session:
        token, _ = create_enrollment_token(session, ttl=timedelta(minutes=5))
    config = AgentConfig(server=live_server.url, state_file=tmp_path / "agent.json",
                         resources=Resources(cpus=1, memory_bytes=2**30), name="beat",
                         enroll_token=token, region="GB", pue=1.2, sample_s=0)
    worker = Agent(config)
    worker.state = worker.identity()
    return worker


def _measure(agent: Agent, seconds: float) -> Clock:
    clock = Clock()
    agent.energy = steady_recorder(clock)
    agent.energy.sampler.start()
    clock.now += seconds
    agent.energy.tick()
    return clock


def test_beat_stores_energy_with_pue_and_acknowledges(
    agent: Agent, live_server: LiveServer, admin_token: str
) -> None:
    _measure(agent, 4.0)
    assert agent.beat() == 0
    assert agent.energy is not None and agent.energy.buffered == 0
    with Client(live_server.url, token=admin_token) as client:
        energy = client.pool_summary().energy
    assert energy.total_j == pytest.approx(400.0 * 1.2)  # 4 s x 100 W x the node's PUE
    assert energy.idle_j == pytest.approx(80.0 * 1.2)


def test_unreachable_server_keeps_the_batch_and_refused_batch_is_dropped(
    agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    _measure(agent, 2.0)
    real = agent.client.heartbeat
    sent: list[bool] = []

    def down(*args: Any, energy: Any = None, **kwargs: Any) -> Any:
        raise Unavailable("server restarting")

    monkeypatch.setattr(agent.client, "heartbeat", down)
    with pytest.raises(Unavailable):
        agent.beat()
    assert agent.energy is not None and agent.energy.buffered == 1

    def refuses_energy(*args: Any, energy: Any = None, **kwargs: Any) -> Any:
        sent.append(energy is not None)
        if energy is not None:
            raise Invalid("energy batch refused")
        return real(*args, energy=energy, **kwargs)

    monkeypatch.setattr(agent.client, "heartbeat", refuses_energy)
    assert agent.beat() == 0  # the lease is renewed without the batch
    assert sent == [True, False] and agent.energy.buffered == 0
