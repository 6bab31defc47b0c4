"""The one interface every placement policy implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .plan import Plan
from .snapshot import ClusterSnapshot


@runtime_checkable
class Policy(Protocol):
    """A pure decision function: same snapshot (and options) in, same plan out.

    A policy reads no clock, environment or database; ``snapshot.now`` is the only time.
    """

    name: str

    def plan(self, snapshot: ClusterSnapshot) -> Plan: ...
