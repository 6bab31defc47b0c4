"""Chained placements: a queued command job waits on a node behind a young command run,
in that run's slot, and the node's executor starts it the moment the run ends.

A trivial job's run is a few milliseconds; recording its end, placing the next job
and launching it takes a scheduling step, so a slot idles a step per job and a pool
of trivial jobs runs at the loop's pace, not the node's. A chained job starts
without that step: the step that recorded the end records its start too, for a
batch of slots at once. Only the queue's order decides who follows whom: the
policy plans once more on a what-if snapshot in which the young runs (and the
jobs already waiting behind them) have ended, and each single-node command job
it places in such a run's slot (within what the slot holds, of the run's own
project, so no quota is passed when the slot changes hands) joins the end of
that slot's line; one pass per level, at most `depth` jobs behind each run.

"Young" (started at most `window_s` ago, or placed in this step) is the bet that
the run ends soon: a job waiting behind a long run waits for it while other slots
may free up first. So only young runs get followers, and once a line's first run
has been seen running for longer the bet is lost: `withdrawals` takes its waiting
jobs back to the queue. A chained job holds nothing until the run ahead ends
(`RunningJobView.after`); the runner starts it only on a node executor that
queues it (`Runner.chains`), anything else launches it once the run ahead has
ended. 0 (either limit) turns chaining off.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

from .base import Policy
from .plan import Placement, Plan, Preemption
from .snapshot import (
    ClusterSnapshot,
    JobView,
    NodeView,
    Resources,
    RunningJobView,
    WorkerSlot,
)

CHAIN_QUEUE = 256  # queued jobs the what-if plan looks at (the head of the queue)


def chain(
    policy: Policy, snapshot: ClusterSnapshot, plan: Plan, *, window_s: float, depth: int = 1
) -> tuple[Placement, ...]:
    """Placements behind young runs (see the module docstring) for jobs `plan` (the
    policy's plan of `snapshot`) leaves queued, at most `depth` behind each run (one
    what-if plan per level); () when there is none to make."""
    if window_s <= 0 or depth <= 0:
        return ()
    queued = {job.id: job for job in snapshot.queued}
    runs = snapshot.running + tuple(
        RunningJobView(queued[p.job_id], p.workers, snapshot.now)
        for p in plan.placements
        if p.after is None
    )
    gone = {p.job_id for p in plan.placements} | {c.job_id for c in plan.cancellations}
    stopping = {p.job_id for p in plan.preemptions}
    nodes = _after_placements(snapshot, plan)
    chained: list[Placement] = []
    for _ in range(depth):
        waiting = tuple(job for job in snapshot.queued if job.id not in gone)
        if not any(job.chainable for job in waiting):
            break
        lines = _open_lines(runs, snapshot.now, window_s, depth, stopping)
        if not lines:
            break
        proposal = policy.plan(
            replace(snapshot, nodes=nodes, queued=waiting[:CHAIN_QUEUE], running=runs).without(
                run.job.id for line in lines for run in line
            )
        )
        level = _assign(proposal, queued, lines)
        if not level:
            break
        chained += level
        gone |= {p.job_id for p in level}
        runs += tuple(
            RunningJobView(queued[p.job_id], p.workers, snapshot.now, after=p.after)
            for p in level
        )
    return tuple(chained)


def withdrawals(snapshot: ClusterSnapshot, *, window_s: float) -> tuple[Preemption, ...]:
    """Chained jobs whose line's first run has been seen running for over `window_s` (the
    bet that it ends soon was lost): back to the queue, to start wherever a slot frees
    first. They have not started, so this costs them nothing (a voluntary requeue, no
    attempt spent). A first run not seen started yet (its start time unknown, e.g. to a
    scheduler that just restarted) keeps its line until it is."""
    running = {run.job.id: run for run in snapshot.running}
    taken_back = []
    for run in snapshot.running:
        head = run
        while head.after is not None and head.after in running:
            head = running[head.after]
        if run is not head and head.running and snapshot.now - head.started_at > window_s:
            taken_back.append(
                Preemption(
                    run.job.id,
                    f"chain: job {head.job.id} has run over {window_s:g} s; back to the queue",
                )
            )
    return tuple(taken_back)


def _open_lines(
    runs: tuple[RunningJobView, ...], now: float, window_s: float, depth: int, stopping: set[str]
) -> list[list[RunningJobView]]:
    """Each young single-node command run with the runs chained behind it, in order, where
    fewer than `depth` wait: oldest head first (the likeliest to end first)."""
    behind = {run.after: run for run in runs if run.after is not None}
    lines = []
    for run in sorted(runs, key=lambda r: r.started_at):
        if not (
            run.after is None
            and run.job.chainable
            and len(run.workers) == 1
            and run.job.id not in stopping
            and now - run.started_at <= window_s
        ):
            continue
        line = [run]
        while line[-1].job.id in behind:
            line.append(behind[line[-1].job.id])
        if len(line) <= depth:
            lines.append(line)
    return lines


def _assign(
    proposal: Plan, queued: dict[str, JobView], lines: list[list[RunningJobView]]
) -> list[Placement]:
    """The proposal's single-node command jobs, each behind the last run of a line on its
    node whose slot holds it and whose project is its own; one job per line."""
    free = list(lines)
    chained = []
    for placement in proposal.placements:
        job = queued[placement.job_id]
        if not job.chainable or len(placement.workers) != 1:
            continue
        node = placement.workers[0].node_id
        line = next(
            (
                line
                for line in free
                if line[0].workers[0].node_id == node
                and line[0].job.project == job.project
                and line[0].workers[0].resources.fits(job.per_worker)
            ),
            None,
        )
        if line is None:
            continue
        free.remove(line)
        chained.append(
            Placement(job.id, (WorkerSlot(node, 0, job.per_worker),), after=line[-1].job.id)
        )
    return chained


def _after_placements(snapshot: ClusterSnapshot, plan: Plan) -> tuple[NodeView, ...]:
    """The snapshot's nodes with what the plan's own placements take from them."""
    taken: dict[str, Resources] = defaultdict(Resources)
    for placement in plan.placements:
        if placement.after is None:
            for worker in placement.workers:
                taken[worker.node_id] = taken[worker.node_id] + worker.resources
    return tuple(
        replace(node, free=node.free - taken[node.id]) if node.id in taken else node
        for node in snapshot.nodes
    )
