"""The agent's identity on disk: a restart resumes the same node instead of enrolling anew.

The file holds the node credential, so it is created mode 0600 and written
atomically (a crash never leaves half a credential).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class AgentState:
    server: str
    node_id: str
    credential: str
    epoch: int


def load_state(path: Path) -> AgentState | None:
    if not path.exists():
        return None
    return AgentState(**json.loads(path.read_text()))


def save_state(path: Path, state: AgentState) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(asdict(state), handle)
    os.replace(tmp, path)
