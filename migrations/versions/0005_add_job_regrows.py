"""add jobs.regrows (elastic jobs relaunched at full size), jobs.eligible_at (requeue backoff)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 19:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("regrows", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("eligible_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("eligible_at")
        batch_op.drop_column("regrows")
