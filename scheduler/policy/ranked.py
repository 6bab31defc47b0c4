"""The plan of a policy that ranks jobs by one key and lets a job displace worse-ranked ones.

LAS (rank = attained-service queue) and SRPT (rank = remaining work) differ only in the key,
in which running jobs a queued job may preempt, and in the words of their reasons.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .cycle import Cycle, TypePrefs
from .plan import Plan
from .snapshot import ClusterSnapshot, JobView


def plan_by_rank(
    snapshot: ClusterSnapshot,
    key: Callable[[JobView], Any],
    type_prefs: dict[str, TypePrefs] | None,
    *,
    preempt: bool,
    min_run_s: float,
    displaces: Callable[[JobView, JobView], bool],
    preempt_reason: Callable[[JobView], str],
    wait_note: Callable[[JobView], str],
) -> Plan:
    """Offer queued jobs best key first; one that does not fit may checkpoint running jobs
    that ran `min_run_s` and that it `displaces(job, running)`, worst-ranked first."""
    cycle = Cycle(snapshot)
    prefs = type_prefs or {}
    victims = sorted(
        (r for r in snapshot.running if snapshot.now - r.started_at >= min_run_s),
        key=lambda r: key(r.job),
        reverse=True,
    )
    for job in sorted(snapshot.queued, key=key):
        types = prefs.get(job.id)
        if cycle.try_place(job, types) is not None or not preempt:
            continue
        worse = [v for v in victims if displaces(job, v.job)]
        if worse and cycle.place_with_victims(job, worse, preempt_reason(job), types) is not None:
            continue
        cycle.wait(job, f"{cycle.reasons.get(job.id, 'does not fit')} ({wait_note(job)})")
    return cycle.plan()
