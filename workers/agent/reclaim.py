"""Owner reclaim: when the donor needs their machine, the pool gives it back (pure decisions).

The agent samples the owner's activity about once a second (`owner.py`:
the busy file, and the CPU used outside the agent, its Ray node and the
pool's jobs) and feeds each sample to `decide_reclaim`, which returns the
next `OwnerWatch` and, at a transition, the `Decision` the agent carries out:

    SHARING --drain--> RECLAIMING --leave--> RECLAIMED --rejoin--> SHARING

* SHARING -> RECLAIMING (drain) at once when the busy file exists (a
  deliberate signal: screen unlocked, user present), or when the owner's CPU
  stayed at or above `busy_cpu` for `busy_after_s` (CPU is noisy: a short
  burst is not the owner's work).
* RECLAIMING -> RECLAIMED (leave) as soon as the node holds no pool job, and
  at the latest `grace_s` after the drain: the jobs still there are
  preempted and resume elsewhere from their latest checkpoint. The owner
  going quiet meanwhile changes nothing: a reclaim, once started, finishes
  (the donor's work always wins, and the node never flaps).
* RECLAIMED -> SHARING (rejoin) once the owner has been idle for
  `idle_after_s`, counted from the leave at the earliest: no busy file, and
  CPU below `idle_cpu` (half of `busy_cpu`: between the two levels the owner
  is neither busy nor idle, so a load hovering at the threshold neither
  drains the node nor brings it back).

Time comes in with the samples (monotonic seconds); nothing here reads a
clock, a file or the network, so tests step it with synthetic samples.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

IDLE_FRACTION = 0.5
"""The owner counts as idle below this fraction of `busy_cpu`."""


class ReclaimState(StrEnum):
    SHARING = "sharing"
    RECLAIMING = "reclaiming"
    RECLAIMED = "reclaimed"


class ReclaimAction(StrEnum):
    DRAIN = "drain"
    LEAVE = "leave"
    REJOIN = "rejoin"


@dataclass(frozen=True, slots=True)
class ReclaimPolicy:
    """When the owner counts as busy or idle, and how long jobs get to move."""

    busy_cpu: float | None = None
    """Owner CPU use in percent of the machine's logical CPUs; None: CPU is not watched."""
    busy_after_s: float = 10.0
    idle_after_s: float = 300.0
    grace_s: float = 60.0

    def __post_init__(self) -> None:
        if self.busy_cpu is not None and not 0 < self.busy_cpu <= 100:
            raise ValueError(f"busy_cpu must be in (0, 100], not {self.busy_cpu}")
        if min(self.busy_after_s, self.idle_after_s, self.grace_s) < 0:
            raise ValueError("busy_after_s, idle_after_s and grace_s must not be negative")

    @property
    def idle_cpu(self) -> float | None:
        return None if self.busy_cpu is None else self.busy_cpu * IDLE_FRACTION


@dataclass(frozen=True, slots=True)
class OwnerSample:
    """The owner's activity at `at` (monotonic seconds)."""

    at: float
    cpu_percent: float | None = None
    """Owner CPU use over the last sampling interval; None when unknown or not measured."""
    busy_file: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    action: ReclaimAction
    reason: str


@dataclass(frozen=True, slots=True)
class OwnerWatch:
    """What the decision carries from one sample to the next."""

    state: ReclaimState = ReclaimState.SHARING
    busy_since: float | None = None
    """Start of the current run of busy-CPU samples."""
    idle_since: float | None = None
    """Start of the current run of idle samples."""
    drain_at: float | None = None
    """When the drain began (RECLAIMING)."""
    reason: str = ""
    """Why the owner took the machine back (RECLAIMING/RECLAIMED)."""


