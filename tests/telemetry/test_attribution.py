"""Attribution: pure splits checked by hand, and two real processes on this node."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from commonpool.workers.telemetry.attribution import (
    JobUsage,
    attribute_interval,
    split_cpu,
    split_gpu,
)
from commonpool.workers.telemetry.cputime import NodeCpuTimes, ProcessCpuTracker
from commonpool.workers.telemetry.sample import EnergyMethod, EnergySample
from commonpool.workers.telemetry.sampler import NodeEnergySampler

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def sample(device: str, joules: float, idle: float, **kw) -> EnergySample:
    method = kw.pop("method", EnergyMethod.MODEL)
    return EnergySample(
        T0, T0 + timedelta(seconds=10), joules, method, method.is_estimated, device, None,
        idle_joules=idle, **kw,
    )


def test_split_cpu_by_cpu_seconds_rest_to_other() -> None:
    parts, other = split_cpu(100.0, {"a": 6.0, "b": 2.0}, node_busy_seconds=10.0)
    assert parts == pytest.approx({"a": 60.0, "b": 20.0})
    assert other == pytest.approx(20.0)
    # jobs' own sum caps the denominator: never hand out more than measured
    parts, other = split_cpu(100.0, {"a": 6.0, "b": 6.0}, node_busy_seconds=10.0)
    assert sum(parts.values()) == pytest.approx(100.0) and other == pytest.approx(0.0)
    assert split_cpu(50.0, {}, 0.0) == ({}, 50.0)


def test_split_gpu_exclusive_shared_and_unheld() -> None:
    a = JobUsage("a", 0, frozenset({"gpu0"}), frozenset({10}))
    b = JobUsage("b", 0, frozenset({"gpu0"}), frozenset({20}))
    assert split_gpu(90.0, [a], {}) == ({"a": 90.0}, 0.0)
    parts, other = split_gpu(100.0, [a, b], {10: 0.6, 20: 0.3, 99: 0.1})
    assert parts == pytest.approx({"a": 60.0, "b": 30.0}) and other == pytest.approx(10.0)
    assert split_gpu(100.0, [a, b], {}) == ({"a": 50.0, "b": 50.0}, 0.0)
    assert split_gpu(40.0, [], {10: 1.0}) == ({}, 40.0)


def test_attribute_interval_idle_separate_pue_and_conservation() -> None:
    samples = [
        sample("cpu", 100.0, 20.0),
        sample("gpu0", 500.0, 100.0, method=EnergyMethod.NVML_ENERGY),
        sample("gpu1", 300.0, 50.0, method=EnergyMethod.NVML_ENERGY),
    ]
    jobs = [JobUsage("a", 3.0, frozenset({"gpu0"})), JobUsage("b", 1.0)]
    result = attribute_interval(samples, jobs, node_busy_cpu_seconds=8.0, pue=1.5)
    # cpu active 80 J: a 3/8, b 1/8, other 4/8; gpu0 active 400 J to a; gpu1 held by nobody
    assert result.jobs["a"].joules == pytest.approx((30 + 400) * 1.5)
    assert result.jobs["a"].estimated_joules == pytest.approx(30 * 1.5)
    assert result.jobs["b"].joules == pytest.approx(10 * 1.5)
    assert result.idle_joules == pytest.approx(170 * 1.5)
    assert result.other_joules == pytest.approx((40 + 250) * 1.5)
    assert result.total_joules == pytest.approx(900 * 1.5)


CHILD = r"""
import sys, time
duty = float(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
cpu0, end = time.process_time(), time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    period = time.monotonic()
    while time.monotonic() - period < duty * 0.05:
        pass
    rest = 0.05 - (time.monotonic() - period)
    if rest > 0:
        time.sleep(rest)
print(time.process_time() - cpu0, flush=True)
sys.stdin.readline()
"""


def test_two_jobs_with_different_cpu_load_get_energy_in_proportion(tmp_path: Path) -> None:
    """Busy loop (~100%) vs ~30% duty cycle for 3 s, measured with psutil, then attributed.

    The reference is each child's own `time.process_time()` over the work
    phase, so the check holds even when other load on the machine slows one
    child down: attribution must follow the CPU each job actually used.
    """
    loads = {"busy": 1.0, "light": 0.3}
    children = {
        job: subprocess.Popen(
            [sys.executable, "-c", CHILD, str(duty), "3.0"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        for job, duty in loads.items()
    }
    try:
        for child in children.values():
            assert child.stdout.readline().strip() == "ready"
        pids = {job: [child.pid] for job, child in children.items()}
        sampler = NodeEnergySampler.probe(nvml=None, powercap_root=tmp_path, cpuinfo="")
        node_cpu, tracker = NodeCpuTimes(), ProcessCpuTracker()
        tracker.delta(pids)
        sampler.start()
        for child in children.values():
            child.stdin.write("go\n")
            child.stdin.flush()
        truth = {job: float(child.stdout.readline()) for job, child in children.items()}
        samples = sampler.sample()
        busy_seconds, _ = node_cpu.delta()
        used = tracker.delta(pids)
    finally:
        for child in children.values():
            child.communicate("\n", timeout=10)

    jobs = [JobUsage(job, used[job]) for job in loads]
    result = attribute_interval(samples, jobs, busy_seconds, pue=1.2)

    assert truth["busy"] > 1.5 * truth["light"] > 0, truth
    energy = {job: result.jobs[job].joules for job in loads}
    assert energy["busy"] / energy["light"] == pytest.approx(
        truth["busy"] / truth["light"], rel=0.2
    )
    assert all(result.jobs[job].estimated_joules == energy[job] for job in loads)
    assert result.total_joules == pytest.approx(sum(s.joules for s in samples) * 1.2)
    assert energy["light"] > 0 and result.idle_joules > 0
