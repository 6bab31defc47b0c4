"""A process started in a JobSandbox runs as the job user, limited, and cannot read secrets.

Real processes, no Ray: each test starts a small Python child through
`confine` exactly as `workers/ray_node.py` starts `ray start`, and the child
reports what it sees. Needs root (to switch users) and the `nobody` user.
The child needs only the standard library, so it runs on any interpreter the
job user can reach (this venv's may live in root's home, closed to others).
"""

from __future__ import annotations

import json
import math
import os
import pwd
import resource
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from commonpool.workers.agent.main import Agent, AgentConfig, job_sandbox
from commonpool.workers.agent.probe import Resources
from commonpool.workers.agent.state import AgentState, load_state, save_state
from commonpool.workers.sandbox import (
    JobSandbox,
    NotRootError,
    SandboxError,
    UnknownJobUserError,
    cgroup_unavailable_reason,
    confine,
    first_unsearchable_parent,
    give_dir,
    share_dir,
)

JOB_USER = "nobody"
GiB = 2**30

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="switching to the job user needs root"),
    pytest.mark.skipif(
        not any(p.pw_name == JOB_USER for p in pwd.getpwall()), reason="no user nobody"
    ),
]

PROBE = r"""
import json, os, resource, sys

def attempt(path):
    try:
        with open(path) as handle:
            handle.read()
    except OSError as exc:
        return type(exc).__name__
    return "read"

secret, state = sys.argv[1], sys.argv[2]
print(json.dumps({
    "resuid": os.getresuid(), "resgid": os.getresgid(), "groups": os.getgroups(),
    "core": resource.getrlimit(resource.RLIMIT_CORE),
    "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
    "nproc": resource.getrlimit(resource.RLIMIT_NPROC),
    "data": resource.getrlimit(resource.RLIMIT_DATA),
    "cpus": len(os.sched_getaffinity(0)),
    "umask": os.umask(0),
    "home": os.environ.get("HOME"), "cwd": os.getcwd(),
    "enroll_token": os.environ.get("COMMONPOOL_ENROLL_TOKEN"),
    "secret": attempt(secret),
    "state": attempt(state),
}))
"""


