"""add job framework and carbon

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 16:45:14.376213
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("framework", sa.String(length=16), server_default="torch", nullable=False)
        )
        batch_op.add_column(
            sa.Column("carbon", sa.String(length=8), server_default="ignore", nullable=False)
        )
        batch_op.add_column(
            sa.Column("carbon_suspensions", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.create_check_constraint(
            op.f("ck_jobs_framework_valid"), "framework IN ('torch', 'tensorflow')"
        )
        batch_op.create_check_constraint(op.f("ck_jobs_carbon_valid"), "carbon IN ('aware', 'ignore')")


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_jobs_carbon_valid"), type_="check")
        batch_op.drop_constraint(op.f("ck_jobs_framework_valid"), type_="check")
        batch_op.drop_column("carbon_suspensions")
        batch_op.drop_column("carbon")
        batch_op.drop_column("framework")
