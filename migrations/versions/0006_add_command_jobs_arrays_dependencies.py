"""add command jobs (jobs.kind, jobs.command), job arrays and dependencies

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 04:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(16), server_default="ddp", nullable=False))
        batch_op.alter_column("entrypoint", existing_type=sa.String(500), nullable=True)
        batch_op.add_column(sa.Column("command", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("array_id", sa.String(40), nullable=True))
        batch_op.add_column(sa.Column("array_index", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("array_limit", sa.Integer(), nullable=True))
        batch_op.create_check_constraint(
            op.f("ck_jobs_kind_fields"),
            "(kind = 'ddp' AND entrypoint IS NOT NULL)"
            " OR (kind = 'command' AND command IS NOT NULL)",
        )
        batch_op.create_check_constraint(
            op.f("ck_jobs_array_limit_positive"), "array_limit IS NULL OR array_limit >= 1"
        )
        batch_op.create_index("ix_jobs_array", ["array_id", "array_index"])
    op.create_table(
        "job_dependencies",
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("depends_on", sa.String(length=40), nullable=False),
        sa.Column("condition", sa.String(length=8), nullable=False),
        sa.CheckConstraint(
            "condition IN ('ok', 'any', 'fail')", name=op.f("ck_job_dependencies_condition_valid")
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_dependencies_job_id_jobs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["depends_on"], ["jobs.id"], name=op.f("fk_job_dependencies_depends_on_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", "depends_on", name=op.f("pk_job_dependencies")),
    )
    op.create_index("ix_job_dependencies_depends_on", "job_dependencies", ["depends_on"])


def downgrade() -> None:
    op.drop_index("ix_job_dependencies_depends_on", table_name="job_dependencies")
    op.drop_table("job_dependencies")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_array")
        batch_op.drop_constraint(op.f("ck_jobs_array_limit_positive"), type_="check")
        batch_op.drop_constraint(op.f("ck_jobs_kind_fields"), type_="check")
        batch_op.drop_column("array_limit")
        batch_op.drop_column("array_index")
        batch_op.drop_column("array_id")
        batch_op.drop_column("command")
        batch_op.alter_column("entrypoint", existing_type=sa.String(500), nullable=False)
        batch_op.drop_column("kind")
