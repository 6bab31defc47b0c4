"""Who is calling: a user (with scopes and project roles), a node's agent, or a job.

Authentication (`services.auth`) turns a bearer secret into a `Principal`;
authorization (`api.authz`) decides from it alone plus the resource named
by the route. Nothing else reads tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Scope(StrEnum):
    """What a user token may do. `admin` implies every other scope."""

    JOBS_READ = "jobs:read"
    JOBS_WRITE = "jobs:write"
    NODES_ENROLL = "nodes:enroll"
    METRICS_READ = "metrics:read"
    ADMIN = "admin"


USER_SCOPES = (Scope.JOBS_READ, Scope.JOBS_WRITE)
"""The scopes a token gets when none are asked for."""


class Role(StrEnum):
    MEMBER = "member"
    PROJECT_ADMIN = "project-admin"


class PrincipalKind(StrEnum):
    USER = "user"
    NODE = "node"
    JOB = "job"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. `subject` names it in the audit log and job events.

    A user's effective power is the intersection of the user (admin or not,
    project roles) and the token (scopes): an admin's read-only token cannot
    write, and a user's `admin`-scoped token gives nothing if the user is
    not an admin (tokens cannot be created that way; this is the backstop).
    """

    kind: PrincipalKind
    subject: str
    token_id: str
    scopes: frozenset[Scope] = frozenset()
    is_admin: bool = False
    user_id: str | None = None
    projects: dict[str, Role] = field(default_factory=dict)
    node_id: str | None = None
    job_id: str | None = None
    job_attempt: int | None = None

    def has(self, scope: Scope) -> bool:
        if self.kind is not PrincipalKind.USER:
            return False
        if Scope.ADMIN in self.scopes and self.is_admin:
            return True
        return scope in self.scopes and (scope is not Scope.ADMIN or self.is_admin)

    @property
    def admin(self) -> bool:
        return self.has(Scope.ADMIN)

    def role_in(self, project: str) -> Role | None:
        return self.projects.get(project)

    def can_see_project(self, project: str) -> bool:
        return self.admin or project in self.projects

    def can_manage_project(self, project: str) -> bool:
        return self.admin or self.projects.get(project) is Role.PROJECT_ADMIN
