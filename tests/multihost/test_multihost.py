"""Three hosts (network namespaces): a pool across a real network, then a partition.

Host A runs PostgreSQL, the API + scheduler and the Ray head; hosts B and
C each run an agent that enrolls over HTTP and joins Ray over the bridge.
A 2-worker job runs with one worker on B and one on C; B's cable is pulled:
its lease expires, the job moves to C and resumes from its checkpoint; when
the cable is back, B's agent is fenced (its stale heartbeat refused) and
kills its workers before it rejoins under the new epoch.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.integration.test_node_loss import RESUMABLE
from tests.multihost.testbed import NetnsBed, leftover_namespaces, netns_available

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(600)]

PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)
API_PORT = 8765
LEASE_S = 8

_REASON = netns_available() or (None if PG_BIN else "no PostgreSQL server binaries")
if _REASON is not None and not os.environ.get("CI"):
    pytestmark.append(pytest.mark.skip(reason=_REASON))

RPC = """
import json, sys
from commonpool.api.client.sdk import Client
from commonpool.scheduler.spec import JobSpec
from pydantic import BaseModel

def plain(value):
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value

with Client(sys.argv[1], token=sys.argv[2], timeout=10) as client:
    for line in sys.stdin:
        call = json.loads(line)
        args = call.get("a", [])
        if call["m"] == "submit_job":
            args = [JobSpec.model_validate(args[0])]
        try:
            result = {"ok": plain(getattr(client, call["m"])(*args))}
        except Exception as exc:
            result = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(result), flush=True)
"""


class Api:
    """An API client living in host A (the test's own process is in no host)."""

    def __init__(self, bed: NetnsBed, url: str, token: str) -> None:
        self.process = bed.start(
            "a",
            [sys.executable, "-c", RPC, url, token],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )

    def __call__(self, method: str, *args: Any) -> Any:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write((json.dumps({"m": method, "a": list(args)}) + "\n").encode())
        self.process.stdin.flush()
        reply = json.loads(self.process.stdout.readline())
        if "error" in reply:
            raise AssertionError(f"{method}{args}: {reply['error']}")
        return reply["ok"]


def wait_for(
    what: str,
    check: Callable[[], Any],
    timeout: float,
    every: float = 0.5,
    explain: Callable[[], str] | None = None,
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f"\n{explain()}" if explain else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(every)


def log_has(path: Path, text: str) -> bool:
    return path.exists() and text in path.read_text(errors="replace")


@pytest.fixture
def bed() -> Iterator[NetnsBed]:
    if _REASON is not None:
        pytest.fail(f"CI must run the multi-host test, but: {_REASON}")
    with NetnsBed(["a", "b", "c"]) as running:
        yield running
    assert not [ns for ns in leftover_namespaces() if ns.startswith(f"cpmh{running.bed_id}")]
    assert all(p.poll() is not None for p in running.processes)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """Outside pytest's 0700 tmp dirs: PostgreSQL runs as its own user."""
    path = Path(tempfile.mkdtemp(prefix="cp-multihost-"))
    path.chmod(0o755)
    yield path
    for log in sorted(path.glob("*.log")):  # shown by pytest when the test failed
        print(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-40:]))
    shutil.rmtree(path, ignore_errors=True)


def start_postgres(bed: NetnsBed, workdir: Path) -> str:
    assert PG_BIN is not None
    data = workdir / "pgdata"
    data.mkdir()
    postgres = pwd.getpwnam("postgres")
    os.chown(data, postgres.pw_uid, postgres.pw_gid)
    as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_postgres, str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust",
                    "-U", "postgres"], check=True, capture_output=True)
    with open(data / "pg_hba.conf", "a") as hba:  # the bed's private subnet only
        hba.write(f"host all all {bed.hosts['a'].address.rsplit('.', 1)[0]}.0/24 trust\n")
    address = bed.hosts["a"].address
    bed.start("a", [*as_postgres, str(PG_BIN / "postgres"), "-D", str(data), "-k", str(data),
                    "-h", address, "-p", "5432", "-c", "fsync=off"],
              log=workdir / "postgres.log")
    wait_for("PostgreSQL", lambda: subprocess.run(
        bed.hosts["a"].command([str(PG_BIN / "pg_isready"), "-h", address, "-p", "5432"]),
        capture_output=True).returncode == 0, timeout=60)
    return f"postgresql+psycopg://postgres@{address}:5432/postgres"


