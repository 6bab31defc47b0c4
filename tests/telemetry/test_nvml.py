"""GPU sampling through FakeNvml: counter deltas, power integration, lost GPUs, no GPU."""

from __future__ import annotations

import pynvml
import pytest

from commonpool.workers.telemetry.sample import EnergyMethod
from tests.telemetry.fake_nvml import FakeGpu, FakeNvml


def gpu_samples(samples: list) -> dict:
    return {s.device: s for s in samples if s.is_gpu}


def test_energy_counter_delta_gives_measured_joules(make_sampler, clock) -> None:
    gpu = FakeGpu(energy_mj=5_000_000, utilization=80)
    sampler = make_sampler(FakeNvml([gpu]))
    assert sampler.methods["gpu0"] is EnergyMethod.NVML_ENERGY
    sampler.start()
    clock.advance(10)
    gpu.energy_mj += 1_500_000  # 1,500 J in 10 s = 150 W
    sample = gpu_samples(sampler.sample())["gpu0"]
    assert sample.joules == pytest.approx(1500.0)
    assert sample.method is EnergyMethod.NVML_ENERGY
    assert not sample.is_estimated
    assert sample.utilization == pytest.approx(0.8)
    assert sample.seconds == pytest.approx(10)
    # idle share comes from the power limit model (400 W x 15%) over 10 s
    assert sample.idle_joules == pytest.approx(400 * 0.15 * 10)


def test_counter_reset_bridged_with_power(make_sampler, clock) -> None:
    gpu = FakeGpu(energy_mj=9_000_000, power_mw=120_000)
    sampler = make_sampler(FakeNvml([gpu]))
    sampler.start()
    clock.advance(5)
    gpu.energy_mj = 1_000  # driver reloaded: counter restarted
    assert gpu_samples(sampler.sample())["gpu0"].joules == pytest.approx(120 * 5)


def test_counterless_gpu_integrates_polled_power(make_sampler, clock) -> None:
    gpu = FakeGpu(energy_mj=None, power_mw=100_000)
    sampler = make_sampler(FakeNvml([gpu]))
    assert sampler.methods["gpu0"] is EnergyMethod.NVML_POWER
    sampler.start()
    clock.advance(10)
    gpu.power_mw = 200_000
    first = gpu_samples(sampler.sample())["gpu0"]
    assert first.joules == pytest.approx((100 + 200) / 2 * 10)  # trapezoid
    clock.advance(5)
    assert gpu_samples(sampler.sample())["gpu0"].joules == pytest.approx(200 * 5)
    assert not first.is_estimated


def test_gpu_without_any_counter_uses_model_marked_estimated(make_sampler, clock) -> None:
    gpu = FakeGpu(energy_mj=None, power_mw=None, power_limit_mw=250_000, utilization=100)
    sampler = make_sampler(FakeNvml([gpu]))
    assert sampler.methods["gpu0"] is EnergyMethod.MODEL
    assert "estimated from utilisation" in sampler.notes["gpu0"]
    sampler.start()
    clock.advance(10)
    sample = gpu_samples(sampler.sample())["gpu0"]
    assert sample.joules == pytest.approx(250 * 10)
    assert sample.is_estimated


def test_gpu_that_disappears_is_dropped_without_crashing(make_sampler, clock) -> None:
    gpus = [FakeGpu(energy_mj=0), FakeGpu(energy_mj=0)]
    sampler = make_sampler(FakeNvml(gpus))
    sampler.start()
    clock.advance(1)
    assert set(gpu_samples(sampler.sample())) == {"gpu0", "gpu1"}
    gpus[1].lost = True
    clock.advance(1)
    samples = sampler.sample()
    assert set(gpu_samples(samples)) == {"gpu0"}
    assert any(s.device == "cpu" for s in samples)
    assert "gpu1" in sampler.lost and "gpu1" not in sampler.methods
    clock.advance(1)
    assert set(gpu_samples(sampler.sample())) == {"gpu0"}


def test_gpu_lost_before_start_up_is_skipped(make_sampler) -> None:
    sampler = make_sampler(FakeNvml([FakeGpu(lost=True), FakeGpu()]))
    assert set(sampler.methods) == {"cpu", "gpu1"}
    assert "skipped" in sampler.notes["gpu0"]


@pytest.mark.parametrize(
    ("nvml", "note"),
    [
        (None, "not installed"),
        (FakeNvml(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND), "NVML unavailable"),
        (FakeNvml(init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED), "NVML unavailable"),
        (FakeNvml([]), "no GPU"),
    ],
)
def test_no_gpu_at_all_still_samples_cpu(make_sampler, clock, nvml, note) -> None:
    sampler = make_sampler(nvml)
    assert sampler.methods == {"cpu": EnergyMethod.MODEL}
    assert note in sampler.notes["gpu"]
    sampler.start()
    clock.advance(2)
    assert [s.device for s in sampler.sample()] == ["cpu"]
    sampler.close()


def test_process_shares_from_sm_utilisation(make_sampler, clock) -> None:
    gpu = FakeGpu(process_samples=[(10, 60), (11, 20), (10, 20)])
    nvml = FakeNvml([gpu])
    sampler = make_sampler(nvml)
    sampler.start()
    clock.advance(1)
    sample = gpu_samples(sampler.sample())["gpu0"]
    assert sample.process_shares == pytest.approx({10: 0.8, 11: 0.2})
    assert nvml.process_utilization_calls == [int((clock.now - 1) * 1e6)]


def test_process_shares_fall_back_to_running_processes(make_sampler, clock) -> None:
    gpu = FakeGpu(process_samples=None, running_pids=[7, 8, 9, 10])
    sampler = make_sampler(FakeNvml([gpu]))
    sampler.start()
    clock.advance(1)
    shares = gpu_samples(sampler.sample())["gpu0"].process_shares
    assert shares == pytest.approx({7: 0.25, 8: 0.25, 9: 0.25, 10: 0.25})


def test_idle_gpu_has_no_process_shares(make_sampler, clock) -> None:
    sampler = make_sampler(FakeNvml([FakeGpu(process_samples=[])]))
    sampler.start()
    clock.advance(1)
    assert gpu_samples(sampler.sample())["gpu0"].process_shares == {}


def test_close_shuts_nvml_down_once(make_sampler) -> None:
    nvml = FakeNvml([FakeGpu()])
    sampler = make_sampler(nvml)
    sampler.close()
    sampler.close()
    assert nvml.shutdowns == 1
