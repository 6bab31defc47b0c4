"""Artifacts on worker nodes: each job input fetched once per node, verified, unpacked.

A job's inputs are staged on every node that runs one of its workers
before its training loop starts. The node's cache (`COMMONPOOL_ARTIFACT_CACHE`,
set by the agent for its Ray node) keeps each artifact under its sha256, so
two workers on one node, and later jobs on it, download it once: a file
lock makes the first worker fetch while the others wait. The download
resumes a broken one (HTTP Range) and is checked against the sha256 the
registry pinned at submit (`Client.download_artifact`).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from commonpool.api.client import transfer
from commonpool.api.client.sdk import Client
from commonpool.scheduler.ports import InputArtifact

ENV_CACHE = "COMMONPOOL_ARTIFACT_CACHE"


def cache_root() -> Path:
    """This node's artifact cache (the agent sets it for its Ray node; else the user's)."""
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "commonpool" / "artifacts")


def job_client(env: Mapping[str, str] = os.environ) -> Client:
    """The client a job's driver and workers use: the server, the job's own token and the
    pool's CA that the launcher put in the job's environment."""
    return Client(
        env["COMMONPOOL_SERVER_URL"],
        token=env.get("COMMONPOOL_JOB_TOKEN"),
        ca_pem=env.get("COMMONPOOL_CA_PEM"),
        timeout=60.0,
    )


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def stage(client: Client, artifact: InputArtifact, cache: Path | None = None) -> Path:
    """The artifact's unpacked directory on this node, fetched only if the cache lacks it."""
    cache = cache or cache_root()
    directory = cache / "sha256" / artifact.sha256
    complete = cache / "sha256" / f"{artifact.sha256}.complete"  # beside it: not in the job's view
    if complete.exists():
        return directory
    with _locked(cache / "locks" / f"{artifact.sha256}.lock"):
        if complete.exists():  # another worker on this node fetched it meanwhile
            return directory
        partial = cache / "partial" / f"{artifact.sha256}.part"
        partial.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        client.download_artifact(artifact.ref, artifact.sha256, partial)
        unpacking = cache / "partial" / f"{artifact.sha256}.dir"
        shutil.rmtree(unpacking, ignore_errors=True)
        transfer.unpack(partial, unpacking)
        shutil.rmtree(directory, ignore_errors=True)
        directory.parent.mkdir(parents=True, exist_ok=True)
        os.replace(unpacking, directory)
        complete.touch()
        partial.unlink()
        print(
            f"commonpool: fetched {artifact.ref} ({artifact.size_bytes:,} bytes) in "
            f"{time.monotonic() - started:.1f} s",
            flush=True,
        )
    return directory
