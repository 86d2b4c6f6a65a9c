"""Job-creation rate windows, shared by every API process.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

from conveyor.store.schema import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conveyor_rate_windows",
        sa.Column("principal", sa.String(length=500), nullable=False),
        sa.Column("seconds", sa.Integer(), nullable=False),
        sa.Column("window_start", UTCDateTime(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("principal", "seconds", "window_start"),
    )
    op.create_index("ix_conveyor_rate_windows_start", "conveyor_rate_windows", ["window_start"])


def downgrade() -> None:
    op.drop_index("ix_conveyor_rate_windows_start", table_name="conveyor_rate_windows")
    op.drop_table("conveyor_rate_windows")
