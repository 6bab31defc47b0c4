"""CPU package energy from Linux RAPL through the powercap sysfs tree.

Each top-level zone `intel-rapl:N` whose `name` is `package-N` exposes a
cumulative `energy_uj` counter that wraps at `max_energy_range_uj`. Sub-zones
(`intel-rapl:N:M`: core, uncore, dram) are inside or beside the package and
`psys` covers the whole platform, so summing them with the packages would
double count: only packages are read. AMD Zen CPUs publish the same tree.

Since Linux 5.10 `energy_uj` is readable by root only (CVE-2020-8694), so a
non-root agent normally finds RAPL *unavailable* and falls back to the model.
The root path and the file reader are injectable so tests can fake the tree
and the permission error (tests run as root, where chmod does not bite).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from commonpool.workers.telemetry.sample import EnergyMethod, MeterDelta, MeterLost

POWERCAP_ROOT = Path("/sys/class/powercap")

Reader = Callable[[Path], str]


def read_sysfs(path: Path) -> str:
    return path.read_text()


class RaplUnavailable(Exception):
    """No readable package domain; `str(exc)` says why, for the node's method record."""


@dataclass(frozen=True)
class RaplDomain:
    path: Path
    name: str
    max_energy_range_uj: int


def counter_delta(previous_uj: int, current_uj: int, max_range_uj: int) -> int:
    """Microjoules between two reads of a counter that wraps to 0 after `max_range_uj`.

    Assumes at most one wrap between reads: at the largest package powers
    (~500 W) a 2^32 uJ range wraps every ~2 h, far longer than a sample.
    """
    if current_uj >= previous_uj:
        return current_uj - previous_uj
    return max_range_uj - previous_uj + current_uj


def find_package_domains(
    root: Path = POWERCAP_ROOT, reader: Reader = read_sysfs
) -> list[RaplDomain]:
    """Package domains whose counter we can actually read, or `RaplUnavailable`."""
    zones = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)
    if not zones:
        raise RaplUnavailable(f"no RAPL package zones under {root}")
    domains = []
    try:
        for zone in zones:
            name = reader(zone / "name").strip()
            if not name.startswith("package"):
                continue
            max_range = int(reader(zone / "max_energy_range_uj"))
            int(reader(zone / "energy_uj"))
            domains.append(RaplDomain(zone, name, max_range))
    except PermissionError as exc:
        raise RaplUnavailable(f"permission denied reading {exc.filename or root}") from exc
    except (OSError, ValueError) as exc:
        raise RaplUnavailable(f"unreadable RAPL zone: {exc}") from exc
    if not domains:
        raise RaplUnavailable(f"no package domain among {[z.name for z in zones]}")
    return domains


class RaplMeter:
    """The sum of all package counters as one `cpu` meter (wrap-corrected per package)."""

    method = EnergyMethod.RAPL
    device = "cpu"

    def __init__(
        self,
        domains: list[RaplDomain],
        idle_watts: float,
        utilization: Callable[[], float | None],
        reader: Reader = read_sysfs,
    ) -> None:
        self.domains = domains
        self._idle_watts = idle_watts
        self._utilization = utilization
        self._reader = reader
        self._last: list[int] = []

    def _counters(self) -> list[int]:
        try:
            return [int(self._reader(d.path / "energy_uj")) for d in self.domains]
        except (OSError, ValueError) as exc:
            raise MeterLost(f"RAPL counter unreadable: {exc}") from exc

    def start(self, now: float) -> None:
        self._utilization()
        self._last = self._counters()

    def read(self, now: float) -> MeterDelta:
        current = self._counters()
        micro = sum(
            counter_delta(prev, cur, d.max_energy_range_uj)
            for prev, cur, d in zip(self._last, current, self.domains, strict=True)
        )
        self._last = current
        return MeterDelta(
            joules=micro / 1e6, utilization=self._utilization(), idle_watts=self._idle_watts
        )
