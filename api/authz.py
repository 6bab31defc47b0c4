"""Authorization, in one place: every route declares one policy, and nothing is open by default.

A route states its policy with `authorize(POLICY)` (as a parameter that
receives the caller, or in `dependencies=[...]`). The authorization-matrix
test walks the route table and fails for any route without one. Policies
see only the caller and the resource the path names:

- jobs of a project are visible only to its members (others get 404, so
  a job id does not reveal that it exists); a member cancels the jobs they
  own, a project-admin any job of the project, a pool admin anything; a job
  array follows the same rules as one job;
- agents act only for their own node, job tokens only report for their job,
  fetch the artifacts it declared and publish the model it names;
- artifacts are visible by their visibility (`services.artifacts.Viewer`);
- admin routes need a user who is an admin *and* a token with `admin` scope.

Decisions that need the request body (which project a submit charges) are
functions here too, called by the route.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from commonpool.scheduler.domain.errors import Forbidden, NotFound
from commonpool.scheduler.domain.principal import Principal, PrincipalKind, Scope
from commonpool.scheduler.spec import JobSpec

from .authentication import JobFacts, bearer_secret


class Policy:
    """Decides whether `principal` may call the route with these path parameters."""

    name: str = "policy"
    rate: str | None = None  # a RateLimiter bucket spent per accepted call

    async def check(self, request: Request, principal: Principal | None) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.name


@dataclass(frozen=True, repr=False)
class Public(Policy):
    """No credential: health probes, and enrollment (its token is in the body)."""

    name: str = "public"

    async def check(self, request: Request, principal: Principal | None) -> None:
        return None


@dataclass(frozen=True, repr=False)
class UserScope(Policy):
    """A user token holding `scope` (admin holds every scope)."""

    scope: Scope = Scope.JOBS_READ
    rate: str | None = None

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"user:{self.scope.value}"

    async def check(self, request: Request, principal: Principal | None) -> None:
        _require_user_scope(principal, self.scope)


@dataclass(frozen=True, repr=False)
class JobAccess(Policy):
    """A user with `scope` who may see the path's job; `cancel` also needs owner or manager."""

    scope: Scope = Scope.JOBS_READ
    cancel: bool = False

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"job:{'cancel' if self.cancel else self.scope.value}"

    entity: ClassVar[str] = "job"

    async def facts(self, request: Request) -> tuple[str, JobFacts]:
        """The path's job id and its project and owner."""
        job_id = request.path_params["job_id"]
        return job_id, await request.app.state.auth.job_facts(job_id)

    async def check(self, request: Request, principal: Principal | None) -> None:
        user = _require_user_scope(principal, self.scope)
        entity_id, facts = await self.facts(request)
        if not user.can_see_project(facts.project):
            raise NotFound(f"{self.entity} {entity_id} not found", entity=self.entity, id=entity_id)
        if self.cancel and not (
            user.can_manage_project(facts.project) or facts.owner == user.subject
        ):
            raise Forbidden(
                f"only the {self.entity}'s owner or an admin of project {facts.project!r} "
                "may cancel it"
            )


@dataclass(frozen=True, repr=False)
class ArrayAccess(JobAccess):
    """As `JobAccess`, for the path's job array: its tasks share one project and owner."""

    entity: ClassVar[str] = "array"

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"array:{'cancel' if self.cancel else self.scope.value}"

    async def facts(self, request: Request) -> tuple[str, JobFacts]:
        array_id = request.path_params["array_id"]
        return array_id, await request.app.state.auth.array_facts(array_id)


@dataclass(frozen=True, repr=False)
class JobReporter(Policy):
    """The job's own token (handed to its workers), or a pool admin."""

    name: str = "job-reporter"

    async def check(self, request: Request, principal: Principal | None) -> None:
        caller = _require(principal)
        job_id = request.path_params["job_id"]
        if caller.kind is PrincipalKind.JOB and caller.job_id == job_id:
            return
        if caller.admin:
            await request.app.state.auth.job_facts(job_id)
            return
        raise Forbidden(f"only job {job_id}'s own token may report for it")


@dataclass(frozen=True, repr=False)
class NodeSelf(Policy):
    """A node's agent, for its own node only (the path's `node_id`, when there is one)."""

    name: str = "node-self"
    rate: str | None = None

    async def check(self, request: Request, principal: Principal | None) -> None:
        caller = _require(principal)
        if caller.kind is not PrincipalKind.NODE:
            raise Forbidden("this route is for node agents (a node credential)")
        node_id = request.path_params.get("node_id")
        if node_id is not None and node_id != caller.node_id:
            raise Forbidden(f"this credential belongs to node {caller.node_id}, not {node_id}")


@dataclass(frozen=True, repr=False)
class AdminOrNodeSelf(Policy):
    """A pool admin, or the agent of the path's node (a donor draining their machine)."""

    name: str = "admin-or-node-self"

    async def check(self, request: Request, principal: Principal | None) -> None:
        caller = _require(principal)
        if caller.kind is PrincipalKind.NODE:
            await NodeSelf().check(request, caller)
            return
        _require_user_scope(caller, Scope.ADMIN)


@dataclass(frozen=True, repr=False)
class ProjectManager(Policy):
    """A pool admin, or a project-admin of the path's project."""

    name: str = "project-admin"

    async def check(self, request: Request, principal: Principal | None) -> None:
        user = _require_user_scope(principal, Scope.JOBS_READ)
        project = request.path_params["project"]
        if not user.can_manage_project(project):
            raise Forbidden(f"only an admin of project {project!r} may manage it")


