"""Trace-driven discrete-event simulator running the production placement policies.

The names below load on first use (PEP 562): the CLI builds its `simulate` command
from `simulate.cli` on every `commonpool` call and should not pay for the engine.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_HOMES = {
    "ChurnModel": ".cluster",
    "parse_cluster": ".cluster",
    "SimResult": ".engine",
    "Simulator": ".engine",
    "summarize": ".report",
    "simulate": ".run",
    "TraceJob": ".trace",
    "read_trace": ".trace",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_HOMES[name], __name__), name)