@pytest.fixture(scope="module")
def probe_python() -> str:
    """An interpreter the job user can run: this one, or the system's."""
    sandbox = JobSandbox.for_user(JOB_USER)
    for candidate in (sys.executable, shutil.which("python3"), "/usr/bin/python3"):
        if candidate and not first_unsearchable_parent(Path(os.path.realpath(candidate)), sandbox):
            return candidate
    pytest.skip(f"no Python interpreter that {JOB_USER} may run")


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every user may enter (pytest's own tmp dirs are root-only, mode 0700).

    So that only the modes under test (the secret's, the state dir's)
    stand between the job and what it tries to read.
    """
    path = Path(tempfile.mkdtemp(prefix="cp-sandbox-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_confined(
    python: str, sandbox: JobSandbox, home: Path, *argv: str, **env: str
) -> dict[str, object]:
    confinement = confine(sandbox, home, {**os.environ, **env})
    try:
        done = subprocess.run(
            [python, "-I", "-c", PROBE, *argv],
            env=confinement.env,
            cwd=confinement.cwd,
            preexec_fn=confinement.preexec,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        if confinement.cgroup is not None:
            confinement.cgroup.rmdir()
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def write_secret(path: Path) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, b"root's secret")
    os.close(fd)
    return path


def test_job_process_runs_as_the_job_user_within_its_limits(
    open_dir: Path, probe_python: str
) -> None:
    nobody = pwd.getpwnam(JOB_USER)
    sandbox = JobSandbox.for_user(JOB_USER, cpus=1, memory_bytes=2 * GiB)
    secret = write_secret(open_dir / "secret")
    state_file = open_dir / "agent" / "agent.json"
    save_state(state_file, AgentState("http://pool", "node_1", "credential-xyz", 1))

    seen = run_confined(probe_python, sandbox, open_dir / "home", str(secret), str(state_file),
                        COMMONPOOL_ENROLL_TOKEN="enroll-secret")

    assert seen["resuid"] == [nobody.pw_uid] * 3
    assert seen["resgid"] == [nobody.pw_gid] * 3
    assert seen["groups"] == []
    assert seen["core"] == [0, 0]
    hard_files = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert seen["nofile"] == [min(65_536, hard_files)] * 2
    assert seen["nproc"] == [sandbox.max_processes] * 2
    assert seen["data"] == [2 * GiB] * 2
    assert seen["cpus"] == min(math.ceil(1), len(os.sched_getaffinity(0)))
    assert seen["umask"] == 0o077
    assert seen["home"] == seen["cwd"] == str(open_dir / "home")
    assert seen["enroll_token"] is None  # the agent's settings stay with the agent
    assert seen["secret"] == "PermissionError"
    assert seen["state"] == "PermissionError"


def test_state_file_is_private_from_creation(open_dir: Path) -> None:
    state_dir = open_dir / "agent"
    state_dir.mkdir(mode=0o755)
    stale = state_dir / "agent.tmp"  # a crash left a world-readable temp file behind
    stale.write_text("{}")
    stale.chmod(0o644)
    state_file = state_dir / "agent.json"
    save_state(state_file, AgentState("http://pool", "node_1", "credential-xyz", 1))
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    state_file.chmod(0o644)  # as an older agent may have left it
    assert load_state(state_file) == AgentState("http://pool", "node_1", "credential-xyz", 1)
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600


def test_job_process_joins_a_cgroup_v2_capped_at_the_donation(
    open_dir: Path, probe_python: str
) -> None:
    """On a (directory shaped like a) cgroup v2 root; this machine's may be v1."""
    root = open_dir / "cgroup"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text("")
    sandbox = JobSandbox.for_user(JOB_USER, cpus=1.5, memory_bytes=GiB, cgroup_root=root)
    assert cgroup_unavailable_reason(root) is None
    confinement = confine(sandbox, open_dir / "home", os.environ, cgroup_name="node_1")
    assert confinement.cgroup == root / "commonpool" / "node_1"
    child = subprocess.run([probe_python, "-I", "-c", "import os; print(os.getpid())"],
                           preexec_fn=confinement.preexec, env=confinement.env,
                           cwd=confinement.cwd, capture_output=True, text=True, timeout=60)
    assert child.returncode == 0, child.stderr
    leaf = confinement.cgroup
    assert (leaf / "memory.max").read_text() == str(GiB)
    assert (leaf / "cpu.max").read_text() == "150000 100000"
    assert (leaf / "cgroup.procs").read_text() == child.stdout.strip()
    assert (root / "commonpool" / "cgroup.subtree_control").read_text() == "+cpu +memory"

    # The agent died without stopping its node: the node's next start ends what is left.
    leftover = subprocess.Popen(["sleep", "60"])
    (leaf / "cgroup.procs").write_text(str(leftover.pid))
    confine(sandbox, open_dir / "home", os.environ, cgroup_name="node_1")
    assert leftover.poll() is not None  # killed (and reaped) before confine returned


def test_cgroup_v1_or_hybrid_machine_is_detected_and_skipped(open_dir: Path) -> None:
    reason = cgroup_unavailable_reason(open_dir)
    assert reason is not None and "cgroup v1 or hybrid" in reason
    sandbox = JobSandbox.for_user(JOB_USER, cpus=1, memory_bytes=GiB, cgroup_root=open_dir)
    assert confine(sandbox, open_dir / "home", os.environ).cgroup is None
    assert "cgroups v2 not used" in sandbox.describe()


def test_this_machines_v1_or_hybrid_hierarchy_is_skipped() -> None:
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        pytest.skip("cgroup v2 unified hierarchy here (the v2 path is tested on a fake root)")
    reason = cgroup_unavailable_reason()
    assert reason is not None and "cgroup v1 or hybrid" in reason


def test_non_root_agent_gets_a_typed_error(open_dir: Path) -> None:
    sandbox = JobSandbox.for_user(JOB_USER)
    with pytest.raises(NotRootError, match=r"needs the agent to run as root .* uid 1000"):
        confine(sandbox, open_dir / "home", os.environ, euid=1000)
    assert not (open_dir / "home").exists()  # refused before touching anything


def test_unknown_or_root_job_user_is_refused() -> None:
    with pytest.raises(UnknownJobUserError):
        JobSandbox.for_user("no-such-commonpool-user")
    with pytest.raises(SandboxError, match="root"):
        JobSandbox.for_user("root")


def test_shared_storage_stays_writable_under_dirs_root_creates(
    open_dir: Path, probe_python: str
) -> None:
    """As checkpoint storage: the head (root, umask 022) makes a run's dir, the job writes in it."""
    sandbox = JobSandbox.for_user(JOB_USER)
    storage = share_dir(open_dir / "checkpoints", sandbox)
    run_dir = storage / "job_1"
    old = os.umask(0o022)
    try:
        run_dir.mkdir()
    finally:
        os.umask(old)
    confinement = confine(sandbox, open_dir / "home", os.environ)
    write = f"import os; os.mkdir('{run_dir}/checkpoint_1'); open('{run_dir}/checkpoint_1/w', 'w')"
    child = subprocess.run([probe_python, "-I", "-c", write], preexec_fn=confinement.preexec,
                           env=confinement.env, cwd=confinement.cwd, capture_output=True,
                           text=True, timeout=60)
    assert child.returncode == 0, child.stderr
    assert (run_dir / "checkpoint_1" / "w").stat().st_uid == sandbox.uid
    assert not stat.S_IMODE(run_dir.stat().st_mode) & stat.S_IWOTH  # not world-writable


def test_dir_out_of_the_job_users_reach_is_refused(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(SandboxError, match="not searchable"):
        give_dir(private / "home", JobSandbox.for_user(JOB_USER))
    with pytest.raises(SandboxError, match="not searchable"):
        share_dir(private / "checkpoints", JobSandbox.for_user(JOB_USER))


def _config(tmp_path: Path, job_user: str | None) -> AgentConfig:
    return AgentConfig(server="http://127.0.0.1:9", state_file=tmp_path / "agent.json",
                       resources=Resources(cpus=1, memory_bytes=GiB), name="sandboxed",
                       job_user=job_user)


def test_agent_sandbox_carries_the_donation(tmp_path: Path) -> None:
    sandbox = job_sandbox(_config(tmp_path, JOB_USER))
    assert sandbox is not None
    assert (sandbox.user, sandbox.cpus, sandbox.memory_bytes) == (JOB_USER, 1, GiB)
    with pytest.raises(UnknownJobUserError):
        Agent(_config(tmp_path, "no-such-commonpool-user"))


def test_root_agent_without_job_user_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Agent(_config(tmp_path, None)).announce_sandbox()
    err = capsys.readouterr().err
    assert "jobs run as root and can read the node credential" in err
