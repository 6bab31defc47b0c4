"""The audit log: who did what (submit, cancel, drain, enroll, tokens, quotas), when.

Written in the same transaction as the change it records, so an audited
action and its record commit or roll back together.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from ..domain.errors import Invalid
from ..store.models import AuditEvent
from .pagination import Page


def record(
    session: Session,
    actor: str,
    action: str,
    target: str | None = None,
    *,
    project: str | None = None,
    **detail: Any,
) -> None:
    session.execute(  # a Core insert: nothing reads the row back in this transaction
        insert(AuditEvent),
        [{"actor": actor, "action": action, "target": target, "project": project,
          "detail": detail}],
    )  # fmt: skip


def list_audit(
    session: Session,
    *,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> Page[AuditEvent]:
    """Newest first; `cursor` is the id of the last event of the previous page."""
    stmt = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit + 1)
    if actor:
        stmt = stmt.where(AuditEvent.actor == actor)
    if action:
        stmt = stmt.where(AuditEvent.action == action)
    if target:
        stmt = stmt.where(AuditEvent.target == target)
    if cursor:
        if not (cursor.isascii() and cursor.isdigit() and int(cursor) < 2**31):
            raise Invalid(f"cursor {cursor!r} is not an audit event id")
        stmt = stmt.where(AuditEvent.id < int(cursor))
    rows = list(session.scalars(stmt))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(items=rows, next_cursor=str(rows[-1].id) if more else None)
