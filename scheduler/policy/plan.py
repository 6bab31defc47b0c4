"""The decisions a policy returns; the caller (live loop or simulator) carries them out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .snapshot import WorkerSlot


@dataclass(frozen=True, slots=True)
class Placement:
    """Start ``job_id`` with these workers (ranks 0..n-1, workers_min <= n <= workers_max)."""

    job_id: str
    workers: tuple[WorkerSlot, ...]
    # A chained placement (`chain`): the job waits on its node's executor behind running job
    # `after`, in that job's slot, and starts the moment it ends; None for the rest.
    after: str | None = None

    @property
    def node_ids(self) -> tuple[str, ...]:
        """Distinct nodes used, in rank order."""
        return tuple(dict.fromkeys(w.node_id for w in self.workers))


@dataclass(frozen=True, slots=True)
class Preemption:
    """Stop running job ``job_id`` (it goes back to the queue) for a human ``reason``."""

    job_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Cancellation:
    """Cancel queued job ``job_id`` for good, for a human ``reason``.

    For a job that can never start: a dependency ended in a state its condition rules out
    (``afterok`` on a job that FAILED). The policy decides; the caller cancels, so the
    decision stays pure and the simulator, which has no dependencies, may ignore it.
    """

    job_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Plan:
    """One cycle's decisions; every queued job neither placed nor cancelled has a pending
    reason."""

    placements: tuple[Placement, ...] = ()
    preemptions: tuple[Preemption, ...] = ()
    pending_reasons: Mapping[str, str] = field(default_factory=dict)
    # Ask to be planned again by this time even if nothing else happens (e.g. a job deferred
    # to a cleaner window); None = only on events. The live loop plans often and can ignore it.
    review_at: float | None = None
    # Queued jobs to cancel for good (see ``Cancellation``); only the ``gates`` layer adds any.
    cancellations: tuple[Cancellation, ...] = ()
    # Jobs the carbon layer deferred although they had room: job id -> the g/kWh they would
    # have run at had they started now (forecast mean over their runtime, cleanest region
    # with room). The registry keeps the first one as the job's carbon baseline.
    carbon_baselines: Mapping[str, float] = field(default_factory=dict)
