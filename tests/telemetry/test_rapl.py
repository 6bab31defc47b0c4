"""RAPL on a fake powercap tree: package selection, wrap-around, permission denied, missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from commonpool.workers.telemetry.rapl import (
    RaplUnavailable,
    counter_delta,
    find_package_domains,
    read_sysfs,
)
from commonpool.workers.telemetry.sample import EnergyMethod

MAX_UJ = 262_143_328_850


def zone(root: Path, name: str, label: str, energy_uj: int, max_uj: int = MAX_UJ) -> Path:
    path = root / name
    path.mkdir(parents=True)
    (path / "name").write_text(f"{label}\n")
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    (path / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return path


@pytest.fixture
def powercap(tmp_path: Path) -> Path:
    root = tmp_path / "powercap"
    zone(root, "intel-rapl:0", "package-0", 1_000_000)
    zone(root, "intel-rapl:1", "package-1", 2_000_000)
    zone(root, "intel-rapl:0:0", "core", 500_000)  # inside package-0: not summed
    zone(root, "intel-rapl:2", "psys", 9_000_000)  # whole platform: not summed
    return root


def set_energy(root: Path, name: str, energy_uj: int) -> None:
    (root / name / "energy_uj").write_text(f"{energy_uj}\n")


def test_counter_delta_handles_wrap() -> None:
    assert counter_delta(100, 350, 1_000) == 250
    assert counter_delta(900, 150, 1_000) == 250


def test_only_package_domains_are_read(powercap: Path) -> None:
    assert [d.name for d in find_package_domains(powercap)] == ["package-0", "package-1"]


def test_rapl_sums_packages(make_sampler, clock, powercap: Path) -> None:
    sampler = make_sampler(powercap_root=powercap)
    assert sampler.methods["cpu"] is EnergyMethod.RAPL
    sampler.start()
    set_energy(powercap, "intel-rapl:0", 1_000_000 + 30_000_000)
    set_energy(powercap, "intel-rapl:1", 2_000_000 + 20_000_000)
    set_energy(powercap, "intel-rapl:0:0", 99_000_000)
    clock.advance(1)
    (sample,) = sampler.sample()
    assert sample.joules == pytest.approx(50.0)
    assert sample.method is EnergyMethod.RAPL and not sample.is_estimated


def test_rapl_wrap_around(make_sampler, clock, tmp_path: Path) -> None:
    root = tmp_path / "wrap"
    zone(root, "intel-rapl:0", "package-0", 999_000_000, max_uj=1_000_000_000)
    sampler = make_sampler(powercap_root=root)
    sampler.start()
    set_energy(root, "intel-rapl:0", 500_000)
    clock.advance(1)
    (sample,) = sampler.sample()
    assert sample.joules == pytest.approx(1.5)  # 1 J to the wrap + 0.5 J after


def test_permission_denied_falls_back_to_model(make_sampler, powercap: Path) -> None:
    """Tests run as root, where chmod 000 does not stop reads: the reader raises instead."""

    def denied(path: Path) -> str:
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return read_sysfs(path)

    with pytest.raises(RaplUnavailable, match="permission denied"):
        find_package_domains(powercap, denied)
    sampler = make_sampler(powercap_root=powercap, reader=denied)
    assert sampler.methods["cpu"] is EnergyMethod.MODEL
    assert "permission denied" in sampler.notes["cpu"]


def test_missing_powercap_tree(tmp_path: Path) -> None:
    with pytest.raises(RaplUnavailable, match="no RAPL package zones"):
        find_package_domains(tmp_path / "absent")


def test_zone_without_counter_file(tmp_path: Path) -> None:
    root = tmp_path / "powercap"
    zone(root, "intel-rapl:0", "package-0", 0)
    (root / "intel-rapl:0" / "energy_uj").unlink()
    with pytest.raises(RaplUnavailable, match="unreadable"):
        find_package_domains(root)


def test_counter_vanishing_mid_run_swaps_cpu_to_model(make_sampler, clock, powercap) -> None:
    sampler = make_sampler(powercap_root=powercap)
    sampler.start()
    (powercap / "intel-rapl:1" / "energy_uj").unlink()
    clock.advance(1)
    assert sampler.sample() == []  # the lost interval is not invented
    assert sampler.methods["cpu"] is EnergyMethod.MODEL and "cpu" in sampler.lost
    clock.advance(2)
    (sample,) = sampler.sample()
    assert sample.is_estimated and sample.joules > 0
