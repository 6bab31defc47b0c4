"""Pure placement policies: a snapshot of the pool in, a plan of decisions out.

Shared by the live scheduler loop and the trace simulator; no clock, SQL or Ray here.
"""

from .base import Policy
from .plan import Cancellation, Placement, Plan, Preemption
from .registry import POLICY_NAMES, UnknownPolicyError, make_policy
from .snapshot import (
    ClusterSnapshot,
    DependencyView,
    JobView,
    NodeView,
    Resources,
    RunningJobView,
    WorkerSlot,
)

__all__ = [
    "POLICY_NAMES",
    "Cancellation",
    "ClusterSnapshot",
    "DependencyView",
    "JobView",
    "NodeView",
    "Placement",
    "Plan",
    "Policy",
    "Preemption",
    "Resources",
    "RunningJobView",
    "UnknownPolicyError",
    "WorkerSlot",
    "make_policy",
]
