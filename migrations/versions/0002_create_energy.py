"""create energy

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 16:21:26.077930
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_energy",
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("node_id", sa.String(length=40), nullable=False),
        sa.Column("energy_j", sa.Float(), nullable=False),
        sa.Column("estimated_j", sa.Float(), nullable=False),
        sa.Column("co2e_g", sa.Float(), nullable=False),
        sa.Column("pue", sa.Float(), nullable=False),
        sa.Column("region", sa.String(length=40), nullable=True),
        sa.Column("intensity_source", sa.String(length=200), nullable=True),
        sa.Column("intensity_fallback", sa.Boolean(), nullable=False),
        sa.Column("methods", sa.JSON(), nullable=False),
        sa.Column("method_note", sa.String(length=1000), nullable=True),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "energy_j >= 0 AND estimated_j >= 0 AND co2e_g >= 0",
            name=op.f("ck_job_energy_amounts_nonneg"),
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_energy_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["node_id"], ["nodes.id"], name=op.f("fk_job_energy_node_id_nodes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "node_id", name=op.f("pk_job_energy")),
    )
    with op.batch_alter_table("job_energy", schema=None) as batch_op:
        batch_op.create_index("ix_job_energy_node", ["node_id"], unique=False)

    op.create_table(
        "job_energy_buckets",
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("node_id", sa.String(length=40), nullable=False),
        sa.Column("bucket_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("energy_j", sa.Float(), nullable=False),
        sa.Column("co2e_g", sa.Float(), nullable=False),
        sa.CheckConstraint(
            "energy_j >= 0 AND co2e_g >= 0", name=op.f("ck_job_energy_buckets_amounts_nonneg")
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_job_energy_buckets_job_id_jobs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["nodes.id"],
            name=op.f("fk_job_energy_buckets_node_id_nodes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "job_id", "node_id", "bucket_at", name=op.f("pk_job_energy_buckets")
        ),
    )
    with op.batch_alter_table("job_energy_buckets", schema=None) as batch_op:
        batch_op.create_index(
            "ix_job_energy_buckets_node_bucket", ["node_id", "bucket_at"], unique=False
        )

    op.create_table(
        "node_energy",
        sa.Column("node_id", sa.String(length=40), nullable=False),
        sa.Column("jobs_j", sa.Float(), nullable=False),
        sa.Column("idle_j", sa.Float(), nullable=False),
        sa.Column("other_j", sa.Float(), nullable=False),
        sa.Column("estimated_j", sa.Float(), nullable=False),
        sa.Column("jobs_co2e_g", sa.Float(), nullable=False),
        sa.Column("idle_co2e_g", sa.Float(), nullable=False),
        sa.Column("other_co2e_g", sa.Float(), nullable=False),
        sa.Column("power_w", sa.Float(), nullable=True),
        sa.Column("cpu_utilization", sa.Float(), nullable=True),
        sa.Column("methods", sa.JSON(), nullable=False),
        sa.Column("is_estimated", sa.Boolean(), nullable=False),
        sa.Column("method_note", sa.String(length=1000), nullable=True),
        sa.Column("intensity_source", sa.String(length=200), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "jobs_j >= 0 AND idle_j >= 0 AND other_j >= 0 AND estimated_j >= 0",
            name=op.f("ck_node_energy_energy_nonneg"),
        ),
        sa.ForeignKeyConstraint(
            ["node_id"], ["nodes.id"], name=op.f("fk_node_energy_node_id_nodes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("node_id", name=op.f("pk_node_energy")),
    )


def downgrade() -> None:
    op.drop_table("node_energy")
    with op.batch_alter_table("job_energy_buckets", schema=None) as batch_op:
        batch_op.drop_index("ix_job_energy_buckets_node_bucket")

    op.drop_table("job_energy_buckets")
    with op.batch_alter_table("job_energy", schema=None) as batch_op:
        batch_op.drop_index("ix_job_energy_node")

    op.drop_table("job_energy")
