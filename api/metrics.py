"""Prometheus exposition: a collector that reads the registry on each scrape.

Each app owns one `PoolMetrics` (its own `CollectorRegistry`, never the
global default), so two apps in one process (tests, `commonpool up`) never
share counters. The only in-process figure is the scheduler's decision
latency, fed by the loop's `after_step` hook, because it exists nowhere in
the database. Names and labels are documented in docs/metrics.md (a test
keeps the two equal).
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from commonpool.scheduler.loop import StepReport
from commonpool.scheduler.services.metrics import MetricsSnapshot, metrics_snapshot
from commonpool.scheduler.store.uow import Database

WAIT_BUCKETS_S = (1, 5, 15, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 86400)
STEP_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
RESOURCES = (
    ("cpus", "CPUs"),
    ("gpus", "GPUs"),
    ("memory_bytes", "bytes of memory"),
)


def _histogram_buckets(bounds: Sequence[float], counts: Sequence[int]) -> list[tuple[str, float]]:
    """Cumulative `(le, count)` pairs ending with +Inf, from per-bucket counts."""
    out, running = [], 0
    for bound, count in zip([*bounds, float("inf")], counts, strict=True):
        running += count
        out.append(("+Inf" if bound == float("inf") else repr(float(bound)), float(running)))
    return out


def _bucket_counts(bounds: Sequence[float], values: Iterable[float]) -> list[int]:
    counts = [0] * (len(bounds) + 1)
    for value in values:
        counts[bisect_left(bounds, value)] += 1
    return counts


class StepLatency:
    """Histogram of scheduler step durations (thread-safe: the loop runs in its own thread)."""

    def __init__(self, bounds: Sequence[float] = STEP_BUCKETS_S) -> None:
        self.bounds = tuple(bounds)
        self._counts = [0] * (len(self.bounds) + 1)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        with self._lock:
            self._counts[bisect_left(self.bounds, seconds)] += 1
            self._sum += seconds

    def family(self) -> HistogramMetricFamily:
        with self._lock:
            counts, total = list(self._counts), self._sum
        return HistogramMetricFamily(
            "commonpool_scheduler_step_seconds",
            "Duration of one scheduler step (snapshot, plan, apply, launch).",
            buckets=_histogram_buckets(self.bounds, counts),
            sum_value=total,
        )


class PoolMetrics:
    """The app's Prometheus registry: the DB collector plus the scheduler latency."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.steps = StepLatency()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)  # type: ignore[arg-type]

    def observe_step(self, report: StepReport) -> None:
        """`SchedulerLoop(after_step=...)` hook."""
        self.steps.observe(report.seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        with self.db.unit_of_work(write=False) as session:
            snapshot = metrics_snapshot(session)
        yield from _families(snapshot)
        yield self.steps.family()


def _families(snap: MetricsSnapshot) -> Iterator[Metric]:
    jobs = GaugeMetricFamily("commonpool_jobs", "Jobs by state.", labels=["state"])
    for state, count in snap.jobs_by_state.items():
        jobs.add_metric([state], count)
    yield jobs
    yield GaugeMetricFamily(
        "commonpool_queue_length",
        "Jobs waiting to be placed (QUEUED).",
        value=snap.jobs_by_state.get("QUEUED", 0),
    )
    waits = _bucket_counts(WAIT_BUCKETS_S, snap.wait_seconds)
    yield HistogramMetricFamily(
        "commonpool_job_wait_seconds",
        "Time from submission to start of jobs that started (current attempt).",
        buckets=_histogram_buckets(WAIT_BUCKETS_S, waits),
        sum_value=sum(snap.wait_seconds),
    )
    nodes = GaugeMetricFamily("commonpool_nodes", "Nodes by state.", labels=["state"])
    for state, count in snap.nodes_by_state.items():
        nodes.add_metric([state], count)
    yield nodes
    yield from _capacity(snap)
    power = GaugeMetricFamily(
        "commonpool_node_power_watts",
        "Mean power of the node over its last heartbeat interval (PUE applied).",
        labels=["node_id", "node"],
    )
    util = GaugeMetricFamily(
        "commonpool_node_cpu_utilization_ratio",
        "CPU utilisation (0-1) of the node over its last heartbeat interval.",
        labels=["node_id", "node"],
    )
    for node in snap.nodes:
        if node.power_w is not None:
            power.add_metric([node.node_id, node.name], node.power_w)
        if node.cpu_utilization is not None:
            util.add_metric([node.node_id, node.name], node.cpu_utilization)
    yield power
    yield util
    energy = CounterMetricFamily(
        "commonpool_job_energy_joules", "Energy of a job, summed over its nodes.", labels=["job_id"]
    )
    carbon = CounterMetricFamily(
        "commonpool_job_carbon_grams", "Carbon of a job in gCO2e.", labels=["job_id"]
    )
    for job in snap.jobs_energy:
        energy.add_metric([job.job_id], job.energy_j)
        carbon.add_metric([job.job_id], job.co2e_g)
    yield energy
    yield carbon
    pool_j = CounterMetricFamily(
        "commonpool_energy_joules", "Energy of all nodes by kind.", labels=["kind"]
    )
    pool_g = CounterMetricFamily(
        "commonpool_carbon_grams", "Carbon (gCO2e) of all nodes by kind.", labels=["kind"]
    )
    p = snap.pool
    for kind, joules, grams in (
        ("busy", p.busy_j, p.busy_co2e_g),
        ("idle", p.idle_j, p.idle_co2e_g),
        ("other", p.other_j, p.other_co2e_g),
    ):
        pool_j.add_metric([kind], joules)
        pool_g.add_metric([kind], grams)
    yield pool_j
    yield pool_g


def _capacity(snap: MetricsSnapshot) -> Iterator[Metric]:
    for resource, unit in RESOURCES:
        for status, where in (("allocated", "held by jobs"), ("free", "free on ONLINE nodes")):
            family = GaugeMetricFamily(
                f"commonpool_{status}_{resource}", f"{unit} {where}.", labels=["gpu_type"]
            )
            for gpu_type, cap in sorted(snap.capacity.items()):
                family.add_metric([gpu_type], getattr(cap, f"{status}_{resource}"))
            yield family
