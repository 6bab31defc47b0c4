"""Policy names -> factories: the one place config and the simulator select a policy.

Base policies order the queue (``fifo``, ``backfill``, ``las``, ``fair``); ``+hetero``
composes heterogeneity-aware GPU-type choice over any of them (``hetero`` alone means
``las+hetero``); ``+carbon`` composes carbon-aware timing and region choice over any name
here, e.g. ``fifo+carbon``, ``fair+hetero+carbon`` (``carbon`` alone means ``las+carbon``).
Backfill composes with fair share through ``fair`` (work-conserving
already) and with FIFO as the ``backfill`` policy itself. Every policy ``make_policy``
returns is wrapped in the layers every pool needs: ``gates`` (dependencies, array limits)
outermost, then ``elastic`` (regrowth).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .backfill import BackfillPolicy
from .base import Policy
from .carbon import CarbonPolicy
from .elastic import GROW_AFTER_S, ElasticGrowth
from .fair import FairPolicy
from .fifo import FifoPolicy
from .gates import Gates
from .hetero import HeteroPolicy
from .las import LasPolicy
from .srpt import SrptPolicy

Factory = Callable[..., Policy]

_BASES: dict[str, Factory] = {
    "fifo": FifoPolicy,
    "backfill": BackfillPolicy,
    "las": LasPolicy,
    "fair": FairPolicy,
    "srpt": SrptPolicy,
}
HETERO_SUFFIX = "+hetero"
CARBON_SUFFIX = "+carbon"
POLICY_NAMES: tuple[str, ...] = (
    *_BASES,
    "hetero",
    *(f"{b}{HETERO_SUFFIX}" for b in _BASES if b != "las"),
)


class UnknownPolicyError(ValueError):
    """The name is not a registered policy; the message lists the valid ones."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"unknown policy {name!r}; valid: {', '.join(POLICY_NAMES)} "
            f"(each also as NAME{CARBON_SUFFIX})"
        )
        self.name = name


def make_base(name: str, **options: Any) -> Policy:
    """A base (ordering) policy by name."""
    factory = _BASES.get(name.strip().lower())
    if factory is None:
        raise UnknownPolicyError(name)
    return factory(**options)


def make_policy(name: str, *, grow_after_s: float | None = GROW_AFTER_S, **options: Any) -> Policy:
    """Build a policy by name; options go to its constructor (unknown ones raise TypeError).

    For ``X+hetero`` the ``throughputs`` option goes to the hetero layer, the rest to ``X``.
    For ``X+carbon`` the carbon layer's options (``CarbonPolicy``) are taken, the rest go to
    ``X``. Every policy regrows elastic jobs (``elastic.ElasticGrowth``) after
    ``grow_after_s`` (None leaves that layer out), and holds back jobs whose dependencies or
    array limit forbid them to start (``gates.Gates``, always; outermost, so neither the
    policy nor regrowth sees a held job).
    """
    policy = make_unlayered(name, **options)
    if grow_after_s is not None:
        policy = ElasticGrowth(policy, grow_after_s)
    return Gates(policy)


def make_unlayered(name: str, **options: Any) -> Policy:
    """The named policy without the layers ``make_policy`` adds: for a layer's own base
    policy (``+carbon``), which the outer layers already wrap."""
    key = name.strip().lower()
    if key == "carbon":
        key = f"las{CARBON_SUFFIX}"
    if key.endswith(CARBON_SUFFIX):
        base = key.removesuffix(CARBON_SUFFIX)
        if base.endswith(CARBON_SUFFIX) or base not in POLICY_NAMES:
            raise UnknownPolicyError(name)
        return CarbonPolicy(base, **options)
    if key == "hetero":
        key = f"las{HETERO_SUFFIX}"
    if key.endswith(HETERO_SUFFIX):
        base = key.removesuffix(HETERO_SUFFIX)
        if base not in _BASES:
            raise UnknownPolicyError(name)
        return HeteroPolicy(base, **options)
    return make_base(key, **options)
