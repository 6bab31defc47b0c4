"""The utilisation power model and its TDP table, checked against hand-computed numbers."""

from __future__ import annotations

import pytest

from commonpool.workers.telemetry.model import (
    CPU_IDLE_FRACTION,
    ModelMeter,
    PowerCurve,
    cpu_model_name,
    cpu_power_model,
    default_table,
    gpu_power_model,
    utilization_factor,
)
from commonpool.workers.telemetry.sample import EnergyMethod

GOLD_6248 = "Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz"


def test_cpu_model_name_from_cpuinfo() -> None:
    text = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: " + GOLD_6248 + "\n"
    assert cpu_model_name(text) == GOLD_6248
    assert cpu_model_name("processor : 0\n") is None


def test_known_cpu_whole_package() -> None:
    model = cpu_power_model(GOLD_6248, logical_cpus=40)
    assert model.max_w == pytest.approx(150.0)
    assert model.idle_w == pytest.approx(150 * 0.74 / 3.5)  # 31.71 W
    assert model.watts(0.5) == pytest.approx(31.714 + (150 - 31.714) * 0.5, abs=1e-3)
    assert model.watts(1.7) == pytest.approx(150.0)  # clamped


def test_known_cpu_scaled_to_visible_threads() -> None:
    assert cpu_power_model(GOLD_6248, logical_cpus=4).max_w == pytest.approx(15.0)
    assert cpu_power_model("AMD EPYC 7742 64-Core Processor", 256).max_w == pytest.approx(450.0)


def test_unknown_cpu_uses_conservative_default() -> None:
    model = cpu_power_model("Intel(R) Xeon(R) Processor", logical_cpus=2)
    assert model.max_w == pytest.approx(16.0)
    assert model.idle_w == pytest.approx(16.0 * CPU_IDLE_FRACTION)
    assert "unknown CPU" in model.basis
    # a near miss is not a match: the 6248R is a 205 W part
    assert "unknown" in cpu_power_model("Intel(R) Xeon(R) Gold 6248R CPU", 48).basis


def test_fan2007_curve_is_concave() -> None:
    assert utilization_factor(0.5, PowerCurve.FAN2007) == pytest.approx(1 - 0.5**1.4)
    assert utilization_factor(0.0, PowerCurve.FAN2007) == 0.0
    assert utilization_factor(1.0, PowerCurve.FAN2007) == pytest.approx(1.0)
    assert utilization_factor(0.3, PowerCurve.FAN2007) > utilization_factor(0.3)


@pytest.mark.parametrize(
    ("name", "watts"),
    [
        ("NVIDIA A100-SXM4-40GB", 400),
        ("NVIDIA A100-PCIE-40GB", 250),
        ("NVIDIA A100 80GB PCIe", 300),
        ("NVIDIA A10", 150),
        ("Tesla V100-PCIE-16GB", 250),
        ("Tesla T4", 70),
        ("NVIDIA GeForce RTX 3090", 350),
        ("Some Future GPU", 300),
    ],
)
def test_gpu_tdp_lookup(name: str, watts: float) -> None:
    assert gpu_power_model(name).max_w == pytest.approx(watts)


def test_gpu_power_limit_beats_table() -> None:
    assert gpu_power_model("NVIDIA A100-SXM4-40GB", power_limit_w=275).max_w == 275


def test_every_table_row_matches_its_own_pattern() -> None:
    table = default_table()
    for entry in table._entries:
        assert table.find(entry.kind, entry.pattern) == entry
        assert entry.kind == "gpu" or entry.threads


def test_model_meter_integrates_mean_utilisation() -> None:
    loads = iter([None, 0.25])
    meter = ModelMeter("cpu", cpu_power_model(GOLD_6248, 40), lambda: next(loads))
    meter.start(100.0)
    delta = meter.read(110.0)
    assert meter.method is EnergyMethod.MODEL
    assert delta.joules == pytest.approx((31.714 + 118.286 * 0.25) * 10, abs=0.01)
    assert delta.utilization == 0.25
