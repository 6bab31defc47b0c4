"""Users, projects, memberships, quotas and API tokens: the pool's identities.

Every change here is audited. Token secrets are returned once, at
creation, and only their SHA-256 is stored (`services.secrets`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..domain.errors import Conflict, Invalid, NotFound
from ..domain.ids import new_id
from ..domain.principal import USER_SCOPES, Role, Scope
from ..store.models import ApiToken, Membership, Project, User, utcnow
from . import audit
from .secrets import hash_secret, new_secret

BOOTSTRAP_ADMIN = "admin"
DEFAULT_PROJECT = "default"


@dataclass(frozen=True, slots=True)
class Quota:
    """Per-project limits; None is unlimited."""

    max_cpus: float | None = None
    max_gpus: int | None = None
    max_queued_jobs: int | None = None
    max_artifact_bytes: int | None = None


def create_user(session: Session, name: str, *, admin: bool = False, actor: str) -> User:
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise Conflict(f"user {name!r} already exists", entity="user", id=name)
    user = User(id=new_id("usr"), name=name, is_admin=admin)
    session.add(user)
    session.flush()
    audit.record(session, actor, "user.create", name, admin=admin)
    return user


def get_user(session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise NotFound(f"user {name!r} not found", entity="user", id=name)
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.name)))


def create_project(
    session: Session, name: str, *, weight: float = 1.0, quota: Quota = Quota(), actor: str
) -> Project:
    if session.scalar(select(Project.id).where(Project.name == name)) is not None:
        raise Conflict(f"project {name!r} already exists", entity="project", id=name)
    project = Project(
        id=new_id("prj"),
        name=name,
        weight=weight,
        max_cpus=quota.max_cpus,
        max_gpus=quota.max_gpus,
        max_queued_jobs=quota.max_queued_jobs,
        max_artifact_bytes=quota.max_artifact_bytes,
    )
    session.add(project)
    session.flush()
    audit.record(
        session, actor, "project.create", name, project=name, weight=weight, **_quota_detail(quota)
    )
    return project


def get_project(session: Session, name: str, *, for_update: bool = False) -> Project:
    stmt = select(Project).where(Project.name == name)
    if for_update:
        stmt = stmt.with_for_update()
    project = session.scalar(stmt)
    if project is None:
        raise NotFound(f"project {name!r} not found", entity="project", id=name)
    return project


def list_projects(session: Session, names: Iterable[str] | None = None) -> list[Project]:
    stmt = select(Project).order_by(Project.name)
    if names is not None:
        stmt = stmt.where(Project.name.in_(list(names)))
    return list(session.scalars(stmt))


def set_quota(session: Session, name: str, quota: Quota, *, actor: str) -> Project:
    project = get_project(session, name)
    project.max_cpus = quota.max_cpus
    project.max_gpus = quota.max_gpus
    project.max_queued_jobs = quota.max_queued_jobs
    project.max_artifact_bytes = quota.max_artifact_bytes
    session.flush()
    audit.record(session, actor, "project.quota", name, project=name, **_quota_detail(quota))
    return project


def _quota_detail(quota: Quota) -> dict[str, float | int | None]:
    return {
        "max_cpus": quota.max_cpus,
        "max_gpus": quota.max_gpus,
        "max_queued_jobs": quota.max_queued_jobs,
        "max_artifact_bytes": quota.max_artifact_bytes,
    }


def set_membership(
    session: Session, project_name: str, user_name: str, role: Role, *, actor: str
) -> Membership:
    """Add the user to the project, or change their role there."""
    project = get_project(session, project_name)
    user = get_user(session, user_name)
    membership = session.get(Membership, (user.id, project.id))
    if membership is None:
        membership = Membership(user_id=user.id, project_id=project.id, role=role.value)
        session.add(membership)
    else:
        membership.role = role.value
    session.flush()
    audit.record(session, actor, "project.member", user_name, project=project_name, role=role.value)
    return membership


def remove_membership(session: Session, project_name: str, user_name: str, *, actor: str) -> None:
    project = get_project(session, project_name)
    user = get_user(session, user_name)
    removed = session.execute(
        delete(Membership).where(Membership.user_id == user.id, Membership.project_id == project.id)
    ).rowcount
    if not removed:
        raise NotFound(f"{user_name!r} is not a member of {project_name!r}")
    audit.record(session, actor, "project.member.remove", user_name, project=project_name)


def members_of(session: Session, project_name: str) -> list[tuple[str, Role]]:
    project = get_project(session, project_name)
    rows = session.execute(
        select(User.name, Membership.role)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.project_id == project.id)
        .order_by(User.name)
    )
    return [(name, Role(role)) for name, role in rows]


def roles_of(session: Session, user_id: str) -> dict[str, Role]:
    """The user's projects by name, with the role in each."""
    rows = session.execute(
        select(Project.name, Membership.role)
        .join(Membership, Membership.project_id == Project.id)
        .where(Membership.user_id == user_id)
    )
    return {name: Role(role) for name, role in rows}


