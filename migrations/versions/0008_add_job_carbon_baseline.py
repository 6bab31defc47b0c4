"""add jobs.carbon_baseline_g_per_kwh (the intensity a carbon-deferred job would have run at)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 02:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("carbon_baseline_g_per_kwh", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("carbon_baseline_g_per_kwh")
