"""The live loop and the simulator run the same policy code: same pool, same decisions.

One pool and one queue are built twice: as rows in a real database (read back by the live
loop's ``load_snapshot``) and as the simulator's world (a trace and a cluster spec). Over two
cycles - an empty pool, then a partly busy one after more jobs arrive - the snapshots agree
on every field both sources fill in, and each policy's plans agree once ids are mapped.
Live jobs name their model type (``job_type``), so ``+hetero`` policies find the same
throughput rows as in the simulator.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from commonpool.scheduler.loop import SchedulerLoop
from commonpool.scheduler.policy import ClusterSnapshot, Plan, make_policy
from commonpool.scheduler.policy.throughput import ThroughputTable
from commonpool.scheduler.services.jobs import submit_job
from commonpool.scheduler.simulate import Simulator, parse_cluster
from commonpool.scheduler.simulate.cluster import GIB
from commonpool.scheduler.simulate.trace import TraceJob
from commonpool.scheduler.store.snapshot_source import load_snapshot
from commonpool.scheduler.store.uow import Database
from tests.builders import job_spec, online_node

CLUSTER = "k80:4,v100:8"  # three 4-GPU nodes: k80-0, v100-0, v100-1
# (job type, gpus, steps): long enough that nothing finishes during the test. The second
# batch is far longer than the first, so backfill's runtime estimates (simulator only) never
# let a job into capacity held for the head job - the live store has no estimates.
FIRST = [("ResNet-18 (batch size 64)", 4, 1e9), ("LM (batch size 20)", 8, 1e9),
         ("Transformer (batch size 32)", 2, 1e9), ("ResNet-18 (batch size 64)", 1, 1e9)]
SECOND = [("LM (batch size 20)", 2, 1e15), ("Transformer (batch size 32)", 4, 1e15),
          ("ResNet-18 (batch size 64)", 1, 1e15)]
POLICIES = ["fifo", "backfill", "las", "fair", "srpt", "fifo+hetero", "backfill+hetero",
            "hetero", "fair+hetero", "srpt+hetero"]
# srpt without estimates (the live jobs have none) ranks by attained service, which the
# fixed live clock does not advance: it must not preempt in the second cycle either.
OPTIONS: dict[str, dict[str, Any]] = {"srpt": {"min_run_s": 3600.0},
                                      "srpt+hetero": {"min_run_s": 3600.0}}


def project_of(job_type: str) -> str:
    return job_type.split(" (")[0].lower()


class _Stop(Exception):
    pass


class Recorder:
    """Wraps a policy; keeps each (snapshot, plan) and stops the simulation after ``n``."""

    def __init__(self, name: str, n: int) -> None:
        self.inner = make_policy(name, **OPTIONS.get(name, {}))
        self.name = self.inner.name
        self.n = n
        self.cycles: list[tuple[ClusterSnapshot, Plan]] = []

    def plan(self, snapshot: ClusterSnapshot) -> Plan:
        if len(self.cycles) == self.n:
            raise _Stop
        plan = self.inner.plan(snapshot)
        self.cycles.append((snapshot, plan))
        return plan


def simulated_cycles(name: str) -> list[tuple[ClusterSnapshot, Plan]]:
    """The simulator's first two plans: at t=0 (first batch) and t=360 (second batch)."""
    rows = [(*r, 0.0) for r in FIRST] + [(*r, 100.0) for r in SECOND]
    trace = [TraceJob(i, jt, steps, arrival, gpus, gpus)
             for i, (jt, gpus, steps, arrival) in enumerate(rows)]
    recorder = Recorder(name, 2)
    sim = Simulator(trace, parse_cluster(CLUSTER), recorder, ThroughputTable.bundled(),
                    project_of=lambda j: project_of(j.job_type),
                    backfill_estimates=not name.startswith("srpt"))
    with pytest.raises(_Stop):
        sim.run()
    return recorder.cycles


