"""The compression report: every variant side by side with the original, as JSON and a table."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class VariantReport:
    name: str
    artifact: str
    size_bytes: int
    gzip_bytes: int
    params: int
    nonzero_params: int
    accuracy: float
    accuracy_delta: float
    loss: float
    loss_delta: float
    latency_ms_per_batch: float
    energy_j_per_1000: float
    energy_estimated: bool
    extra: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class CompressionReport:
    source: str
    checkpoint: str
    held_out: str
    batch_size: int
    threads: int
    energy_method: str
    energy_note: str
    variants: list[VariantReport]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    def metrics(self) -> dict[str, float]:
        """Flat numbers for `job.report`: `<variant>_<measure>`."""
        out: dict[str, float] = {}
        for v in self.variants:
            key = v.name.replace("-", "_")
            out[f"{key}_accuracy"] = v.accuracy
            out[f"{key}_size_bytes"] = v.size_bytes
            out[f"{key}_latency_ms"] = v.latency_ms_per_batch
            out[f"{key}_energy_j_per_1000"] = v.energy_j_per_1000
            out.update({f"{key}_{k}": x for k, x in v.extra.items()})
        return out

    def table(self) -> Table:
        estimated = any(v.energy_estimated for v in self.variants)
        title = (
            f"compression of {self.source} (held-out: {self.held_out}; batch {self.batch_size}, "
            f"{self.threads} thread(s))"
        )
        table = Table(title=title, caption=self._caption(estimated))
        for column in ("variant", "size", "gzip", "params≠0", "accuracy", "Δacc", "loss",
                       "ms/batch", "mJ/1k inf", "notes"):
            table.add_column(column, justify="left" if column in ("variant", "notes") else "right")
        for v in self.variants:
            notes = ", ".join(f"{k} {x:.3g}" for k, x in v.extra.items())
            table.add_row(
                v.name,
                _kib(v.size_bytes),
                _kib(v.gzip_bytes),
                f"{v.nonzero_params:,}",
                f"{v.accuracy:.4f}",
                f"{v.accuracy_delta:+.4f}",
                f"{v.loss:.4f}",
                f"{v.latency_ms_per_batch:.3f}",
                f"{v.energy_j_per_1000 * 1000:.2f}" + ("*" if v.energy_estimated else ""),
                notes,
            )
        return table

    def _caption(self, estimated: bool) -> str:
        mark = "* estimated: " if estimated else "measured: "
        return f"{mark}{self.energy_method} ({self.energy_note}); idle power not charged"

    def print(self, console: Console | None = None) -> None:
        (console or Console(width=160)).print(self.table())


def _kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"
