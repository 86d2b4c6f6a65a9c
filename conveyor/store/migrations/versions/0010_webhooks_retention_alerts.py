"""Webhook subscriptions, their outbox and deliveries; alerts; finished jobs indexed for
retention and alerts; batches remember announcing their completion.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

from conveyor.store.schema import Json, UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "conveyor_webhooks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.String(length=200), nullable=True),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("events", Json, nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_conveyor_webhooks_org", "conveyor_webhooks", ["org_id"])
    op.create_table(
        "conveyor_webhook_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("org_id", sa.String(length=200), nullable=True),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("batch_id", sa.Uuid(), nullable=True),
        sa.Column("payload", Json, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "conveyor_webhook_deliveries",
        sa.Column("id", _SERIAL, autoincrement=True, nullable=False),
        sa.Column("webhook_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("delivered_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_conveyor_webhook_deliveries_webhook", "conveyor_webhook_deliveries", ["webhook_id", "id"])
    op.create_index("ix_conveyor_webhook_deliveries_at", "conveyor_webhook_deliveries", ["delivered_at"])
    op.create_table(
        "conveyor_alerts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.String(length=200), nullable=True),
        sa.Column("kind", sa.String(length=200), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("raised_at", UTCDateTime(), nullable=False),
        sa.Column("cleared_at", UTCDateTime(), nullable=True),
        sa.Column("cleared_value", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_conveyor_alerts_org_raised", "conveyor_alerts", ["org_id", "raised_at"])
    op.create_index(
        "ix_conveyor_alerts_active",
        "conveyor_alerts",
        ["kind"],
        postgresql_where=sa.text("cleared_at IS NULL"),
        sqlite_where=sa.text("cleared_at IS NULL"),
    )
    op.create_index(
        "ix_conveyor_jobs_finished",
        "conveyor_jobs",
        ["status", "completed_at"],
        postgresql_where=sa.text("completed_at IS NOT NULL"),
        sqlite_where=sa.text("completed_at IS NOT NULL"),
    )
    with op.batch_alter_table("conveyor_batches") as batch:
        batch.add_column(sa.Column("completion_announced_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("conveyor_batches") as batch:
        batch.drop_column("completion_announced_at")
    op.drop_index("ix_conveyor_jobs_finished", table_name="conveyor_jobs")
    op.drop_index("ix_conveyor_alerts_active", table_name="conveyor_alerts")
    op.drop_index("ix_conveyor_alerts_org_raised", table_name="conveyor_alerts")
    op.drop_table("conveyor_alerts")
    op.drop_index("ix_conveyor_webhook_deliveries_at", table_name="conveyor_webhook_deliveries")
    op.drop_index("ix_conveyor_webhook_deliveries_webhook", table_name="conveyor_webhook_deliveries")
    op.drop_table("conveyor_webhook_deliveries")
    op.drop_table("conveyor_webhook_events")
    op.drop_index("ix_conveyor_webhooks_org", table_name="conveyor_webhooks")
    op.drop_table("conveyor_webhooks")
