"""The jobs an audit record names in a list, one row each (conveyor_audit_subjects).

A bulk enqueue's job.created, a worker's job.completed (one record per statement and
organisation), a batch.created and a list page's job.read name their jobs in `after.jobIds`,
not in object_id: a job's page asking for the records about it missed them, and finding them
in the JSON would read every record. The sealer now writes (job_id, seq) for each with the
record; this fills the table for the records already chained.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# Only records with a list are opened (a JSON function on any other value would fail).
BACKFILL = {
    "postgresql": """
        INSERT INTO conveyor_audit_subjects (job_id, seq)
        SELECT DISTINCT named.job_id, listing.seq
        FROM (SELECT seq, after -> 'jobIds' AS ids FROM conveyor_audit
              WHERE jsonb_typeof(after -> 'jobIds') = 'array' OFFSET 0) AS listing,
             jsonb_array_elements_text(listing.ids) AS named(job_id)
    """,
    "sqlite": """
        INSERT INTO conveyor_audit_subjects (job_id, seq)
        SELECT DISTINCT named.value, listing.seq
        FROM (SELECT seq, json_extract(after, '$.jobIds') AS ids FROM conveyor_audit
              WHERE json_type(after, '$.jobIds') = 'array' LIMIT -1) AS listing,
             json_each(listing.ids) AS named
        WHERE named.type = 'text'
    """,
}


def upgrade() -> None:
    op.create_table(
        "conveyor_audit_subjects",
        sa.Column("job_id", sa.String(200), primary_key=True),
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
    )
    op.execute(BACKFILL[op.get_bind().dialect.name])


def downgrade() -> None:
    op.drop_table("conveyor_audit_subjects")
