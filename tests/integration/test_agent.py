"""A real agent process: identity survives a restart; a spent enrollment token is refused."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from commonpool.api.client.sdk import Client
from commonpool.api.local_pool import LocalPool
from commonpool.scheduler.services.nodes import create_enrollment_token

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def head_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPool]:
    with LocalPool(tmp_path_factory.mktemp("pool"), agents=0, log=io.StringIO()) as pool:
        yield pool


def test_agent_restart_keeps_its_node_identity(head_only: LocalPool) -> None:
    first = head_only.add_agent(7)
    with Client(head_only.url) as client:
        assert client.get_node(first).state == "ONLINE"
        assert head_only.stop_agent(7) == 0  # SIGTERM: drain, leave, stop Ray
        assert client.get_node(first).state == "OFFLINE"
        again = head_only.add_agent(7)
        assert again == first
        assert client.get_node(first).state == "ONLINE"
        assert [n.id for n in client.list_nodes()] == [first]
    head_only.stop_agent(7)


def test_second_agent_with_a_used_token_is_refused(head_only: LocalPool, tmp_path: Path) -> None:
    assert head_only.db is not None
    with head_only.db.unit_of_work() as session:
        token, _ = create_enrollment_token(session, ttl=timedelta(minutes=5))

    def agent_args(state: str) -> list[str]:
        return [sys.executable, "-m", "commonpool", "agent", "--server", head_only.url,
                "--enroll-token", token, "--cpus", "1", "--state-file", str(tmp_path / state)]

    env = {**os.environ, "COMMONPOOL_STATE_DIR": str(tmp_path)}
    with Client(head_only.url) as client:
        before = {n.id for n in client.list_nodes()}
    first = subprocess.Popen(agent_args("first.json"), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env=env)
    try:
        assert first.stdout is not None
        assert "agent ready" in first.stdout.readline()
        refused = subprocess.run(agent_args("second.json"), capture_output=True, text=True,
                                 timeout=120, env=env)
        assert refused.returncode == 3
        assert "already used" in refused.stderr
        assert not (tmp_path / "second.json").exists()
        with Client(head_only.url) as client:
            assert len({n.id for n in client.list_nodes()} - before) == 1
    finally:
        first.terminate()
        first.wait(timeout=60)