def create_token(
    session: Session,
    user_name: str,
    *,
    scopes: Iterable[Scope] = USER_SCOPES,
    ttl: timedelta | None = None,
    name: str = "",
    actor: str,
) -> tuple[str, ApiToken]:
    """A user token; the clear secret is returned here and never again."""
    user = get_user(session, user_name)
    wanted = sorted({Scope(s) for s in scopes})
    if not wanted:
        raise Invalid("a token needs at least one scope")
    if Scope.ADMIN in wanted and not user.is_admin:
        raise Invalid(f"user {user_name!r} is not an admin: an admin-scoped token is refused")
    secret = new_secret("cpu")
    row = ApiToken(
        id=new_id("tok"),
        token_hash=hash_secret(secret),
        kind="user",
        name=name,
        user_id=user.id,
        scopes=[s.value for s in wanted],
        expires_at=utcnow() + ttl if ttl else None,
        created_by=actor,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor,
        "token.create",
        row.id,
        user=user_name,
        scopes=row.scopes,
        expires_at=row.expires_at.isoformat() if ttl else None,
    )
    return secret, row


def revoke_token(session: Session, token_id: str, *, actor: str) -> tuple[ApiToken, str]:
    """Revoke a user token (idempotent); returns it with its user's name."""
    row = session.get(ApiToken, token_id)
    if row is None or row.kind != "user":
        raise NotFound(f"token {token_id} not found", entity="token", id=token_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
        audit.record(session, actor, "token.revoke", token_id)
    user = session.get(User, row.user_id)
    return row, user.name if user else ""


def list_tokens(session: Session, user_name: str | None = None) -> list[tuple[ApiToken, str]]:
    """User tokens (never their secrets) with their user's name."""
    stmt = (
        select(ApiToken, User.name)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.kind == "user")
        .order_by(ApiToken.id)
    )
    if user_name:
        stmt = stmt.where(User.name == user_name)
    return [(token, name) for token, name in session.execute(stmt)]


def mint_job_token(session: Session, job_id: str, attempt: int) -> str:
    """A token a job attempt uses to report its metrics; useless once the attempt ends."""
    secret = new_secret("cpj")
    session.add(
        ApiToken(
            id=new_id("tok"),
            token_hash=hash_secret(secret),
            kind="job",
            name=f"{job_id} attempt {attempt}",
            job_id=job_id,
            job_attempt=attempt,
            scopes=[],
            created_by="scheduler",
        )
    )  # written with the unit's flush: a launch batch's tokens go in one INSERT
    return secret


def bootstrap_admin(session: Session) -> str | None:
    """On a pool with no admin: create user `admin`, project `default`, and an admin token.

    Returns the token's secret (to print once), or None when an admin
    already exists: a second start never mints another.
    """
    if session.scalar(select(User.id).where(User.is_admin.is_(True)).limit(1)) is not None:
        return None
    actor = "bootstrap"
    existing = session.scalar(select(User).where(User.name == BOOTSTRAP_ADMIN))
    if existing is None:
        create_user(session, BOOTSTRAP_ADMIN, admin=True, actor=actor)
    else:
        existing.is_admin = True
    if session.scalar(select(Project.id).where(Project.name == DEFAULT_PROJECT)) is None:
        create_project(session, DEFAULT_PROJECT, actor=actor)
    set_membership(session, DEFAULT_PROJECT, BOOTSTRAP_ADMIN, Role.PROJECT_ADMIN, actor=actor)
    secret, _ = create_token(
        session, BOOTSTRAP_ADMIN, scopes=list(Scope), name="bootstrap admin", actor=actor
    )
    return secret
