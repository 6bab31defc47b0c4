"""Job and node state machines, as data.

One table of allowed transitions per entity. Nothing but
`scheduler.store.transitions` writes a `state` column, and it only ever
moves along these edges, with a compare-and-set on the current state.
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    QUEUED = "QUEUED"
    PLACED = "PLACED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    PREEMPTED = "PREEMPTED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in _JOB_TERMINAL

    @property
    def holds_allocation(self) -> bool:
        """States in which a job owns allocations on nodes."""
        return self in (JobState.PLACED, JobState.STARTING, JobState.RUNNING)


_JOB_TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
# The final states' column values, for SQL filters (`Job.state.in_(ENDED_VALUES)`).
ENDED_VALUES = tuple(sorted(s.value for s in _JOB_TERMINAL))


class NodeState(StrEnum):
    ENROLLED = "ENROLLED"
    ONLINE = "ONLINE"
    DRAINING = "DRAINING"
    CORDONED = "CORDONED"
    OFFLINE = "OFFLINE"
    LOST = "LOST"
    REVOKED = "REVOKED"

    @property
    def schedulable(self) -> bool:
        """Only ONLINE nodes receive new work; DRAINING/CORDONED keep what they run."""
        return self is NodeState.ONLINE


_J = JobState
JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    _J.QUEUED: frozenset({_J.PLACED, _J.CANCELLED}),
    _J.PLACED: frozenset({_J.STARTING, _J.PREEMPTED, _J.FAILED, _J.CANCELLED}),
    # A job may end before it reports a first step (tiny jobs, early crash).
    _J.STARTING: frozenset({_J.RUNNING, _J.SUCCEEDED, _J.FAILED, _J.PREEMPTED, _J.CANCELLED}),
    _J.RUNNING: frozenset({_J.SUCCEEDED, _J.FAILED, _J.PREEMPTED, _J.CANCELLED}),
    # A preempted job is requeued (attempt + 1) or, when out of attempts, fails.
    _J.PREEMPTED: frozenset({_J.QUEUED, _J.FAILED, _J.CANCELLED}),
    _J.SUCCEEDED: frozenset(),
    _J.FAILED: frozenset(),
    _J.CANCELLED: frozenset(),
}

_N = NodeState
NODE_TRANSITIONS: dict[NodeState, frozenset[NodeState]] = {
    _N.ENROLLED: frozenset({_N.ONLINE, _N.OFFLINE, _N.LOST, _N.REVOKED}),
    _N.ONLINE: frozenset({_N.DRAINING, _N.CORDONED, _N.OFFLINE, _N.LOST, _N.REVOKED}),
    _N.DRAINING: frozenset({_N.ONLINE, _N.CORDONED, _N.OFFLINE, _N.LOST, _N.REVOKED}),
    _N.CORDONED: frozenset({_N.ONLINE, _N.DRAINING, _N.OFFLINE, _N.LOST, _N.REVOKED}),
    # A node that left or was lost may come back: its agent heartbeats again
    # under a new lease epoch, so stale writes from before stay fenced.
    _N.OFFLINE: frozenset({_N.ONLINE, _N.REVOKED}),
    _N.LOST: frozenset({_N.ONLINE, _N.OFFLINE, _N.REVOKED}),
    # An admin revoked the node's identity: its credential is refused for good.
    _N.REVOKED: frozenset(),
}


def job_sources(target: JobState) -> frozenset[JobState]:
    """The states from which a job may move to `target`."""
    return frozenset(s for s, targets in JOB_TRANSITIONS.items() if target in targets)


def node_sources(target: NodeState) -> frozenset[NodeState]:
    """The states from which a node may move to `target`."""
    return frozenset(s for s, targets in NODE_TRANSITIONS.items() if target in targets)
