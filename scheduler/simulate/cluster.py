"""Simulated pools: a cluster spec and a donor churn (availability) model."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from ..policy.snapshot import NodeView, Resources

GIB = 2**30


def parse_cluster(spec: str, gpus_per_node: int = 4,
                  regions: Sequence[str] = ()) -> list[NodeView]:
    """``"k80:12,p100:12,v100:12"`` -> nodes of ``gpus_per_node`` GPUs (last one smaller).

    Each simulated node is a donor machine of its own project ``donor-<type>``, so donor
    credits have someone to credit. Regions: ``"k80:8@GB,k80:4@DE"`` puts a part's nodes in
    one region (ids ``k80-gb-0``...); otherwise ``regions=("GB", "DE")`` deals each part's
    nodes out round-robin (``k80-0`` GB, ``k80-1`` DE, ``k80-2`` GB, ...). A node's region is
    also its ``region`` label.
    """
    nodes: list[NodeView] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        body, _, region = part.partition("@")
        gpu_type, _, count = body.partition(":")
        if not gpu_type or not count.strip().isdigit() or int(count) <= 0:
            raise ValueError(f"bad cluster spec part {part!r}; expected TYPE:GPUS[@REGION]")
        left = int(count)
        region = region.strip().upper()
        k = 0
        while left > 0:
            g = min(gpus_per_node, left)
            total = Resources(float(4 * g), 64 * g * GIB, g)
            where = region or (regions[k % len(regions)].upper() if regions else None)
            node_id = f"{gpu_type}-{region.lower()}-{k}" if region else f"{gpu_type}-{k}"
            labels = {"gpu": gpu_type, **({"region": where} if where else {})}
            nodes.append(NodeView(node_id, total, total, gpu_type, labels, region=where,
                                  donor_project=f"donor-{gpu_type}"))
            left -= g
            k += 1
    return nodes


@dataclass(frozen=True, slots=True)
class ChurnModel:
    """Each node alternates up/down with exponential times (mean ``up_h`` / ``down_h``).

    A departing node preempts its jobs, which resume from their last checkpoint; checkpoints
    are taken every ``checkpoint_s`` of run time.
    """

    up_h: float = 24.0
    down_h: float = 2.0
    checkpoint_s: float = 1800.0

    @classmethod
    def parse(cls, spec: str) -> ChurnModel:
        """``"up_h=24,down_h=2,checkpoint_s=1800"`` (any subset; ``"default"`` for defaults)."""
        if spec.strip() in ("", "default"):
            return cls()
        values: dict[str, float] = {}
        for part in spec.split(","):
            key, _, value = part.partition("=")
            if key.strip() not in cls.__dataclass_fields__:
                raise ValueError(f"unknown churn option {key!r}; use up_h, down_h, checkpoint_s")
            values[key.strip()] = float(value)
        return cls(**values)

    @property
    def availability(self) -> float:
        return self.up_h / (self.up_h + self.down_h)

    def next_change(self, rng: random.Random, now: float, up: bool) -> float:
        """When a node that is ``up`` (or down) now changes state next."""
        mean_h = self.up_h if up else self.down_h
        return now + rng.expovariate(1.0 / (mean_h * 3600.0))
