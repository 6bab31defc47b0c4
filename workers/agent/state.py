"""The agent's identity on disk: a restart resumes the same node instead of enrolling anew.

The file holds the node credential. It is written atomically (a crash never
leaves half a credential) and is never readable by anyone but its owner:
the file is created mode 0600 (O_EXCL, so an old temp file cannot lend its
mode) inside a directory created mode 0700, and an existing directory or
file with wider modes is narrowed before use. With `--job-user`, jobs run
as another user and so cannot read it.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


@dataclass
class AgentState:
    server: str
    node_id: str
    credential: str
    epoch: int


def load_state(path: Path) -> AgentState | None:
    if not path.exists():
        return None
    private_dir(path.parent)
    _narrow(path, FILE_MODE)  # written by an older agent with the umask's mode
    return AgentState(**json.loads(path.read_text()))


def save_state(path: Path, state: AgentState) -> None:
    private_dir(path.parent)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    with os.fdopen(fd, "w") as handle:
        json.dump(asdict(state), handle)
    os.replace(tmp, path)


def private_dir(path: Path) -> Path:
    """`path` as a directory only its owner may enter (mode 0700), created that way.

    `mkdir` with mode 0700 is atomic (the umask can only remove bits);
    parents above it are created with the usual modes.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=DIR_MODE)
    except FileExistsError:
        if not path.is_dir():
            raise NotADirectoryError(f"{path} must be a directory for the agent's state") from None
        _narrow(path, DIR_MODE)
    return path


def _narrow(path: Path, mode: int) -> None:
    if stat.S_IMODE(path.stat().st_mode) & ~mode:
        os.chmod(path, mode)
