"""Per-job-type, per-GPU-type training throughput (Gavel's measured table).

``hetero`` and the simulator read the same table, so what the policy optimises is what the
simulator measures. Only whole-job "alone" throughputs are kept (``null`` entries of
Gavel's file); the bundled copy is a few KB instead of Gavel's 1.2 MB of pair entries.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

Rates = dict[str, dict[int, dict[str, float]]]  # job_type -> gpus -> gpu_type -> steps/s


class ThroughputTable:
    """Steps per second of a job type with N gpus of one type; None when unknown."""

    def __init__(self, rates: Mapping[str, Mapping[int, Mapping[str, float]]]) -> None:
        self.rates: Rates = {
            jt: {int(g): dict(by_type) for g, by_type in by_gpus.items()}
            for jt, by_gpus in rates.items()
        }

    @classmethod
    def from_gavel(cls, raw: Mapping[str, Any]) -> ThroughputTable:
        """Parse Gavel's ``{gpu_type: {"('<job>', sf)": {"null": rate, ...}}}`` format."""
        rates: Rates = {}
        for gpu_type, entries in raw.items():
            if gpu_type.endswith("_unconsolidated"):
                continue
            for key, value in entries.items():
                job_type, gpus = ast.literal_eval(key)
                rates.setdefault(job_type, {}).setdefault(int(gpus), {})[gpu_type] = float(
                    value["null"]
                )
        return cls(rates)

    @classmethod
    def from_file(cls, path: str) -> ThroughputTable:
        """Either the bundled compact format or Gavel's raw file."""
        with open(path) as f:
            raw = json.load(f)
        return cls.from_gavel(raw) if _is_gavel(raw) else cls(raw)

    @classmethod
    def bundled(cls) -> ThroughputTable:
        """The table shipped in the package (Gavel's measurements, MIT licence)."""
        text = resources.files(__package__).joinpath("data/gavel_throughputs.json").read_text()
        return cls(json.loads(text))

    def to_json(self) -> str:
        return json.dumps(self.rates, indent=0, sort_keys=True)

    def rate(self, job_type: str | None, gpus: int, gpu_type: str | None) -> float | None:
        """Steps/s; for an unmeasured size, scale the largest measured smaller size linearly."""
        by_gpus = self.rates.get(job_type or "")
        if not by_gpus or gpu_type is None:
            return None
        if gpus in by_gpus:
            return by_gpus[gpus].get(gpu_type)
        smaller = [g for g in by_gpus if g <= gpus]
        if not smaller:
            return None
        g = max(smaller)
        base = by_gpus[g].get(gpu_type)
        return None if base is None else base * gpus / g


def _is_gavel(raw: Mapping[str, Any]) -> bool:
    first = next(iter(raw.values()), {})
    return isinstance(first, dict) and any(str(k).startswith("(") for k in first)
