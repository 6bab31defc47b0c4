"""chained allocations: a command job may wait on its node's executor behind a running one
(allocations.after_id, allocations.standby)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 22:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("allocations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("after_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("standby", sa.Boolean(), server_default=sa.text("false"), nullable=False)
        )
        batch_op.create_foreign_key(
            "fk_allocations_after_id_allocations",
            "allocations",
            ["after_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_unique_constraint("uq_allocations_after", ["after_id"])
        batch_op.create_index("ix_allocations_standby", ["standby"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("allocations", schema=None) as batch_op:
        batch_op.drop_index("ix_allocations_standby")
        batch_op.drop_constraint("uq_allocations_after", type_="unique")
        batch_op.drop_constraint("fk_allocations_after_id_allocations", type_="foreignkey")
        batch_op.drop_column("standby")
        batch_op.drop_column("after_id")
