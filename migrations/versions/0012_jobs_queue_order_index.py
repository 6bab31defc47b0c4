"""index jobs in queue order (state, priority DESC, submitted_at, id): a quick scheduling step
reads the head of a long queue without sorting all of it

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 20:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_state_priority")
        batch_op.create_index(
            "ix_jobs_queue_order",
            ["state", sa.text("priority DESC"), "submitted_at", "id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_queue_order")
        batch_op.create_index(
            "ix_jobs_state_priority", ["state", "priority", "submitted_at"], unique=False
        )
