"""Policy names -> factories: the one place config and the simulator select a policy.

Base policies order the queue (``fifo``, ``backfill``, ``las``, ``fair``); ``+hetero``
composes heterogeneity-aware GPU-type choice over any of them (``hetero`` alone means
``las+hetero``). Backfill composes with fair share through ``fair`` (work-conserving
already) and with FIFO as the ``backfill`` policy itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .backfill import BackfillPolicy
from .base import Policy
from .fair import FairPolicy
from .fifo import FifoPolicy
from .hetero import HeteroPolicy
from .las import LasPolicy

Factory = Callable[..., Policy]

_BASES: dict[str, Factory] = {
    "fifo": FifoPolicy,
    "backfill": BackfillPolicy,
    "las": LasPolicy,
    "fair": FairPolicy,
}
HETERO_SUFFIX = "+hetero"
POLICY_NAMES: tuple[str, ...] = (
    *_BASES, "hetero", *(f"{b}{HETERO_SUFFIX}" for b in _BASES if b != "las"),
)


class UnknownPolicyError(ValueError):
    """The name is not a registered policy; the message lists the valid ones."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown policy {name!r}; valid: {', '.join(POLICY_NAMES)}")
        self.name = name


def make_base(name: str, **options: Any) -> Policy:
    """A base (ordering) policy by name."""
    factory = _BASES.get(name.strip().lower())
    if factory is None:
        raise UnknownPolicyError(name)
    return factory(**options)


def make_policy(name: str, **options: Any) -> Policy:
    """Build a policy by name; options go to its constructor (unknown ones raise TypeError).

    For ``X+hetero`` the ``throughputs`` option goes to the hetero layer, the rest to ``X``.
    """
    key = name.strip().lower()
    if key == "hetero":
        key = f"las{HETERO_SUFFIX}"
    if key.endswith(HETERO_SUFFIX):
        base = key.removesuffix(HETERO_SUFFIX)
        if base not in _BASES:
            raise UnknownPolicyError(name)
        return HeteroPolicy(base, **options)
    return make_base(key, **options)
