"""The launch, serialised for the driver process (one env var of JSON)."""

from __future__ import annotations

import json
from dataclasses import asdict

from commonpool.scheduler.ports import InputArtifact, LaunchRequest, WorkerPlacement

ENV_LAUNCH = "COMMONPOOL_LAUNCH"
ENV_STORAGE = "COMMONPOOL_CHECKPOINT_STORAGE"


def dump(request: LaunchRequest) -> str:
    return json.dumps(asdict(request))


def load(text: str) -> LaunchRequest:
    data = json.loads(text)
    data["workers"] = tuple(WorkerPlacement(**w) for w in data["workers"])
    data["inputs"] = tuple(InputArtifact(**a) for a in data.get("inputs", ()))
    if data.get("command") is not None:
        data["command"] = tuple(data["command"])
    return LaunchRequest(**data)