def test_pool_across_three_hosts_survives_a_partition(bed: NetnsBed, workdir: Path) -> None:
    started = time.monotonic()
    a = bed.hosts["a"].address
    url = f"http://{a}:{API_PORT}"
    database_url = start_postgres(bed, workdir)
    server_state = workdir / "server"
    bed.start(
        "a",
        [sys.executable, "-m", "commonpool", "up", "--agents", "0", "--host", a,
         "--port", str(API_PORT), "--state-dir", str(server_state)],
        env={"COMMONPOOL_DATABASE_URL": database_url, "COMMONPOOL_STATE_DIR": str(server_state),
             "COMMONPOOL_NODE_LEASE_S": str(LEASE_S),
             "COMMONPOOL_CONFIG": str(workdir / "absent.toml")},
        log=workdir / "server.log",
    )
    wait_for("the server", lambda: log_has(workdir / "server.log", "pool up at"), timeout=120)
    api = Api(bed, url, (server_state / "admin-token").read_text().strip())

    agent_logs = {}
    for host in ("b", "c"):
        token = api("create_enrollment_token")["token"]
        state = workdir / f"agent-{host}"
        agent_logs[host] = workdir / f"agent-{host}.log"
        bed.start(
            host,
            [sys.executable, "-m", "commonpool", "agent", "--server", url, "--enroll-token",
             token, "--cpus", "1", "--name", f"host-{host}", "--heartbeat", "1",
             "--drain-grace", "5", "--state-file", str(state / "agent.json")],
            env={"COMMONPOOL_STATE_DIR": str(state)},
            log=agent_logs[host],
        )
        wait_for(f"agent {host}", lambda h=host: log_has(agent_logs[h], "agent ready"),
                 timeout=120)
    nodes = {n["name"]: n for n in api("list_nodes")}
    node_b, node_c = nodes["host-b"]["id"], nodes["host-c"]["id"]
    assert {n["state"] for n in nodes.values()} == {"ONLINE"}

    (workdir / "code").mkdir()
    (workdir / "code" / "resumable.py").write_text(RESUMABLE)
    job = api("submit_job", {
        "name": "across-hosts", "entrypoint": "resumable:run",
        "working_dir": str(workdir / "code"), "workers": {"min": 1, "max": 2},
        "args": {"steps": 60, "step_s": 0.5}, "max_attempts": 3})
    job_id = job["id"]

    def story() -> str:
        events = [(e["to_state"], e["reason"]) for e in api("job_events", job_id)]
        lines = [x["line"] for x in api("logs", job_id)][-30:]
        return f"events {events}\nlogs:\n" + "\n".join(lines)

    wait_for("training on two hosts", lambda: len(api("job_metrics", job_id)) >= 4, timeout=180,
             explain=story)
    first = {a["node_id"] for a in api("job_allocations", job_id) if a["attempt"] == 1}
    assert first == {node_b, node_c}  # one worker on B, one on C

    bed.cut("b")
    cut_at = time.monotonic()
    resumed = wait_for(
        "the job to resume on C",
        lambda: [m for m in api("job_metrics", job_id) if m["attempt"] == 2],
        timeout=180,
    )
    moved_after = time.monotonic() - cut_at
    assert api("get_node", node_b)["state"] == "LOST"
    second = [a["node_id"] for a in api("job_allocations", job_id) if a["attempt"] == 2]
    assert second == [node_c]
    last_before = max(m["step"] for m in api("job_metrics", job_id) if m["attempt"] == 1)
    assert resumed[0]["step"] >= last_before  # from its checkpoint: at most one step lost

    bed.heal("b")
    wait_for("B's agent to be fenced", lambda: log_has(agent_logs["b"], "fenced (epoch 1"),
             timeout=120)
    back = wait_for("B back under a new epoch", lambda: (
        (n := api("get_node", node_b))["state"] == "ONLINE" and n["lease_epoch"] >= 2 and n),
        timeout=120)
    assert back["lease_epoch"] >= 2
    assert not _job_processes_in(bed, "b", job_id)  # the stale workers were killed
    final = wait_for("the job to end", lambda: (
        (j := api("get_job", job_id))["state"] in ("SUCCEEDED", "FAILED") and j), timeout=240)
    assert final["state"] == "SUCCEEDED", final["exit_reason"]
    print(f"multi-host: partition detected and job resumed on C {moved_after:.1f} s after the "
          f"cut (lease {LEASE_S} s); whole test {time.monotonic() - started:.0f} s")


def _job_processes_in(bed: NetnsBed, host: str, job_id: str) -> list[int]:
    """Processes in `host` that run the job (its id is in their environment)."""
    found = []
    for pid in bed.pids_in(host):
        try:
            environ = psutil.Process(pid).environ()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if environ.get("COMMONPOOL_JOB_ID") == job_id:
            found.append(pid)
    return found
