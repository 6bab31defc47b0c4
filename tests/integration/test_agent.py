"""A real agent process: identity survives a restart; a spent enrollment token is refused;
a revoked node's agent stops its Ray node and exits."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psutil
import pytest

from commonpool.api.local_pool import LocalPool
from commonpool.scheduler.services.nodes import create_enrollment_token

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def head_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPool]:
    with LocalPool(tmp_path_factory.mktemp("pool"), agents=0, log=io.StringIO()) as pool:
        yield pool


def test_agent_restart_keeps_its_node_identity(head_only: LocalPool) -> None:
    first = head_only.add_agent(7)
    with head_only.client() as client:
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
    with head_only.client() as client:
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
        with head_only.client() as client:
            assert len({n.id for n in client.list_nodes()} - before) == 1
    finally:
        first.terminate()
        first.wait(timeout=60)


def test_revoked_node_agent_stops_its_ray_node_and_exits(head_only: LocalPool) -> None:
    node_id = head_only.add_agent(9)
    process = head_only.agent_procs[9]
    raylets_before = _raylets()
    with head_only.client() as client:
        assert client.revoke_node(node_id, reason="test").state == "REVOKED"
    assert process.wait(timeout=60) == 3  # the next heartbeat is refused: stop Ray, exit
    head_only.agent_procs.pop(9)
    deadline = time.monotonic() + 30
    while len(_raylets()) >= len(raylets_before) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(_raylets()) == len(raylets_before) - 1
    with head_only.client() as client:
        assert client.get_node(node_id).state == "REVOKED"
        audit = client.audit_page(action="node.revoke").items
    assert [e.target for e in audit] == [node_id]


def _raylets() -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["name"]) if p.info["name"] == "raylet"]
