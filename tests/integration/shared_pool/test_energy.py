"""A real DDP job on two agents gets energy and carbon that add up and match the grid CSV."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from commonpool.api.client.sdk import Client
from commonpool.api.local_pool import LocalPool
from commonpool.api.schemas import JobEnergyRead
from commonpool.scheduler.spec import JobSpec
from tests.carbon_by_hand import gb_intensity, gb_slot

pytestmark = [pytest.mark.ray, pytest.mark.slow]

J_PER_KWH = 3.6e6


def _settled_energy(client: Client, job_id: str, timeout: float = 30) -> JobEnergyRead:
    """The job's energy once the agents' post-job heartbeats (every 2 s) have landed."""
    deadline = time.monotonic() + timeout
    last = client.job_energy(job_id)
    while time.monotonic() < deadline:
        time.sleep(3.0)
        current = client.job_energy(job_id)
        if current.energy_j == last.energy_j and current.energy_j > 0:
            return current
        last = current
    raise AssertionError(f"energy of {job_id} never settled: {last.energy_j} J")


def test_ddp_job_energy_adds_up_is_estimated_and_carbon_matches_csv(
    pool: LocalPool, client: Client
) -> None:
    spec = JobSpec(name="digits-energy", entrypoint="commonpool.workers.examples.digits_mlp:train",
                   workers=2, resources={"cpus": 1}, args={"epochs": 6})
    job = client.submit_job(spec)
    final = client.wait(job.id, timeout_s=300)
    assert final.state == "SUCCEEDED", final.exit_reason
    energy = _settled_energy(client, job.id)

    # energy > 0 on both agents, and the job's figure is the sum of its per-node parts
    assert energy.energy_j > 0
    assert {n.node_id for n in energy.nodes} == set(pool.node_ids)
    assert all(n.energy_j > 0 for n in energy.nodes)
    assert energy.energy_j == pytest.approx(sum(n.energy_j for n in energy.nodes), rel=1e-12)
    assert energy.kwh == pytest.approx(energy.energy_j / J_PER_KWH)
    # no power counter on this machine: the utilisation model, flagged as estimated
    assert energy.is_estimated and all(n.is_estimated for n in energy.nodes)
    assert "cpu=model" in energy.methods
    assert energy.estimated_percent == pytest.approx(100.0)
    assert "no power counter" in energy.method_summary
    # the series holds every joule (well inside the retention)
    assert sum(p.energy_j for p in energy.series) == pytest.approx(energy.energy_j)

    # carbon = kWh x GB intensity at the job's times, read from the CSV by hand
    assert all(n.region == "GB" for n in energy.nodes)
    assert energy.intensity_sources and all(
        s.startswith("csv:gb_2020_ci.csv") for s in energy.intensity_sources
    )
    assert energy.first_at is not None and energy.last_at is not None
    by_hand = sum(p.energy_j / J_PER_KWH * gb_intensity(p.at) for p in energy.series)
    # Series points are 1-minute bucket starts; a heartbeat interval landing in the first
    # bucket may have begun up to a heartbeat before it (in the previous CSV row).
    margin = timedelta(seconds=60)
    same_slot = gb_slot(energy.first_at - margin) == gb_slot(energy.last_at + margin)
    if same_slot:  # one CSV row covers the whole job: exactly kWh x that row's value
        assert energy.co2e_g == pytest.approx(energy.kwh * gb_intensity(energy.first_at), rel=1e-9)
    assert energy.co2e_g == pytest.approx(by_hand, rel=1e-9 if same_slot else 1e-2)

    # digits-mlp reports samples/s: J per sample follows from it
    assert energy.j_per_sample is not None and energy.j_per_sample > 0

    # pool totals: jobs' energy is busy energy; the idle draw is reported apart
    pool_energy = client.pool_summary().energy
    assert pool_energy.busy_j >= energy.energy_j * (1 - 1e-9)
    assert pool_energy.idle_j > 0 and pool_energy.co2e_g > 0

    # /metrics of the running pool shows the job's energy and the loop's step latency
    text = client._http.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    job_energy = {s.labels.get("job_id"): s.value
                  for s in families["commonpool_job_energy_joules"].samples}
    assert job_energy[job.id] == pytest.approx(energy.energy_j)
    steps = families["commonpool_scheduler_step_seconds"].samples
    assert max(s.value for s in steps if s.name.endswith("_count")) > 0
    power = families["commonpool_node_power_watts"].samples
    assert {s.labels["node_id"] for s in power} == set(pool.node_ids)
