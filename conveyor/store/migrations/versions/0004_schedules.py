"""Schedules (cron and interval) and the leader leases that elect one scheduler.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from conveyor.store.schema import Json, UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conveyor_schedules",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=200), nullable=False),
        sa.Column("data", Json, nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=True),
        sa.Column("queue", sa.String(length=100), nullable=True),
        sa.Column("cron", sa.String(length=200), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("interval_seconds", sa.Float(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("missed_policy", sa.String(length=16), nullable=False),
        sa.Column("owner_user_id", sa.String(length=200), nullable=True),
        sa.Column("owner_org_id", sa.String(length=200), nullable=True),
        sa.Column("owner_study_id", sa.String(length=200), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("last_run_at", UTCDateTime(), nullable=True),
        sa.Column("next_run_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_conveyor_schedules_next_run", "conveyor_schedules", ["next_run_at"])
    op.create_index("ix_conveyor_schedules_org_created", "conveyor_schedules", ["owner_org_id", "created_at"])
    op.create_table(
        "conveyor_leaders",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("elected_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("conveyor_leaders")
    op.drop_index("ix_conveyor_schedules_org_created", table_name="conveyor_schedules")
    op.drop_index("ix_conveyor_schedules_next_run", table_name="conveyor_schedules")
    op.drop_table("conveyor_schedules")
