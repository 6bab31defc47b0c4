"""Gates every queued job passes before any policy may place it: job dependencies and job
arrays' running limits.

A layer over any policy, applied by `make_policy` (like `ElasticGrowth`), so no ordering
policy needs to know about arrays or dependencies, and the live loop and the simulator gate
jobs the same way. Before the inner policy plans, for each queued job:

1. dependencies: a job waits until each of its dependencies ended as its condition asks
   (`ok` SUCCEEDED, `fail` FAILED, `any` any final state); a job whose dependency ended in a
   state its condition rules out (`ok` on FAILED or CANCELLED, `fail` on SUCCEEDED or
   CANCELLED) can never start and is cancelled (`Plan.cancellations`). Dependants of a
   cancelled job see it CANCELLED on the next cycle, so a failure cascades one level a cycle;
2. array limits: of the tasks of an array with a limit that passed (1), at most
   `limit - active` (active: placed, starting or running tasks in `snapshot.running`) reach
   the inner policy, lowest index first. Whatever the inner policy places, the array never
   holds more than `limit` tasks at once.

Held jobs get their reason here; the inner policy never sees them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from ..domain.states import ENDED_VALUES
from .base import Policy
from .plan import Cancellation, Plan
from .snapshot import ClusterSnapshot, DependencyView, JobView, RunningJobView

_FINAL = frozenset(ENDED_VALUES)
# condition -> (states that satisfy it, states that rule it out for good)
_OUTCOMES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "ok": (frozenset({"SUCCEEDED"}), frozenset({"FAILED", "CANCELLED"})),
    "fail": (frozenset({"FAILED"}), frozenset({"SUCCEEDED", "CANCELLED"})),
    "any": (_FINAL, frozenset()),
}
_AWAITED = {"ok": "succeed", "fail": "fail", "any": "end"}


@dataclass(frozen=True, slots=True)
class GateDecision:
    """Which queued jobs the inner policy may see, which wait (and why), which are cancelled."""

    admitted: tuple[JobView, ...]
    held: Mapping[str, str]
    cancellations: tuple[Cancellation, ...]


def decide_gates(snapshot: ClusterSnapshot) -> GateDecision:
    """The gates' verdict on every queued job of `snapshot` (pure)."""
    held: dict[str, str] = {}
    cancellations: list[Cancellation] = []
    ready: list[JobView] = []
    for job in snapshot.queued:
        if not job.dependencies:
            ready.append(job)
            continue
        verdict = decide_dependencies(job.id, job.dependencies)
        if isinstance(verdict, Cancellation):
            cancellations.append(verdict)
        elif verdict is not None:
            held[job.id] = verdict
        else:
            ready.append(job)
    held.update(hold_over_array_limits(ready, snapshot.running))
    admitted = tuple(j for j in ready if j.id not in held)
    return GateDecision(admitted, held, tuple(cancellations))


def decide_dependencies(
    job_id: str, dependencies: Iterable[DependencyView]
) -> Cancellation | str | None:
    """A cancellation if a dependency can no longer be met, else why the job waits, else None."""
    waiting: list[DependencyView] = []
    for dep in sorted(dependencies, key=lambda d: (d.condition, d.state, d.job_id)):
        satisfied, impossible = _OUTCOMES[dep.condition]
        if dep.state in impossible:
            return Cancellation(
                job_id, f"dependency {dep.job_id} ended {dep.state} (after{dep.condition})"
            )
        if dep.state not in satisfied:
            waiting.append(dep)
    if not waiting:
        return None
    first = waiting[0]
    more = sum(d.count for d in waiting) - 1
    reason = f"waiting for job {first.job_id} to {_AWAITED[first.condition]}"
    return reason + (f" (and {more} more dependencies)" if more else "")


def hold_over_array_limits(
    ready: Iterable[JobView], running: Iterable[RunningJobView]
) -> dict[str, str]:
    """Reasons for the tasks that would take an array past its limit (lowest index goes first)."""
    limited: dict[str, list[JobView]] = defaultdict(list)
    for job in ready:
        if job.array_id is not None and job.array_limit is not None:
            limited[job.array_id].append(job)
    if not limited:
        return {}
    active = Counter(r.job.array_id for r in running if r.job.array_id in limited)
    held: dict[str, str] = {}
    for array_id, tasks in limited.items():
        limit = tasks[0].array_limit or 0
        room = max(0, limit - active[array_id])
        tasks.sort(key=lambda j: (j.array_index if j.array_index is not None else 0, j.id))
        reason = f"array limit: {active[array_id]} of {limit} tasks running"
        if room:
            reason += f", the {room} lowest-index waiting tasks go first"
        held.update((task.id, reason) for task in tasks[room:])
    return held


@dataclass
class Gates:
    """Runs `inner` on the jobs the gates admit; adds the held jobs' reasons and the
    cancellations to its plan."""

    inner: Policy

    @property
    def name(self) -> str:
        return self.inner.name

    def plan(self, snapshot: ClusterSnapshot) -> Plan:
        gate = decide_gates(snapshot)
        if not gate.held and not gate.cancellations:
            return self.inner.plan(snapshot)
        plan = self.inner.plan(replace(snapshot, queued=gate.admitted))
        return replace(
            plan,
            pending_reasons={**plan.pending_reasons, **gate.held},
            cancellations=plan.cancellations + gate.cancellations,
        )
