"""Confining a donor's Ray worker node (and so every job process on it) to an unprivileged user.

A job is arbitrary code running on someone else's machine. The agent that
starts the node runs as root and keeps the node credential; the node's
processes must run as another user, with the donated resources as limits:

- identity: no supplementary groups, then gid, then uid of the job user
  (needs the agent to run as root: `require_root`);
- rlimits: no core dumps, bounded open files and processes, and a
  per-process data cap from the donated memory (`JobSandbox.rlimits`);
- CPU affinity to as many CPUs as donated, rounded up;
- cgroups v2 (`memory.max`, `cpu.max` under `<root>/commonpool/<node>`)
  where the unified hierarchy is mounted at the root and writable; on
  cgroup v1 or hybrid machines it is skipped with the reason
  (`cgroup_unavailable_reason`), and rlimits and affinity are the only caps.

All of it happens in the child between fork and exec (`Confinement.preexec`),
so no process of the node ever runs unconfined. The preexec function only
makes system calls on values computed beforehand (no imports, no logging,
no locks), which keeps it safe in the agent's multi-threaded process.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import pwd
import resource
import secrets
import stat
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_PARENT = "commonpool"
CPU_PERIOD_US = 100_000
_CONTROLLERS = ("cpu", "memory")
# Linux's POSIX ACL xattr layout (linux/posix_acl_xattr.h): a version, then (tag, perm, id).
_ACL_VERSION = 2
_ACL_USER_OBJ, _ACL_USER, _ACL_GROUP_OBJ, _ACL_MASK, _ACL_OTHER = 0x01, 0x02, 0x04, 0x10, 0x20
_ACL_NO_ID = 0xFFFFFFFF


class SandboxError(RuntimeError):
    """The job sandbox cannot be set up as asked."""


class UnknownJobUserError(SandboxError):
    """The job user does not exist on this machine (create it first: see deploy/README.md)."""


class NotRootError(SandboxError):
    """Switching to the job user needs the agent to run as root."""


@dataclass(frozen=True)
class JobSandbox:
    """Who job processes run as and what they may use.

    `max_processes` bounds RLIMIT_NPROC, which the kernel counts per real
    uid across the whole machine and for threads too: Ray workers each run
    dozens of threads, so the default is a fork-bomb guard, not a quota.
    Prefer a dedicated job user over `nobody`, whose other processes count.
    """

    user: str
    uid: int
    gid: int
    cpus: float | None = None
    memory_bytes: int | None = None
    max_open_files: int = 65_536
    max_processes: int | None = 16_384
    cgroup_root: Path = CGROUP_ROOT

    @classmethod
    def for_user(
        cls,
        user: str,
        *,
        cpus: float | None = None,
        memory_bytes: int | None = None,
        cgroup_root: Path = CGROUP_ROOT,
    ) -> JobSandbox:
        """The sandbox of `user` (resolved with `pwd`); root is refused: it confines nothing."""
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            raise UnknownJobUserError(
                f"job user {user!r} does not exist on this machine (deploy/README.md creates it)"
            ) from None
        if entry.pw_uid == 0:
            raise SandboxError(f"job user {user!r} is root: jobs would not be confined")
        return cls(user, entry.pw_uid, entry.pw_gid, cpus, memory_bytes, cgroup_root=cgroup_root)

    def rlimits(self) -> dict[int, tuple[int, int]]:
        """Soft and hard limits (equal, so a job cannot raise them again).

        Memory is capped with RLIMIT_DATA (heap and private writable
        mappings), not RLIMIT_AS: Ray, gRPC, jemalloc and torch reserve huge
        virtual ranges they never touch (CUDA alone maps tens of GiB), so an
        address-space cap at the donated size would kill every worker at
        start. RLIMIT_DATA is per process: the cap on the node's total is
        the cgroup's `memory.max`, where cgroups v2 is available.
        """
        limits = {resource.RLIMIT_CORE: (0, 0)}  # no dumps of job memory on the donor's disk
        hard_files = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        files = self.max_open_files
        if hard_files != resource.RLIM_INFINITY:
            files = min(files, hard_files)
        limits[resource.RLIMIT_NOFILE] = (files, files)
        if self.max_processes:
            limits[resource.RLIMIT_NPROC] = (self.max_processes, self.max_processes)
        if self.memory_bytes:
            limits[resource.RLIMIT_DATA] = (self.memory_bytes, self.memory_bytes)
        return limits

    def cpu_set(self) -> frozenset[int] | None:
        """The last `ceil(cpus)` CPUs this process may use, or None when that is all of them.

        The last ones, so the donor's own work keeps CPU 0. Agents on one
        host each pick the same set: pin them apart with their own affinity
        (e.g. systemd's CPUAffinity=), which this choice starts from.
        """
        if not self.cpus:
            return None
        allowed = sorted(os.sched_getaffinity(0))
        count = math.ceil(self.cpus)
        if count >= len(allowed):
            return None
        return frozenset(allowed[-count:])

    def describe(self) -> str:
        """One line for the agent's log: who jobs run as and every limit in force."""
        cpu_set = self.cpu_set()
        reason = cgroup_unavailable_reason(self.cgroup_root)
        parts = [
            f"jobs run as {self.user} (uid {self.uid}, gid {self.gid})",
            f"cpus {sorted(cpu_set) if cpu_set else 'all'}",
            f"data rlimit {self.memory_bytes or 'none'}",
            f"open files {self.rlimits()[resource.RLIMIT_NOFILE][0]}",
            f"processes {self.max_processes or 'unlimited'}",
            "no core dumps",
            f"cgroups v2 {'not used: ' + reason if reason else 'memory.max/cpu.max'}",
        ]
        return "; ".join(parts)


def require_root(sandbox: JobSandbox, euid: int | None = None) -> None:
    """Raise NotRootError unless this process (or `euid`, for tests) may switch users."""
    euid = os.geteuid() if euid is None else euid
    if euid != 0:
        raise NotRootError(
            f"running jobs as {sandbox.user!r} needs the agent to run as root "
            f"(it runs as uid {euid}); start it as root, or drop --job-user"
        )


def cgroup_unavailable_reason(root: Path = CGROUP_ROOT) -> str | None:
    """Why cgroups v2 cannot confine the node here, or None when it can."""
    controllers = root / "cgroup.controllers"
    if not controllers.exists():
        return f"no {controllers} (cgroup v1 or hybrid hierarchy)"
    if not os.access(root, os.W_OK) or not os.access(root / "cgroup.subtree_control", os.W_OK):
        return f"{root} is not writable (read-only mount, or not root)"
    missing = set(_CONTROLLERS) - set(controllers.read_text().split())
    if missing:
        return f"controllers {sorted(missing)} are not available in {root}"
    return None


def create_cgroup(sandbox: JobSandbox, name: str) -> Path | None:
    """A cgroup `<root>/commonpool/<name>` capped at the donated memory and CPUs, if possible.

    Controllers are enabled top-down (a cgroup may only use what its
    parent delegates); the `commonpool` level holds no processes, as
    cgroups v2 requires of any cgroup that delegates controllers.
    """
    reason = cgroup_unavailable_reason(sandbox.cgroup_root)
    if reason is not None:
        log.info("job sandbox without cgroups v2: %s", reason)
        return None
    enable = " ".join(f"+{c}" for c in _CONTROLLERS)
    parent = sandbox.cgroup_root / CGROUP_PARENT
    (sandbox.cgroup_root / "cgroup.subtree_control").write_text(enable)
    parent.mkdir(exist_ok=True)
    (parent / "cgroup.subtree_control").write_text(enable)
    leaf = parent / name
    if leaf.exists():  # left by an agent that died without stopping its node
        release_cgroup(leaf)
    leaf.mkdir(exist_ok=True)
    if sandbox.memory_bytes:
        (leaf / "memory.max").write_text(str(sandbox.memory_bytes))
    if sandbox.cpus:
        (leaf / "cpu.max").write_text(f"{math.ceil(sandbox.cpus * CPU_PERIOD_US)} {CPU_PERIOD_US}")
    return leaf


def release_cgroup(path: Path | None) -> None:
    """Kill whatever still runs in a node's cgroup, then remove the cgroup.

    The cgroup names exactly one node's processes: it catches workers that
    outlived their parents (so are no descendants of `ray start` any more)
    and, under systemd, a node whose agent was killed (the node's cgroup is
    outside the agent unit's, so systemd's stop does not reach it).
    """
    if path is None:
        return
    if (path / "cgroup.kill").exists():  # Linux 5.14+: all members at once, forks included
        (path / "cgroup.kill").write_text("1")
    members = []
    procs = path / "cgroup.procs"
    for pid in procs.read_text().split() if procs.exists() else []:
        try:
            members.append(psutil.Process(int(pid)))
            members[-1].kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(members, timeout=5)
    try:
        path.rmdir()
    except OSError as exc:
        log.warning("could not remove cgroup %s: %s", path, exc)


def give_dir(path: Path, sandbox: JobSandbox, mode: int = 0o700) -> Path:
    """Create `path` (if missing) owned by the job user, after checking the user can reach it."""
    _make_reachable_dir(path, sandbox)
    os.chown(path, sandbox.uid, sandbox.gid)
    os.chmod(path, mode)
    return path


def share_dir(path: Path, sandbox: JobSandbox) -> Path:
    """Let the job user write anywhere under `path`, whoever creates the directories there.

    For checkpoint storage on one machine, which two users write: Ray
    Train's controller, on the head as the pool's user, creates each run's
    directory (mode 0755 by its umask), and the job's workers, as the job
    user, create checkpoints inside it. A POSIX default ACL naming the job
    user is inherited by every directory created below and is not subject
    to the creator's umask, so both can, and nothing becomes world-writable.
    """
    _make_reachable_dir(path, sandbox)
    entries = [
        (_ACL_USER_OBJ, 7, _ACL_NO_ID),
        (_ACL_USER, 7, sandbox.uid),
        (_ACL_GROUP_OBJ, 5, _ACL_NO_ID),
        (_ACL_MASK, 7, _ACL_NO_ID),
        (_ACL_OTHER, 0, _ACL_NO_ID),
    ]
    acl = struct.pack("<I", _ACL_VERSION) + b"".join(struct.pack("<HHI", *e) for e in entries)
    try:
        os.setxattr(path, "system.posix_acl_access", acl)
        os.setxattr(path, "system.posix_acl_default", acl)
    except OSError as exc:
        if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        raise SandboxError(
            f"{path} cannot be shared with job user {sandbox.user!r}: its filesystem has no "
            "POSIX ACLs; put the checkpoint storage on one that has (ext4, xfs, btrfs, tmpfs)"
        ) from exc
    return path


def _make_reachable_dir(path: Path, sandbox: JobSandbox) -> None:
    """Create `path`; refuse it if the job user could not get there (a parent is closed)."""
    path.mkdir(parents=True, exist_ok=True)
    blocked = first_unsearchable_parent(path, sandbox)
    if blocked is not None:
        raise SandboxError(
            f"{path} is out of reach of job user {sandbox.user!r}: {blocked} is not searchable"
        )


def first_unsearchable_parent(path: Path, sandbox: JobSandbox) -> Path | None:
    """The first directory above `path` the job user may not enter, by its mode bits."""
    for parent in reversed(path.absolute().parents):
        info = parent.stat()
        if info.st_uid == sandbox.uid:
            bit = stat.S_IXUSR
        elif info.st_gid == sandbox.gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return parent
    return None


def job_environment(base: Mapping[str, str], sandbox: JobSandbox, home: Path) -> dict[str, str]:
    """`base` for a job process: the job user's HOME, and none of the agent's settings.

    `COMMONPOOL_*` variables are the agent's configuration (the enrollment
    token among them); a job gets its own through its Ray runtime_env.
    HOME moves because a system user's HOME (`/nonexistent` for nobody) is
    not writable, and Ray, pip and torch keep caches there.
    """
    env = {k: v for k, v in base.items() if not k.startswith("COMMONPOOL_")}
    env.update(HOME=str(home), USER=sandbox.user, LOGNAME=sandbox.user)
    return env


@dataclass(frozen=True)
class Confinement:
    """What `subprocess.Popen` needs to start one process (tree) inside a sandbox."""

    preexec: Callable[[], None]
    env: dict[str, str]
    cwd: Path
    cgroup: Path | None


def confine(
    sandbox: JobSandbox,
    home: Path,
    base_env: Mapping[str, str],
    *,
    cgroup_name: str | None = None,
    euid: int | None = None,
) -> Confinement:
    """Prepare a confinement: check privileges, create HOME and the cgroup, compute limits.

    Use as `Popen(..., preexec_fn=c.preexec, env=c.env, cwd=c.cwd)`; the
    child starts in HOME because the agent's own working directory may be
    closed to the job user. `cgroup_name` should name the node (a restart
    then finds what a dead predecessor left); `release_cgroup(c.cgroup)`
    once the process tree is stopped.
    """
    require_root(sandbox, euid)
    give_dir(home, sandbox)
    limits = sandbox.rlimits()
    cpu_set = sandbox.cpu_set()
    cgroup = create_cgroup(sandbox, cgroup_name or f"node-{secrets.token_hex(4)}")
    procs = str(cgroup / "cgroup.procs") if cgroup else None
    uid, gid = sandbox.uid, sandbox.gid

    def preexec() -> None:
        if procs is not None:  # first, while still root; children inherit the cgroup
            fd = os.open(procs, os.O_WRONLY | os.O_CREAT, 0o644)
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
        for kind, limit in limits.items():
            resource.setrlimit(kind, limit)
        if cpu_set is not None:
            os.sched_setaffinity(0, cpu_set)
        os.umask(0o077)  # the job's files are its own, not every local user's
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)

    return Confinement(preexec, job_environment(base_env, sandbox, home), home, cgroup)
