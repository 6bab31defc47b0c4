"""What a submitted job waits for: `after` entries checked, expanded and stored.

An entry names a job or a job array (`arr_...`, every task of it); the
`gates` policy layer later decides, from the stored rows, when the job may
start or must be cancelled. A dependency that can already never be met
(`afterok` on a FAILED job) is accepted here on purpose: the scheduler
cancels the job on its next cycle with the reason, which is also what
happens when the dependency fails a second after the submit, so there is
one rule and one place that applies it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from ..domain.errors import Invalid, NotFound
from ..domain.states import JobState
from ..policy.gates import decide_dependencies
from ..policy.snapshot import DependencyView
from ..spec import Dependency
from ..store.models import Job, JobDependency

ARRAY_PREFIX = "arr_"
# Rows one submit may store (tasks x jobs waited for): an array of 10,000 tasks waiting on
# another of 10,000 would be 10^8 rows. Wait on a few jobs, or chain arrays through one job.
MAX_DEPENDENCY_ROWS = 100_000


def resolve_dependencies(
    session: Session, after: Sequence[Dependency], *, visible_projects: frozenset[str] | None
) -> dict[str, str]:
    """Job id -> condition for every job waited for; an array id stands for all its tasks.

    An unknown id, or one of a project outside `visible_projects` (None: all),
    is 404, as reading it would be (an id does not reveal that it exists).
    One job named with two different conditions is 422. Two queries at most.
    """
    if not after:
        return {}
    named = {d.job for d in after}
    arrays = sorted(n for n in named if n.startswith(ARRAY_PREFIX))
    jobs = sorted(named.difference(arrays))
    members: dict[str, list[tuple[str, str]]] = defaultdict(list)  # name -> (job id, project)
    if jobs:
        for job_id, project in session.execute(select(Job.id, Job.project).where(Job.id.in_(jobs))):
            members[job_id].append((job_id, project))
    if arrays:
        for array_id, job_id, project in session.execute(
            select(Job.array_id, Job.id, Job.project).where(Job.array_id.in_(arrays))
        ):
            members[array_id].append((job_id, project))
    for name in sorted(named):
        visible = members.get(name) and (
            visible_projects is None or all(p in visible_projects for _, p in members[name])
        )
        if not visible:
            entity = "array" if name.startswith(ARRAY_PREFIX) else "job"
            raise NotFound(f"dependency {entity} {name} not found", entity=entity, id=name)
    waits_for: dict[str, str] = {}
    for dep in after:
        for job_id, _ in members[dep.job]:
            if waits_for.setdefault(job_id, dep.type) != dep.type:
                raise Invalid(
                    f"job {job_id} is waited for twice, as {waits_for[job_id]} and {dep.type}; "
                    "give one condition per job",
                    field="after",
                )
    return waits_for


def check_dependency_rows(jobs: int, waits_for: Mapping[str, str]) -> None:
    """Refuse a submit whose dependencies would store more than `MAX_DEPENDENCY_ROWS` rows."""
    rows = jobs * len(waits_for)
    if rows > MAX_DEPENDENCY_ROWS:
        raise Invalid(
            f"{jobs} jobs each waiting for {len(waits_for)} jobs is {rows} dependencies; "
            f"at most {MAX_DEPENDENCY_ROWS} per submit (wait for one job that itself waits "
            "for the array)",
            field="after",
        )


def submit_reason(waits_for: Mapping[str, str]) -> str | None:
    """The pending reason a job waiting on `waits_for` starts with, in the `gates` layer's
    words: the scheduler does not load a job while a dependency runs (see
    `snapshot_source`), so this is what the job shows until its dependencies end."""
    if not waits_for:
        return None
    pending = [DependencyView(c, JobState.QUEUED.value, j) for j, c in waits_for.items()]
    verdict = decide_dependencies("", pending)
    return verdict if isinstance(verdict, str) else None


def record_dependencies(
    session: Session, job_ids: Sequence[str], waits_for: Mapping[str, str]
) -> None:
    """Store that each of `job_ids` waits for each job of `waits_for`, in one insert."""
    check_dependency_rows(len(job_ids), waits_for)
    if not waits_for or not job_ids:
        return
    session.execute(
        insert(JobDependency),
        [
            {"job_id": job_id, "depends_on": dep, "condition": condition}
            for job_id in job_ids
            for dep, condition in waits_for.items()
        ],
    )
