"""Placement throughput and per-decision latency of every policy on a synthetic pool.

    python -m benchmarks.placement                       # 2,000 nodes, 1k/10k jobs
    python -m benchmarks.placement --nodes 10000 --jobs 1000,10000,100000

A *decision* is one queued job placed or left waiting with a reason. decisions/s is
queued jobs / wall time of one ``plan()`` (snapshot construction excluded, as the live
loop builds it incrementally); latency percentiles time each ``Cycle.try_place`` call.
Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable
from typing import Any

try:
    from commonpool.scheduler.policy import (
        POLICY_NAMES,
        ClusterSnapshot,
        JobView,
        NodeView,
        Resources,
        make_policy,
    )
    from commonpool.scheduler.policy import cycle as cycle_module
except ImportError:  # running from a checkout without an install
    from scheduler.policy import (  # type: ignore[no-redef]
        POLICY_NAMES,
        ClusterSnapshot,
        JobView,
        NodeView,
        Resources,
        make_policy,
    )
    from scheduler.policy import cycle as cycle_module  # type: ignore[no-redef]

GIB = 2**30
TYPES = ("k80", "p100", "v100", "a100")
JOB_TYPES = ("ResNet-50 (batch size 64)", "LM (batch size 20)", "Transformer (batch size 64)",
             "never-measured")


def make_pool(nodes: int, jobs: int, seed: int) -> ClusterSnapshot:
    """A mixed pool (1/2/4/8-GPU nodes, 4 types, zones) and a queue of 1-8-worker gangs."""
    rng = random.Random(seed)
    node_views = []
    for i in range(nodes):
        gpus = rng.choice((1, 2, 4, 8, 8))
        total = Resources(8.0 * gpus, 64 * gpus * GIB, gpus)
        node_views.append(NodeView(f"node-{i}", total, total, rng.choice(TYPES),
                                   {"zone": rng.choice("abc")}))
    queued = []
    for i in range(jobs):
        workers = rng.randint(1, 8)
        queued.append(JobView(
            f"job-{i}", Resources(4.0, 16 * GIB, rng.choice((1, 1, 2))), workers, workers,
            gpu_type=rng.choice((None, None, None, "v100", "a100")),
            priority=rng.choice((0, 0, 1)), project=f"p{rng.randrange(8)}",
            submitted_at=float(i), attained_service_s=rng.choice((0.0, 7200.0, 1e6)),
            job_type=rng.choice(JOB_TYPES),
            label_selector={"zone": "a"} if rng.random() < 0.1 else {},
        ))
    return ClusterSnapshot(0.0, tuple(node_views), tuple(queued))


def timed_try_place(latencies: list[float]) -> Callable[[], None]:
    """Wrap ``Cycle.try_place`` to record each call's latency; returns an undo."""
    original = cycle_module.Cycle.try_place

    def wrapper(self: Any, job: Any, types: Any = None) -> Any:
        t0 = time.perf_counter()
        try:
            return original(self, job, types)
        finally:
            latencies.append(time.perf_counter() - t0)

    cycle_module.Cycle.try_place = wrapper  # type: ignore[method-assign]

    def undo() -> None:
        cycle_module.Cycle.try_place = original  # type: ignore[method-assign]

    return undo


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def bench(policy_name: str, snap: ClusterSnapshot) -> dict[str, Any]:
    policy = make_policy(policy_name)
    latencies: list[float] = []
    undo = timed_try_place(latencies)
    try:
        t0 = time.perf_counter()
        plan = policy.plan(snap)
        wall = time.perf_counter() - t0
    finally:
        undo()
    decided = len(plan.placements) + len(plan.pending_reasons)
    assert decided == len(snap.queued)
    return {
        "policy": policy_name, "nodes": len(snap.nodes), "jobs": len(snap.queued),
        "placed": len(plan.placements), "plan_s": round(wall, 3),
        "decisions_per_s": round(decided / wall), "p50_ms": round(pct(latencies, 50) * 1e3, 4),
        "p99_ms": round(pct(latencies, 99) * 1e3, 4),
        "max_ms": round(max(latencies, default=0.0) * 1e3, 3),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--jobs", default="1000,10000", help="comma-separated queue sizes")
    parser.add_argument("--policies", default=",".join(POLICY_NAMES))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rows = []
    for jobs in (int(x) for x in args.jobs.split(",")):
        snap = make_pool(args.nodes, jobs, args.seed)
        for name in args.policies.split(","):
            rows.append(bench(name, snap))
            r = rows[-1]
            print(f"{r['policy']:>16} nodes={r['nodes']:>6} jobs={r['jobs']:>7} "
                  f"placed={r['placed']:>6} plan={r['plan_s']:>7.2f}s "
                  f"dec/s={r['decisions_per_s']:>9} p50={r['p50_ms']:.3f}ms "
                  f"p99={r['p99_ms']:.3f}ms max={r['max_ms']:.1f}ms", flush=True)
    worst_rate = min(r["decisions_per_s"] for r in rows)
    worst_p99 = max(r["p99_ms"] for r in rows)
    print(json.dumps({"benchmark": "placement", "rows": rows, "min_decisions_per_s": worst_rate,
                      "max_p99_ms": worst_p99,
                      "goal_met": worst_rate >= 5000 and worst_p99 <= 20.0}))


if __name__ == "__main__":
    main()
