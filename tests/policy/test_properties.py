"""Invariants every policy must keep, on random snapshots (hypothesis)."""



from hypothesis import given, settings
from hypothesis import strategies as st

from commonpool.scheduler.policy import (
    POLICY_NAMES,
    ClusterSnapshot,
    JobView,
    NodeView,
    Resources,
    RunningJobView,
    WorkerSlot,
    make_policy,
)

GIB = 2**30
TYPES = ("k80", "v100", None)


@st.composite
def snapshots(draw: st.DrawFn) -> ClusterSnapshot:
    nodes = []
    for i in range(draw(st.integers(1, 8))):
        gpu_type = draw(st.sampled_from(TYPES))
        gpus = draw(st.sampled_from((1, 2, 4, 8))) if gpu_type else 0
        labels = {"zone": draw(st.sampled_from("ab"))}
        total = Resources(draw(st.sampled_from((4.0, 16.0))), 64 * GIB, gpus)
        nodes.append(NodeView(f"n{i}", total, total, gpu_type, labels))

    def job_strategy(prefix: str) -> st.SearchStrategy[JobView]:
        return st.builds(
            lambda i, g, c, wmin, extra, t, sel, prio, proj, att: JobView(
                f"{prefix}{i}", Resources(c, GIB, g), wmin, wmin + extra,
                gpu_type=t if g else None, priority=prio, project=proj, submitted_at=float(i),
                attained_service_s=att, job_type="ResNet-18 (batch size 32)",
                label_selector={"zone": sel} if sel else {},
            ),
            st.integers(0, 10**6), st.sampled_from((0, 1, 2, 4)), st.sampled_from((0.5, 1.0, 4.0)),
            st.integers(1, 3), st.integers(0, 2), st.sampled_from(TYPES),
            st.sampled_from(("", "a", "b")), st.integers(0, 2), st.sampled_from(("p", "q")),
            st.sampled_from((0.0, 7200.0, 10**6)),
        )

    queued = draw(st.lists(job_strategy("j"), max_size=12, unique_by=lambda j: j.id))
    running, free = [], {n.id: n.total for n in nodes}
    for j in draw(st.lists(job_strategy("r"), max_size=5, unique_by=lambda j: j.id)):
        slots: list[WorkerSlot] = []
        for n in nodes:
            while len(slots) < j.workers_min and free[n.id].fits(j.per_worker):
                free[n.id] -= j.per_worker
                slots.append(WorkerSlot(n.id, len(slots), j.per_worker))
        if len(slots) == j.workers_min:
            running.append(RunningJobView(j, tuple(slots), started_at=0.0))
        else:
            for s in slots:
                free[s.node_id] += s.resources
    nodes = [NodeView(n.id, n.total, free[n.id], n.gpu_type, n.labels) for n in nodes]
    return ClusterSnapshot(
        now=draw(st.sampled_from((0.0, 5000.0))), nodes=tuple(nodes), queued=tuple(queued),
        running=tuple(running), project_weights={"p": 2.0},
        donor_credits=draw(st.sampled_from(({}, {"q": 5.0}))),
    )


@settings(max_examples=150, deadline=None)
@given(snap=snapshots(), name=st.sampled_from(POLICY_NAMES))
def test_policy_invariants(snap: ClusterSnapshot, name: str) -> None:
    check_invariants(snap, name)


@settings(max_examples=150, deadline=None)
@given(snap=snapshots(), name=st.sampled_from(("hetero", "fair+hetero")))
def test_migrating_policies_keep_the_invariants(snap: ClusterSnapshot, name: str) -> None:
    """More draws for the policies that also move running jobs (see `policy.migrate`)."""
    check_invariants(snap, name)


def check_invariants(snap: ClusterSnapshot, name: str) -> None:
    policy = make_policy(name)
    plan = policy.plan(snap)
    assert plan == policy.plan(snap), "same snapshot must give the same plan"

    nodes = {n.id: n for n in snap.nodes}
    queued = {j.id: j for j in snap.queued}
    running = {r.job.id: r for r in snap.running}
    free = {n.id: n.free for n in snap.nodes}
    for pre in plan.preemptions:
        assert pre.job_id in running and pre.reason
        for slot in running[pre.job_id].workers:
            free[slot.node_id] += slot.resources

    preempted = {pre.job_id for pre in plan.preemptions}
    for p in plan.placements:
        # A running job is placed only when it moves (hetero's migration): preempted too.
        job = queued[p.job_id] if p.job_id not in preempted else running[p.job_id].job
        assert job.workers_min <= len(p.workers) <= job.workers_max  # gang all-or-nothing
        assert [w.rank for w in p.workers] == list(range(len(p.workers)))
        used_types = set()
        for w in p.workers:
            node = nodes[w.node_id]  # KeyError = unknown node
            assert w.resources == job.per_worker
            assert all(node.labels.get(k) == v for k, v in job.label_selector.items())
            free[w.node_id] -= w.resources
            if job.per_worker.gpus:
                used_types.add(node.gpu_type)
        if job.per_worker.gpus:
            assert len(used_types) == 1
            assert job.gpu_type is None or used_types == {job.gpu_type}

    for node_id, left in free.items():
        assert left.cpus >= -1e-9 and left.memory_bytes >= 0 and left.gpus >= 0, node_id

    placed = {p.job_id for p in plan.placements}
    assert len(placed) == len(plan.placements)
    assert placed <= set(queued) | preempted  # KeyError above = an unknown job
    for job_id in queued:
        assert (job_id in placed) != (job_id in plan.pending_reasons)
        if job_id not in placed:
            assert plan.pending_reasons[job_id].strip()