def live_cycles(db: Database, name: str) -> tuple[list[tuple[ClusterSnapshot, Plan]],
                                                  dict[str, str], dict[str, str]]:
    """The live loop's two cycles; returns them with live->sim maps for node and job ids."""
    nodes: dict[str, str] = {}
    jobs: dict[str, str] = {}

    def submit(session: Any, batch: list[tuple[str, int, float]]) -> None:
        for job_type, gpus, _ in batch:
            spec = job_spec(name=f"j{len(jobs)}", project=project_of(job_type), workers=gpus,
                            resources={"cpus": 4, "memory_bytes": 64 * GIB, "gpus": 1},
                            job_type=job_type)
            jobs[submit_job(session, spec, actor="t").id] = str(len(jobs))
            time.sleep(0.002)  # distinct submit times, so FIFO order is submission order

    with db.unit_of_work() as session:
        for view in parse_cluster(CLUSTER):  # same order as the simulator: ids sort alike
            node, _ = online_node(
                session, name=view.id, cpus=view.total.cpus, memory_bytes=view.total.memory_bytes,
                gpus=view.total.gpus, gpu_type=view.gpu_type, labels=dict(view.labels),
                donor_project=view.donor_project)
            nodes[node.id] = view.id
            time.sleep(0.002)
        submit(session, FIRST)
    now = time.time()
    loop = SchedulerLoop(db, make_policy(name, **OPTIONS.get(name, {})), clock=lambda: now)
    cycles = []
    with db.unit_of_work(write=False) as session:
        snap = load_snapshot(session, now=now)
    first = loop.plan()
    report = loop.step()  # the live loop applies what it planned
    assert set(report.placed) == {p.job_id for p in first.placements} and not report.rejected
    cycles.append((snap, first))
    with db.unit_of_work() as session:
        submit(session, SECOND)
    with db.unit_of_work(write=False) as session:
        cycles.append((load_snapshot(session, now=now), loop.plan()))
    return cycles, nodes, jobs


def canonical_plan(plan: Plan, nodes: dict[str, str] | None = None,
                   jobs: dict[str, str] | None = None) -> dict[str, Any]:
    n = nodes or {}
    j = jobs or {}
    return {
        "placements": sorted(
            (j.get(p.job_id, p.job_id),
             tuple((n.get(w.node_id, w.node_id), w.rank, w.resources) for w in p.workers))
            for p in plan.placements),
        "preemptions": sorted(j.get(p.job_id, p.job_id) for p in plan.preemptions),
        "waiting": sorted(j.get(k, k) for k in plan.pending_reasons),
    }


def canonical_snapshot(snap: ClusterSnapshot, nodes: dict[str, str] | None = None,
                       jobs: dict[str, str] | None = None) -> dict[str, Any]:
    """The fields both sources fill in (attained service differs: the live clock is fixed)."""
    n = nodes or {}
    j = jobs or {}

    def job(v: Any) -> tuple:
        return (j.get(v.id, v.id), v.per_worker, v.workers_min, v.workers_max, v.gpu_type,
                v.priority, v.project, tuple(sorted(v.label_selector.items())), v.job_type)

    return {
        "nodes": [(n.get(x.id, x.id), x.total, x.free, x.gpu_type, dict(x.labels),
                   x.donor_project) for x in snap.nodes],
        "queued": sorted(job(v) for v in snap.queued),
        "running": sorted((job(r.job), tuple((n.get(w.node_id, w.node_id), w.rank)
                                             for w in r.workers)) for r in snap.running),
    }


@pytest.mark.parametrize("policy", POLICIES)
def test_same_snapshot_gives_same_decisions_live_and_simulated(db: Database, policy: str) -> None:
    sim = simulated_cycles(policy)
    live, nodes, jobs = live_cycles(db, policy)
    assert len(sim) == len(live) == 2
    for (sim_snap, sim_plan), (live_snap, live_plan) in zip(sim, live, strict=True):
        assert canonical_snapshot(live_snap, nodes, jobs) == canonical_snapshot(sim_snap)
        assert canonical_plan(live_plan, nodes, jobs) == canonical_plan(sim_plan)
    # the scenario exercises something: a partly busy pool with jobs left waiting
    assert sim[1][0].running and sim[1][1].pending_reasons
