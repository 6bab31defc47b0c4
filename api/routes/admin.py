"""/api/v1 identity routes: who-am-i, users, projects and quotas, members, tokens, audit."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from commonpool.scheduler.domain.principal import Principal
from commonpool.scheduler.services import accounts
from commonpool.scheduler.services.audit import list_audit
from commonpool.scheduler.store.models import ApiToken

from ..authz import ADMIN, ANY_CALLER, JOBS_READ, PROJECT_MANAGER, authorize, visible_projects
from ..deps import ReadSession, WriteSession
from ..schemas import (
    AuditRead,
    MemberRead,
    MemberSet,
    Page,
    ProjectCreate,
    ProjectRead,
    QuotaFields,
    TokenCreate,
    TokenCreated,
    TokenRead,
    UserCreate,
    UserRead,
    WhoAmI,
)

router = APIRouter(tags=["identity"])

AdminCaller = Annotated[Principal, authorize(ADMIN)]
Manager = Annotated[Principal, authorize(PROJECT_MANAGER)]


def _quota(body: QuotaFields) -> accounts.Quota:
    return accounts.Quota(
        body.max_cpus, body.max_gpus, body.max_queued_jobs, body.max_artifact_bytes
    )


def _token_read(row: ApiToken, user: str) -> TokenRead:
    return TokenRead(
        id=row.id,
        user=user,
        name=row.name,
        scopes=list(row.scopes),
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        created_by=row.created_by,
        created_at=row.created_at,
    )


@router.get("/whoami", response_model=WhoAmI)
def whoami(caller: Annotated[Principal, authorize(ANY_CALLER)]) -> WhoAmI:
    """The caller as the server sees it: kind, scopes, projects (for the CLI and dashboard)."""
    return WhoAmI(
        kind=caller.kind.value,
        subject=caller.subject,
        scopes=sorted(s.value for s in caller.scopes),
        is_admin=caller.admin,
        projects={name: role.value for name, role in caller.projects.items()},
        node_id=caller.node_id,
        job_id=caller.job_id,
    )


@router.get("/admin/users", response_model=list[UserRead])
def list_users(session: ReadSession, caller: AdminCaller) -> list[UserRead]:
    return [UserRead.model_validate(u) for u in accounts.list_users(session)]


@router.post("/admin/users", status_code=status.HTTP_201_CREATED, response_model=UserRead)
def create_user(body: UserCreate, session: WriteSession, caller: AdminCaller) -> UserRead:
    user = accounts.create_user(session, body.name, admin=body.admin, actor=caller.subject)
    return UserRead.model_validate(user)


@router.get("/projects", response_model=list[ProjectRead])
def list_projects(
    session: ReadSession, caller: Annotated[Principal, authorize(JOBS_READ)]
) -> list[ProjectRead]:
    """The projects the caller belongs to (all, for an admin), with their quotas."""
    rows = accounts.list_projects(session, visible_projects(caller))
    return [ProjectRead.model_validate(p) for p in rows]


@router.post("/admin/projects", status_code=status.HTTP_201_CREATED, response_model=ProjectRead)
def create_project(body: ProjectCreate, session: WriteSession, caller: AdminCaller) -> ProjectRead:
    project = accounts.create_project(
        session, body.name, weight=body.weight, quota=_quota(body), actor=caller.subject
    )
    return ProjectRead.model_validate(project)


@router.put("/admin/projects/{project}/quota", response_model=ProjectRead)
def set_quota(
    project: str, body: QuotaFields, session: WriteSession, caller: AdminCaller
) -> ProjectRead:
    row = accounts.set_quota(session, project, _quota(body), actor=caller.subject)
    return ProjectRead.model_validate(row)


@router.get("/projects/{project}/members", response_model=list[MemberRead])
def list_members(project: str, session: ReadSession, caller: Manager) -> list[MemberRead]:
    return [MemberRead(user=u, role=r) for u, r in accounts.members_of(session, project)]


@router.put("/projects/{project}/members/{user}", response_model=MemberRead)
def set_member(
    project: str,
    user: str,
    body: MemberSet,
    session: WriteSession,
    request: Request,
    caller: Manager,
) -> MemberRead:
    accounts.set_membership(session, project, user, body.role, actor=caller.subject)
    request.app.state.auth.forget()
    return MemberRead(user=user, role=body.role)


@router.delete("/projects/{project}/members/{user}", status_code=status.HTTP_204_NO_CONTENT)
def remove_member(
    project: str, user: str, session: WriteSession, request: Request, caller: Manager
) -> None:
    accounts.remove_membership(session, project, user, actor=caller.subject)
    request.app.state.auth.forget()


@router.post("/admin/tokens", status_code=status.HTTP_201_CREATED, response_model=TokenCreated)
def create_token(body: TokenCreate, session: WriteSession, caller: AdminCaller) -> TokenCreated:
    """A token for a user, with scopes and an optional lifetime; its secret is shown once."""
    secret, row = accounts.create_token(
        session,
        body.user,
        scopes=body.scopes,
        ttl=timedelta(seconds=body.ttl_s) if body.ttl_s else None,
        name=body.name,
        actor=caller.subject,
    )
    return TokenCreated(**_token_read(row, body.user).model_dump(), token=secret)


@router.get("/admin/tokens", response_model=list[TokenRead])
def list_tokens(
    session: ReadSession,
    caller: AdminCaller,
    user: Annotated[str | None, Query(max_length=100)] = None,
) -> list[TokenRead]:
    return [_token_read(row, name) for row, name in accounts.list_tokens(session, user)]


@router.post("/admin/tokens/{token_id}/revoke", response_model=TokenRead)
def revoke_token(
    token_id: str, session: WriteSession, request: Request, caller: AdminCaller
) -> TokenRead:
    row, user = accounts.revoke_token(session, token_id, actor=caller.subject)
    request.app.state.auth.forget()
    return _token_read(row, user)


@router.get("/admin/audit", response_model=Page[AuditRead])
def audit(
    session: ReadSession,
    request: Request,
    caller: AdminCaller,
    actor: Annotated[str | None, Query(max_length=100)] = None,
    action: Annotated[str | None, Query(max_length=40)] = None,
    target: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    cursor: Annotated[str | None, Query(max_length=20)] = None,
) -> Page[AuditRead]:
    """Who did what, newest first, filterable by actor, action and target."""
    limit = min(limit, request.app.state.settings.page_size_max)
    page = list_audit(
        session, actor=actor, action=action, target=target, limit=limit, cursor=cursor
    )
    return Page[AuditRead](
        items=[AuditRead.model_validate(a) for a in page.items], next_cursor=page.next_cursor
    )