def start_watch(sample: OwnerSample, policy: ReclaimPolicy) -> OwnerWatch:
    """The watch of an agent starting up: RECLAIMED (do not join yet) while the busy file
    exists; the agent then first shares the machine once the owner was idle `idle_after_s`."""
    watch = _streaks(OwnerWatch(), sample, policy)
    if sample.busy_file:
        return replace(watch, state=ReclaimState.RECLAIMED, reason="busy file exists")
    return watch


def decide_reclaim(
    watch: OwnerWatch, sample: OwnerSample, policy: ReclaimPolicy, *, jobs_held: int | None
) -> tuple[OwnerWatch, Decision | None]:
    """Fold one sample in; the decision is what the agent must do now (None: nothing).

    `jobs_held` is the number of allocations the node held at its latest
    heartbeat (None: not known, e.g. the server did not answer).
    """
    watch = _streaks(watch, sample, policy)
    if watch.state is ReclaimState.SHARING:
        reason = _busy_reason(watch, sample, policy)
        if reason is None:
            return watch, None
        drained = replace(watch, state=ReclaimState.RECLAIMING, drain_at=sample.at, reason=reason)
        return drained, Decision(ReclaimAction.DRAIN, reason)
    if watch.state is ReclaimState.RECLAIMING:
        assert watch.drain_at is not None
        waited = sample.at - watch.drain_at
        if jobs_held == 0:
            why = "no pool job left on the node"
        elif waited >= policy.grace_s:
            held = "its jobs" if jobs_held is None else f"{jobs_held} allocation(s)"
            why = f"grace of {policy.grace_s:g} s over: {held} preempted and requeued"
        else:
            return watch, None
        # The return clock starts at the leave at the earliest: a node never rejoins the
        # moment it stopped (the owner went quiet during the grace).
        idle_since = None if watch.idle_since is None else sample.at
        left = replace(watch, state=ReclaimState.RECLAIMED, drain_at=None, idle_since=idle_since)
        return left, Decision(ReclaimAction.LEAVE, why)
    idle_for = _idle_for(watch, sample)
    if idle_for is None or idle_for < policy.idle_after_s:
        return watch, None
    back = replace(watch, state=ReclaimState.SHARING, reason="", busy_since=None)
    return back, Decision(ReclaimAction.REJOIN, f"owner idle for {policy.idle_after_s:g} s")


def _streaks(watch: OwnerWatch, sample: OwnerSample, policy: ReclaimPolicy) -> OwnerWatch:
    """Start or break the busy-CPU and idle runs at this sample."""
    cpu_busy = _cpu_busy(sample, policy)
    idle = not sample.busy_file and _cpu_idle(sample, policy)
    return replace(
        watch,
        busy_since=_run_start(watch.busy_since, sample.at) if cpu_busy else None,
        idle_since=_run_start(watch.idle_since, sample.at) if idle else None,
    )


def _run_start(since: float | None, at: float) -> float:
    return at if since is None else since


def _cpu_busy(sample: OwnerSample, policy: ReclaimPolicy) -> bool:
    return (
        policy.busy_cpu is not None
        and sample.cpu_percent is not None
        and sample.cpu_percent >= policy.busy_cpu
    )


def _cpu_idle(sample: OwnerSample, policy: ReclaimPolicy) -> bool:
    if policy.idle_cpu is None:
        return True  # CPU not watched: only the busy file says the owner is busy
    return sample.cpu_percent is not None and sample.cpu_percent < policy.idle_cpu


def _busy_reason(watch: OwnerWatch, sample: OwnerSample, policy: ReclaimPolicy) -> str | None:
    if sample.busy_file:
        return "busy file exists"
    if watch.busy_since is None or sample.at - watch.busy_since < policy.busy_after_s:
        return None
    return f"CPU {sample.cpu_percent:.0f}% >= {policy.busy_cpu:g}% for {policy.busy_after_s:g} s"


def _idle_for(watch: OwnerWatch, sample: OwnerSample) -> float | None:
    return None if watch.idle_since is None else sample.at - watch.idle_since
