"""Rich tables for humans, JSON for scripts: the CLI's only output code."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..schemas import ArrayRead, CarbonSavedRead, JobEnergyRead, JobRead

console = Console()
err_console = Console(stderr=True)

STATE_STYLE = {
    "QUEUED": "cyan",
    "PLACED": "blue",
    "STARTING": "blue",
    "RUNNING": "bold blue",
    "SUCCEEDED": "green",
    "FAILED": "bold red",
    "CANCELLED": "magenta",
    "PREEMPTED": "yellow",
    "ONLINE": "green",
    "ENROLLED": "cyan",
    "DRAINING": "yellow",
    "CORDONED": "yellow",
    "OFFLINE": "dim",
    "LOST": "bold red",
}


def print_json(data: BaseModel | Sequence[BaseModel] | dict[str, Any]) -> None:
    if isinstance(data, BaseModel):
        payload: Any = data.model_dump(mode="json")
    elif isinstance(data, dict):
        payload = data
    else:
        payload = [item.model_dump(mode="json") for item in data]
    print(json.dumps(payload, indent=2, default=str))


def state(value: str) -> str:
    return f"[{STATE_STYLE.get(value, 'white')}]{value}[/]"


def gib(memory_bytes: int) -> str:
    return f"{memory_bytes / 2**30:.1f} GiB"


def what_runs(job: JobRead) -> str:
    """What a job runs, by its kind: its entry point, its command, or the model it serves."""
    if job.kind == "command":
        return f"command {shlex.join(job.command or [])}"
    if job.kind == "service":
        return f"service (commonpool service show {job.id})"
    return f"entrypoint {job.entrypoint}"


def size(n_bytes: int) -> str:
    """A byte count for people: 512 B, 3.4 KiB, 1.2 GiB."""
    if n_bytes < 1024:
        return f"{n_bytes} B"
    value = n_bytes / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def age(when: datetime | None) -> str:
    if when is None:
        return "-"
    seconds = (datetime.now(UTC) - when).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{max(seconds, 0):.0f}s ago"


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    out = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        out.add_column(column)
    for row in rows:
        out.add_row(*(str(cell) for cell in row))
    return out


def energy_rows(energy: JobEnergyRead) -> list[tuple[str, str]]:
    """Energy, carbon and how they were obtained, as (label, text) rows for `job` and the demo."""
    if not energy.nodes:
        return [("energy", "none reported yet (agents report with each heartbeat)")]
    rows = [
        (
            "energy",
            f"{energy.energy_j:,.1f} J = {energy.kwh:.6f} kWh over {len(energy.nodes)} node(s), "
            f"{energy.estimated_percent:.0f}% estimated",
        ),
        ("method", energy.method_summary),
    ]
    intensity = f" at {energy.g_per_kwh:.0f} gCO2e/kWh" if energy.g_per_kwh else ""
    sources = ", ".join(energy.intensity_sources) or "-"
    flag = " (world average: region unknown)" if energy.intensity_fallback else ""
    rows.append(("carbon", f"{energy.co2e_g:.4f} gCO2e{intensity}, grid data {sources}{flag}"))
    if energy.co2e_saved_g is not None:
        rows.append(("carbon saved", f"{energy.co2e_saved_g:.4f} gCO2e by waiting for cleaner "
                     f"power (at {energy.baseline_g_per_kwh:.0f} gCO2e/kWh when deferred: "
                     f"{energy.baseline_co2e_g:.4f} g)"))
    if energy.j_per_sample is not None:
        rows.append(("energy/sample", f"{energy.j_per_sample:.4g} J ({energy.samples_basis})"))
    return [(label, escape(text)) for label, text in rows]  # sources are data, not markup


def carbon_saved_line(saved: CarbonSavedRead) -> str:
    """The pool's carbon saved by carbon-aware timing, one line."""
    if not saved.jobs:
        return "carbon saved: none yet (no ended job was deferred for cleaner power)"
    percent = f" ({saved.saved_percent:.0f}%)" if saved.saved_percent is not None else ""
    return (f"carbon saved: {saved.saved_g:,.1f} gCO2e{percent} by {saved.jobs} job(s) that "
            f"waited for cleaner power ({saved.co2e_g:,.1f} g emitted vs "
            f"{saved.baseline_co2e_g:,.1f} g had they started when deferred)")


def array_line(array: ArrayRead) -> str:
    """`arr_x (name): 50 tasks, at most 5 at once; 5 RUNNING, 45 QUEUED`, for humans."""
    limit = f", at most {array.limit} at once" if array.limit else ""
    counts = ", ".join(
        f"{n} {state(s)}" for s, n in sorted(array.by_state.items(), key=lambda kv: -kv[1])
    )
    return f"[bold]{array.id}[/] ({escape(array.name)}): {array.tasks} tasks{limit}; {counts}"


def next_steps(**commands: str) -> None:
    """The commands to follow up a submit, one per line under their labels:
    `next_steps(follow="commonpool logs -f job_x")` prints `  follow:  commonpool ...`."""
    width = max(len(label) for label in commands) + 3
    for label, command in commands.items():
        console.print(f"  {label + ':':<{width}}{command}")
