"""Pack state (sealed key/value documents per owner scope) and notifications.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

from conveyor.store.schema import Json, UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conveyor_pack_state",
        sa.Column("scope", sa.String(length=200), nullable=False),
        sa.Column("namespace", sa.String(length=100), nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("value", Json, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "namespace", "key"),
    )
    op.create_table(
        "conveyor_notifications",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.String(length=200), nullable=True),
        sa.Column("study_id", sa.String(length=200), nullable=True),
        sa.Column("user_id", sa.String(length=200), nullable=True),
        sa.Column("kind", sa.String(length=100), nullable=False),
        sa.Column("body", Json, nullable=False),
        sa.Column("delivery_key", sa.String(length=300), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("read_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("delivery_key", name="uq_conveyor_notifications_delivery"),
    )
    op.create_index("ix_conveyor_notifications_owner", "conveyor_notifications", ["org_id", "user_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_conveyor_notifications_owner", table_name="conveyor_notifications")
    op.drop_table("conveyor_notifications")
    op.drop_table("conveyor_pack_state")
