"""Bearer credentials to principals, with a short per-process cache.

A cache hit costs no database round trip and no thread-pool hop, which
keeps the submit path fast. The price is a bound on how long a revoked
credential still works on another API process: `auth_cache_s` (2 s by
default). This process forgets its cache at once when it revokes anything.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from commonpool.scheduler.domain.errors import NotFound, Unauthorized
from commonpool.scheduler.domain.principal import Principal
from commonpool.scheduler.services.auth import authenticate
from commonpool.scheduler.services.secrets import hash_secret
from commonpool.scheduler.store.models import Job
from commonpool.scheduler.store.uow import Database

MAX_CACHED = 10_000


def bearer_secret(authorization: str | None) -> str:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized("missing bearer credential (Authorization: Bearer <token>)")
    secret = authorization.split(" ", 1)[1].strip()
    if not secret or len(secret) > 200:
        raise Unauthorized("malformed bearer credential")
    return secret


@dataclass(frozen=True, slots=True)
class JobFacts:
    """What authorization needs of a job; both never change, so they cache forever."""

    project: str
    owner: str


class Authenticator:
    def __init__(self, db: Database, ttl_s: float) -> None:
        self.db = db
        self.ttl_s = ttl_s
        self._principals: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
        self._jobs: OrderedDict[str, JobFacts] = OrderedDict()

    async def principal(self, secret: str) -> Principal:
        key = hash_secret(secret)
        hit = self._principals.get(key)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        principal = await run_in_threadpool(self._lookup, secret)
        if self.ttl_s > 0:
            self._principals[key] = (now + self.ttl_s, principal)
            self._principals.move_to_end(key)
            while len(self._principals) > MAX_CACHED:
                self._principals.popitem(last=False)
        return principal

    def _lookup(self, secret: str) -> Principal:
        with self.db.unit_of_work(write=False) as session:
            return authenticate(session, secret)

    def forget(self) -> None:
        """Drop cached principals (after a revocation or a role change in this process)."""
        self._principals.clear()

    async def job_facts(self, job_id: str) -> JobFacts:
        facts = self._jobs.get(job_id)
        if facts is None:
            facts = await run_in_threadpool(self._job_lookup, job_id)
            self._remember(job_id, facts)
        return facts

    async def array_facts(self, array_id: str) -> JobFacts:
        """The project and owner of an array's tasks (all alike; cached like a job's)."""
        key = f"array:{array_id}"
        facts = self._jobs.get(key)
        if facts is None:
            facts = await run_in_threadpool(self._array_lookup, array_id)
            self._remember(key, facts)
        return facts

    def _remember(self, key: str, facts: JobFacts) -> None:
        self._jobs[key] = facts
        while len(self._jobs) > MAX_CACHED:
            self._jobs.popitem(last=False)

    def _array_lookup(self, array_id: str) -> JobFacts:
        with self.db.unit_of_work(write=False) as session:
            row = session.execute(
                select(Job.project, Job.owner).where(Job.array_id == array_id).limit(1)
            ).first()
            if row is None:
                raise NotFound(f"array {array_id} not found", entity="array", id=array_id)
            return JobFacts(project=row.project, owner=row.owner)

    def _job_lookup(self, job_id: str) -> JobFacts:
        with self.db.unit_of_work(write=False) as session:
            row = session.get(Job, job_id)
            if row is None:
                raise NotFound(f"job {job_id} not found", entity="job", id=job_id)
            return JobFacts(project=row.project, owner=row.owner)
