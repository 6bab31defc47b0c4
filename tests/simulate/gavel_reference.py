"""An independent, minimal re-implementation of Gavel's simulator loop for *strict* FIFO.

Used only to cross-check :mod:`commonpool.scheduler.simulate` (see docs/simulator.md,
"fifo on 11cb48"). It follows Gavel's ``Scheduler.simulate``: GPUs counted per type (no
nodes), rounds of ``round_s`` chained from event times (a round ends when its last job's
slice ends; an idle cluster jumps to the next arrival), JCT = finish - arrival, and the
allocation recomputed after an arrival or completion at most every ``recompute_s``.
The FIFO allocation is strict (the first job that fits no type blocks the rest) and keeps
a job on its type; the type is drawn at random among those with room, as Gavel's base
mode intends. It deliberately leaves out two quirks of Gavel's ``fifo.py`` (the freed type
handed to the queue head, and base mode's unassigned ``worker_type``), which is the point.
"""

from __future__ import annotations

import random

from commonpool.scheduler.policy.throughput import ThroughputTable
from commonpool.scheduler.simulate.trace import TraceJob


def strict_fifo_avg_jct_h(jobs: list[TraceJob], table: ThroughputTable, gpus_per_type: int = 12,
                          *, seed: int = 0, round_s: float = 360.0,
                          recompute_s: float = 1920.0) -> float:
    types = ("k80", "p100", "v100")
    rate = {j.index: {t: table.rate(j.job_type, j.gpus, t) or 0.0 for t in types} for j in jobs}
    by_id = {j.index: j for j in jobs}
    done = {j.index: 0.0 for j in jobs}
    rng = random.Random(seed)
    active: list[int] = []
    alloc: dict[int, str] = {}
    finish: dict[int, float] = {}
    t, last_reset, need, nxt = jobs[0].arrival_s, -float("inf"), False, 0
    while len(finish) < len(jobs):
        while nxt < len(jobs) and jobs[nxt].arrival_s <= t:
            active.append(jobs[nxt].index)
            nxt, need = nxt + 1, True
        if need and t - last_reset >= recompute_s:
            need, last_reset = False, t
            alloc = {j: w for j, w in alloc.items() if j in active}
            free = {w: gpus_per_type - sum(by_id[j].gpus for j in alloc if alloc[j] == w)
                    for w in types}
            for j in (j for j in active if j not in alloc):
                fits = [w for w in types if free[w] >= by_id[j].gpus and rate[j][w] > 0]
                if not fits:
                    break
                w = rng.choice(fits)
                alloc[j], free[w] = w, free[w] - by_id[j].gpus
        running = [j for j in active if j in alloc]
        if running:
            end = t
            for j in running:
                r = rate[j][alloc[j]]
                steps = min(r * round_s, by_id[j].total_steps - done[j])
                done[j] += steps
                end = max(end, t + steps / r)
                if done[j] >= by_id[j].total_steps - 1e-6:
                    finish[j] = t + steps / r
                    active.remove(j)
                    need = True
            t = end
        else:
            wake = [jobs[nxt].arrival_s] if nxt < len(jobs) else []
            if need:
                wake.append(max(t, last_reset + recompute_s))
            t = max(t, min(wake))
    return sum(finish[j.index] - j.arrival_s for j in jobs) / len(jobs) / 3600.0
