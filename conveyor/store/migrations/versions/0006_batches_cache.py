"""Batches (parallel_limit, fail_fast) and the result cache's entries.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from conveyor.store.schema import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conveyor_batches",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("parallel_limit", sa.Integer(), nullable=True),
        sa.Column("fail_fast", sa.Boolean(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("owner_user_id", sa.String(length=200), nullable=True),
        sa.Column("owner_org_id", sa.String(length=200), nullable=True),
        sa.Column("owner_study_id", sa.String(length=200), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("cancelled_at", UTCDateTime(), nullable=True),
        sa.Column("cancel_reason", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_conveyor_batches_org_created", "conveyor_batches", ["owner_org_id", "created_at"])
    op.create_table(
        "conveyor_cache_entries",
        sa.Column("scope", sa.String(length=700), nullable=False),
        sa.Column("kind", sa.String(length=200), nullable=False),
        sa.Column("cache_key", sa.String(length=500), nullable=False),
        sa.Column("org_id", sa.String(length=200), nullable=True),
        sa.Column("study_id", sa.String(length=200), nullable=True),
        sa.Column("user_id", sa.String(length=200), nullable=True),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("hits", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("misses", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "kind", "cache_key"),
    )
    op.create_index("ix_conveyor_cache_entries_org", "conveyor_cache_entries", ["org_id"])


def downgrade() -> None:
    op.drop_index("ix_conveyor_cache_entries_org", table_name="conveyor_cache_entries")
    op.drop_table("conveyor_cache_entries")
    op.drop_index("ix_conveyor_batches_org_created", table_name="conveyor_batches")
    op.drop_table("conveyor_batches")
