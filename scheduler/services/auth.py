"""Authentication: a bearer secret in, a `Principal` out, or `Unauthorized`.

The secret's prefix says which table to look in (`cpu_` user tokens,
`cpj_` job tokens, `cpn_` node credentials), so each request costs one
indexed lookup by hash. Reasons in errors never echo the secret.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..domain.errors import Unauthorized
from ..domain.principal import Principal, PrincipalKind, Scope
from ..domain.states import JobState, NodeState
from ..store.models import ApiToken, Job, Node, User, utcnow
from .accounts import roles_of
from .secrets import hash_secret


def authenticate(session: Session, secret: str, *, now: datetime | None = None) -> Principal:
    now = now or utcnow()
    if secret.startswith("cpn_"):
        return _node_principal(session, secret)
    if secret.startswith(("cpu_", "cpj_")):
        token = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_secret(secret)))
        if token is None:
            raise Unauthorized("unknown token")
        if token.revoked_at is not None:
            raise Unauthorized("token revoked")
        if token.expires_at is not None and token.expires_at <= now:
            raise Unauthorized("token expired")
        if token.kind == "job":
            return _job_principal(session, token)
        return _user_principal(session, token)
    raise Unauthorized("unknown credential")


def _user_principal(session: Session, token: ApiToken) -> Principal:
    user = session.get(User, token.user_id)
    if user is None:
        raise Unauthorized("token's user no longer exists")
    return Principal(
        kind=PrincipalKind.USER,
        subject=user.name,
        token_id=token.id,
        scopes=frozenset(Scope(s) for s in token.scopes),
        is_admin=user.is_admin,
        user_id=user.id,
        projects=roles_of(session, user.id),
    )


def _job_principal(session: Session, token: ApiToken) -> Principal:
    """Valid only while its attempt is the job's current, unfinished one."""
    row = session.execute(
        select(Job.state, Job.attempt).where(Job.id == token.job_id)
    ).one_or_none()
    if row is None or row.attempt != token.job_attempt or JobState(row.state).terminal:
        raise Unauthorized("job token expired with its attempt")
    return Principal(
        kind=PrincipalKind.JOB,
        subject=f"job:{token.job_id}",
        token_id=token.id,
        job_id=token.job_id,
        job_attempt=token.job_attempt,
    )


def _node_principal(session: Session, credential: str) -> Principal:
    node = session.scalar(select(Node).where(Node.credential_hash == hash_secret(credential)))
    if node is None:
        raise Unauthorized("unknown node credential")
    if node.state == NodeState.REVOKED.value:
        raise Unauthorized(f"node {node.id} was revoked", node_id=node.id)
    return Principal(
        kind=PrincipalKind.NODE, subject=f"agent:{node.id}", token_id=node.id, node_id=node.id
    )
