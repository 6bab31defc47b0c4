from commonpool.scheduler.policy import make_policy
from commonpool.scheduler.policy.fifo import FIFO_WAIT, FifoPolicy

from .builders import job, node, snapshot


def test_fifo_places_in_submission_order_and_blocks_behind_head() -> None:
    snap = snapshot(
        [node("n1", gpus=4), node("n2", gpus=4)],
        [job("late", gpus=1, submitted_at=3), job("big", gpus=4, workers=2, submitted_at=2),
         job("first", gpus=4, submitted_at=1)],
    )
    plan = FifoPolicy().plan(snap)
    assert [p.job_id for p in plan.placements] == ["first"]
    assert "largest free block" in plan.pending_reasons["big"]
    assert plan.pending_reasons["late"] == FIFO_WAIT


def test_gang_prefers_one_node_and_ranks_are_dense() -> None:
    snap = snapshot([node("a", gpus=8, free_gpus=2), node("b", gpus=8)], [job("j", 2, 4)])
    (placement,) = FifoPolicy().plan(snap).placements
    assert placement.node_ids == ("b",)
    assert [w.rank for w in placement.workers] == [0, 1, 2, 3]


def test_gang_never_mixes_gpu_types() -> None:
    snap = snapshot([node("k", 4, "k80"), node("v", 4, "v100")], [job("j", 4, 2)])
    plan = FifoPolicy().plan(snap)
    assert plan.placements == ()
    assert "more than the pool has" in plan.pending_reasons["j"]


def test_impossible_job_does_not_block_queue() -> None:
    snap = snapshot([node("a", 4)], [job("huge", 8, 2), job("small", 1, submitted_at=1)])
    plan = make_policy("fifo").plan(snap)
    assert [p.job_id for p in plan.placements] == ["small"]
    assert "more than the pool has" in plan.pending_reasons["huge"]


def test_gpu_type_constraint_and_missing_type_reason() -> None:
    snap = snapshot([node("k", 4, "k80")], [job("j", 1, gpu_type="a100")])
    plan = FifoPolicy().plan(snap)
    assert "no schedulable node has gpu type a100" in plan.pending_reasons["j"]
