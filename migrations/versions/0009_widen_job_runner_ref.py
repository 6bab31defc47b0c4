"""jobs.runner_ref as text: a warm-started ddp run's ref names the node of every rank

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 06:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.alter_column(
            "runner_ref", existing_type=sa.String(length=200), type_=sa.Text(),
            existing_nullable=True,
        )  # fmt: skip


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.alter_column(
            "runner_ref", existing_type=sa.Text(), type_=sa.String(length=200),
            existing_nullable=True,
        )  # fmt: skip
