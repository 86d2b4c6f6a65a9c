"""Job counters; the drug interaction table, its synonyms and the history of its loads.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

from conveyor.store.schema import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "conveyor_job_counters",
        sa.Column("id", _SERIAL, autoincrement=True, nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.String(length=200), nullable=True),
        sa.Column("kind", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_conveyor_job_counters_org_name_at", "conveyor_job_counters", ["org_id", "name", "recorded_at"])
    op.create_table(
        "conveyor_interaction_tables",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.String(length=100), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("pairs", sa.Integer(), nullable=False),
        sa.Column("synonyms", sa.Integer(), nullable=False),
        sa.Column("loaded_at", UTCDateTime(), nullable=False),
        sa.Column("loaded_by", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "conveyor_interactions",
        sa.Column("drug_a", sa.String(length=200), nullable=False),
        sa.Column("drug_b", sa.String(length=200), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("mechanism", sa.Text(), nullable=True),
        sa.Column("management", sa.Text(), nullable=True),
        sa.Column("evidence", sa.Text(), nullable=True),
        sa.Column("source", sa.String(length=500), nullable=True),
        sa.Column("source_version", sa.String(length=100), nullable=True),
        sa.Column("last_reviewed", sa.String(length=10), nullable=True),
        sa.PrimaryKeyConstraint("drug_a", "drug_b"),
    )
    op.create_table(
        "conveyor_interaction_synonyms",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("ingredient", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("conveyor_interaction_synonyms")
    op.drop_table("conveyor_interactions")
    op.drop_table("conveyor_interaction_tables")
    op.drop_index("ix_conveyor_job_counters_org_name_at", table_name="conveyor_job_counters")
    op.drop_table("conveyor_job_counters")
