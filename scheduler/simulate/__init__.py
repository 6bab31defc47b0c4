"""Trace-driven discrete-event simulator running the production placement policies."""

from .cluster import ChurnModel, parse_cluster
from .engine import SimResult, Simulator
from .report import summarize
from .run import simulate
from .trace import TraceJob, read_trace

__all__ = [
    "ChurnModel",
    "SimResult",
    "Simulator",
    "TraceJob",
    "parse_cluster",
    "read_trace",
    "simulate",
    "summarize",
]
