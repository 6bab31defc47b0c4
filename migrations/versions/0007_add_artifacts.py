"""add artifacts (shared models and datasets), job_inputs, jobs.publish, artifact quota,
service jobs (a model served over HTTP)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 23:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KIND_FIELDS = (
    "(kind = 'ddp' AND entrypoint IS NOT NULL) OR (kind = 'command' AND command IS NOT NULL)"
)
KIND_FIELDS_WITH_SERVICE = f"{KIND_FIELDS} OR kind = 'service'"


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("publish", sa.String(100), nullable=True))
        batch_op.drop_constraint(op.f("ck_jobs_kind_fields"), type_="check")
        batch_op.create_check_constraint(op.f("ck_jobs_kind_fields"), KIND_FIELDS_WITH_SERVICE)
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_artifact_bytes", sa.BigInteger(), nullable=True))
        batch_op.create_check_constraint(
            op.f("ck_projects_artifact_quota_nonneg"),
            "max_artifact_bytes IS NULL OR max_artifact_bytes >= 0",
        )
    op.create_table(
        "artifacts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("format", sa.String(length=40), nullable=False),
        sa.Column("project", sa.String(length=100), nullable=False),
        sa.Column("owner", sa.String(length=100), nullable=False),
        sa.Column("visibility", sa.String(length=16), nullable=False),
        sa.Column("licence", sa.String(length=100), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("produced_by_job", sa.String(length=40), nullable=True),
        sa.Column("downloads", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('model', 'dataset')", name=op.f("ck_artifacts_kind_valid")),
        sa.CheckConstraint(
            "visibility IN ('private', 'project', 'public')",
            name=op.f("ck_artifacts_visibility_valid"),
        ),
        sa.CheckConstraint(
            "version >= 1 AND size_bytes >= 0", name=op.f("ck_artifacts_version_size_valid")
        ),
        sa.ForeignKeyConstraint(
            ["produced_by_job"], ["jobs.id"], name=op.f("fk_artifacts_produced_by_job_jobs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifacts")),
        sa.UniqueConstraint("name", "version", name="uq_artifacts_name_version"),
    )
    op.create_index("ix_artifacts_project", "artifacts", ["project"])
    op.create_table(
        "job_inputs",
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("artifact_id", sa.String(length=40), nullable=False),
        sa.Column("role", sa.String(length=8), nullable=False),
        sa.CheckConstraint("role IN ('dataset', 'init')", name=op.f("ck_job_inputs_role_valid")),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_inputs_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["artifact_id"], ["artifacts.id"], name=op.f("fk_job_inputs_artifact_id_artifacts")
        ),
        sa.PrimaryKeyConstraint("job_id", "artifact_id", name=op.f("pk_job_inputs")),
    )
    op.create_index("ix_job_inputs_artifact", "job_inputs", ["artifact_id"])


def downgrade() -> None:
    op.drop_index("ix_job_inputs_artifact", table_name="job_inputs")
    op.drop_table("job_inputs")
    op.drop_index("ix_artifacts_project", table_name="artifacts")
    op.drop_table("artifacts")
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_projects_artifact_quota_nonneg"), type_="check")
        batch_op.drop_column("max_artifact_bytes")
    op.execute("DELETE FROM jobs WHERE kind = 'service'")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_jobs_kind_fields"), type_="check")
        batch_op.create_check_constraint(op.f("ck_jobs_kind_fields"), KIND_FIELDS)
        batch_op.drop_column("publish")
