"""Initial schema: jobs and their log lines.

Revision ID: 0001
Revises: (none)
"""

import sqlalchemy as sa
from alembic import op

from conveyor.store.schema import Json, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conveyor_jobs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=200), nullable=False),
        sa.Column("queue", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("data", Json, nullable=False),
        sa.Column("result", Json, nullable=True),
        sa.Column("error", Json, nullable=True),
        sa.Column("item_errors", Json, nullable=True),
        sa.Column("item_errors_dropped", sa.Integer(), server_default="0", nullable=False),
        sa.Column("progress", Json, nullable=True),
        sa.Column("attempt", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("timeout_seconds", sa.Float(), nullable=True),
        sa.Column("run_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
        sa.Column("worker_id", sa.String(length=200), nullable=True),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("batch_id", sa.Uuid(), nullable=True),
        sa.Column("schedule_id", sa.String(length=200), nullable=True),
        sa.Column("retry_of", sa.Uuid(), nullable=True),
        sa.Column("cache_key", sa.String(length=500), nullable=True),
        sa.Column("idempotency_key", sa.String(length=500), nullable=True),
        sa.Column("labels", Json, nullable=True),
        sa.Column("file_info", Json, nullable=True),
        sa.Column("owner_user_id", sa.String(length=200), nullable=True),
        sa.Column("owner_org_id", sa.String(length=200), nullable=True),
        sa.Column("owner_study_id", sa.String(length=200), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("conveyor_jobs", schema=None) as batch_op:
        # the claim's index: pending jobs of a queue in priority, then arrival (UUIDv7), order
        batch_op.create_index(
            "ix_conveyor_jobs_claim",
            ["queue", sa.text("priority DESC"), "id"],
            unique=False,
            postgresql_where=sa.text("status = 'pending'"),
            sqlite_where=sa.text("status = 'pending'"),
        )
        batch_op.create_index(
            "ix_conveyor_jobs_batch",
            ["batch_id"],
            unique=False,
            postgresql_where=sa.text("batch_id IS NOT NULL"),
            sqlite_where=sa.text("batch_id IS NOT NULL"),
        )
        batch_op.create_index("ix_conveyor_jobs_created", ["created_at"], unique=False)
        batch_op.create_index("ix_conveyor_jobs_kind_created", ["kind", "created_at"], unique=False)
        batch_op.create_index("ix_conveyor_jobs_org_created", ["owner_org_id", "created_at"], unique=False)
        batch_op.create_index(
            "ix_conveyor_jobs_running",
            ["worker_id", "lease_expires_at"],
            unique=False,
            postgresql_where=sa.text("status = 'running'"),
            sqlite_where=sa.text("status = 'running'"),
        )
        batch_op.create_index(
            "ix_conveyor_jobs_scheduled",
            ["run_at"],
            unique=False,
            postgresql_where=sa.text("status = 'scheduled'"),
            sqlite_where=sa.text("status = 'scheduled'"),
        )
        batch_op.create_index("ix_conveyor_jobs_status_created", ["status", "created_at"], unique=False)
        batch_op.create_index("ix_conveyor_jobs_user_created", ["owner_user_id", "created_at"], unique=False)
        batch_op.create_index(
            "uq_conveyor_jobs_idempotency_key",
            ["idempotency_key"],
            unique=True,
            postgresql_where=sa.text("idempotency_key IS NOT NULL"),
            sqlite_where=sa.text("idempotency_key IS NOT NULL"),
        )

    op.create_table(
        "conveyor_job_logs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("ts", UTCDateTime(), nullable=False),
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("component", sa.String(length=200), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["conveyor_jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("conveyor_job_logs", schema=None) as batch_op:
        batch_op.create_index("ix_conveyor_job_logs_job", ["job_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("conveyor_job_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_conveyor_job_logs_job")

    op.drop_table("conveyor_job_logs")
    with op.batch_alter_table("conveyor_jobs", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_conveyor_jobs_idempotency_key",
            postgresql_where=sa.text("idempotency_key IS NOT NULL"),
            sqlite_where=sa.text("idempotency_key IS NOT NULL"),
        )
        batch_op.drop_index("ix_conveyor_jobs_user_created")
        batch_op.drop_index("ix_conveyor_jobs_status_created")
        batch_op.drop_index(
            "ix_conveyor_jobs_scheduled",
            postgresql_where=sa.text("status = 'scheduled'"),
            sqlite_where=sa.text("status = 'scheduled'"),
        )
        batch_op.drop_index(
            "ix_conveyor_jobs_running",
            postgresql_where=sa.text("status = 'running'"),
            sqlite_where=sa.text("status = 'running'"),
        )
        batch_op.drop_index("ix_conveyor_jobs_org_created")
        batch_op.drop_index("ix_conveyor_jobs_kind_created")
        batch_op.drop_index("ix_conveyor_jobs_created")
        batch_op.drop_index("ix_conveyor_jobs_claim")
        batch_op.drop_index(
            "ix_conveyor_jobs_batch",
            postgresql_where=sa.text("batch_id IS NOT NULL"),
            sqlite_where=sa.text("batch_id IS NOT NULL"),
        )

    op.drop_table("conveyor_jobs")