@dataclass(frozen=True, repr=False)
class AnyCaller(Policy):
    """Any valid credential (who-am-i)."""

    name: str = "any-credential"

    async def check(self, request: Request, principal: Principal | None) -> None:
        _require(principal)


@dataclass(frozen=True, repr=False)
class UserOrJob(Policy):
    """A user token holding `scope`, or a job's own token (the route narrows what a job
    may do: fetch only its declared inputs, publish only its `publish` name)."""

    scope: Scope = Scope.JOBS_READ

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"user:{self.scope.value}-or-job"

    async def check(self, request: Request, principal: Principal | None) -> None:
        if _require(principal).kind is PrincipalKind.JOB:
            return
        _require_user_scope(principal, self.scope)


PUBLIC = Public()
JOBS_READ = UserScope(Scope.JOBS_READ)
JOBS_SUBMIT = UserScope(Scope.JOBS_WRITE, rate="submit")
ADMIN = UserScope(Scope.ADMIN)
ENROLL = UserScope(Scope.NODES_ENROLL)
METRICS = UserScope(Scope.METRICS_READ)
JOB_READ = JobAccess(Scope.JOBS_READ)
JOB_CANCEL = JobAccess(Scope.JOBS_WRITE, cancel=True)
JOB_REPORT = JobReporter()
ARRAY_READ = ArrayAccess(Scope.JOBS_READ)
ARRAY_CANCEL = ArrayAccess(Scope.JOBS_WRITE, cancel=True)
AGENT = NodeSelf()
AGENT_HEARTBEAT = NodeSelf(rate="heartbeat")
ADMIN_OR_AGENT = AdminOrNodeSelf()
PROJECT_MANAGER = ProjectManager()
ANY_CALLER = AnyCaller()
ARTIFACT_FETCH = UserOrJob(Scope.JOBS_READ)
ARTIFACT_PUBLISH = UserOrJob(Scope.JOBS_WRITE)


def _require(principal: Principal | None) -> Principal:
    if principal is None:
        raise Forbidden("no credential")
    return principal


def _require_user_scope(principal: Principal | None, scope: Scope) -> Principal:
    caller = _require(principal)
    if caller.kind is not PrincipalKind.USER:
        raise Forbidden("this route is for users (an API token)")
    if not caller.has(scope):
        raise Forbidden(f"this token lacks the {scope.value!r} scope")
    return caller


_bearer_scheme = HTTPBearer(
    auto_error=False, description="An API token, node credential or job token."
)


def authorize(policy: Policy) -> Any:
    """The dependency that authenticates the caller and applies `policy`; yields the caller."""
    if isinstance(policy, Public):

        async def public(request: Request) -> None:
            return None

        public.__policy__ = policy  # type: ignore[attr-defined]
        return Depends(public)

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer_scheme)],
    ) -> Principal:
        secret = bearer_secret(
            f"Bearer {credentials.credentials}" if credentials is not None else None
        )
        principal = await request.app.state.auth.principal(secret)
        await policy.check(request, principal)
        if policy.rate is not None:
            request.app.state.rate_limiter.check(policy.rate, principal.token_id)
        return principal

    dependency.__policy__ = policy  # type: ignore[attr-defined]
    return Depends(dependency)


def policy_of(call: Callable[..., Awaitable[Any]] | Callable[..., Any]) -> Policy | None:
    return getattr(call, "__policy__", None)


def submit_project(principal: Principal, requested: str | None) -> str:
    """The project a submit is charged to: one the caller belongs to (admins: any)."""
    if requested is None:
        if len(principal.projects) == 1:
            return next(iter(principal.projects))
        raise Forbidden(
            "say which project the job is charged to (`project:`); you belong to "
            f"{sorted(principal.projects) or 'no project'}"
        )
    if not principal.can_see_project(requested):
        raise Forbidden(f"you are not a member of project {requested!r}")
    return requested


def submit_owner(principal: Principal, requested: str | None) -> str:
    """Jobs belong to their submitter; only an admin may submit on someone's behalf."""
    if requested is None or requested == principal.subject:
        return principal.subject
    if principal.admin:
        return requested
    raise Forbidden("only an admin may submit a job on behalf of another user")


def submit_working_dir(
    principal: Principal, working_dir: str | None, allowed: Sequence[Path]
) -> None:
    """A local working_dir is read by the scheduler's runner and shipped to the job: a user
    could point it at any file the scheduler can read. Non-admins may only name folders
    inside `allowed` (settings `job_code_dirs`), or remote URIs Ray fetches itself."""
    if working_dir is None or principal.admin or "://" in working_dir:
        return
    real = Path(os.path.realpath(working_dir))
    if not any(real.is_relative_to(os.path.realpath(root)) for root in allowed):
        raise Forbidden(
            f"working_dir {working_dir!r} is a folder on the scheduler's machine outside the "
            "pool's job code folders (job_code_dirs); give a remote URI (s3://, gs://, "
            "https://...zip) or ask an admin"
        )


def authorized_submission(
    principal: Principal, spec: JobSpec, job_code_dirs: Sequence[Path]
) -> JobSpec:
    """The spec as the caller may submit it (a job or an array alike): charged to one of
    the caller's projects, owned by the caller (unless an admin names another), and
    shipping only code the caller may ship. Refuses (403) before anything is written."""
    authorized = spec.model_copy(
        update={
            "project": submit_project(principal, spec.project),
            "owner": submit_owner(principal, spec.owner),
        }
    )
    submit_working_dir(principal, spec.working_dir, job_code_dirs)
    return authorized


def visible_projects(principal: Principal) -> frozenset[str] | None:
    """Projects whose jobs the caller may list; None means all (admins)."""
    return None if principal.admin else frozenset(principal.projects)
