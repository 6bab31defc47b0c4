"""add security: admins, memberships, api tokens, quotas, audit, node revocation, log caps

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 19:05:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NODE_STATES = "'ENROLLED', 'ONLINE', 'DRAINING', 'CORDONED', 'OFFLINE', 'LOST'"


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("is_admin", sa.Boolean(), server_default=sa.text("false"), nullable=False)
        )
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_cpus", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("max_gpus", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("max_queued_jobs", sa.Integer(), nullable=True))
        batch_op.create_check_constraint(
            op.f("ck_projects_quotas_nonneg"),
            "(max_cpus IS NULL OR max_cpus >= 0) AND (max_gpus IS NULL OR max_gpus >= 0)"
            " AND (max_queued_jobs IS NULL OR max_queued_jobs >= 0)",
        )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("log_bytes", sa.BigInteger(), server_default="0", nullable=False)
        )
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_nodes_state_valid"), type_="check")
        batch_op.create_check_constraint(
            op.f("ck_nodes_state_valid"), f"state IN ({_NODE_STATES}, 'REVOKED')"
        )

    op.create_table(
        "memberships",
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "role IN ('member', 'project-admin')", name=op.f("ck_memberships_role_valid")
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_memberships_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_memberships_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "project_id", name="pk_memberships"),
    )
    op.create_index("ix_memberships_project", "memberships", ["project_id"], unique=False)

    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=True),
        sa.Column("job_id", sa.String(length=40), nullable=True),
        sa.Column("job_attempt", sa.Integer(), nullable=True),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('user', 'job')", name=op.f("ck_api_tokens_kind_valid")),
        sa.CheckConstraint(
            "(kind = 'user' AND user_id IS NOT NULL)"
            " OR (kind = 'job' AND job_id IS NOT NULL AND job_attempt IS NOT NULL)",
            name=op.f("ck_api_tokens_owner_present"),
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_api_tokens_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_api_tokens_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_index("ix_api_tokens_user", "api_tokens", ["user_id"], unique=False)

    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("target", sa.String(length=100), nullable=True),
        sa.Column("project", sa.String(length=100), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index("ix_audit_events_action", "audit_events", ["action", "id"], unique=False)
    op.create_index("ix_audit_events_actor", "audit_events", ["actor", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_audit_events_actor", table_name="audit_events")
    op.drop_index("ix_audit_events_action", table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_index("ix_api_tokens_user", table_name="api_tokens")
    op.drop_table("api_tokens")
    op.drop_index("ix_memberships_project", table_name="memberships")
    op.drop_table("memberships")
    op.execute("UPDATE nodes SET state = 'OFFLINE' WHERE state = 'REVOKED'")
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_nodes_state_valid"), type_="check")
        batch_op.create_check_constraint(op.f("ck_nodes_state_valid"), f"state IN ({_NODE_STATES})")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("log_bytes")
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_projects_quotas_nonneg"), type_="check")
        batch_op.drop_column("max_queued_jobs")
        batch_op.drop_column("max_gpus")
        batch_op.drop_column("max_cpus")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("is_admin")
