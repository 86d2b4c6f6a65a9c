"""Roll-ups: job counts and per-minute activity, kept by triggers on PostgreSQL.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from conveyor.store.schema import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

KEYS = "owner_org_id, owner_user_id, owner_study_id, kind, queue"

# Statement-level triggers with transition tables: one INSERT of grouped deltas per statement,
# however many rows it touched. Only status changes count (heartbeats and progress writes,
# which change no status, add nothing).
# column names from a constant, no input (bandit B608)
TRIGGERS = f"""
CREATE FUNCTION conveyor_count_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO conveyor_job_counts (org_id, user_id, study_id, kind, queue, priority, status, n)
    SELECT {KEYS}, priority, status, count(*) FROM new_rows GROUP BY {KEYS}, priority, status;
    RETURN NULL;
END $$;

CREATE FUNCTION conveyor_count_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO conveyor_job_counts (org_id, user_id, study_id, kind, queue, priority, status, n)
    SELECT {KEYS}, priority, status, -count(*) FROM old_rows GROUP BY {KEYS}, priority, status;
    RETURN NULL;
END $$;

CREATE FUNCTION conveyor_count_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH changed AS (
        SELECT o.status AS old_status, n.*
        FROM old_rows AS o JOIN new_rows AS n ON n.id = o.id
        WHERE o.status <> n.status
    ),
    counted AS (
        INSERT INTO conveyor_job_counts (org_id, user_id, study_id, kind, queue, priority, status, n)
        SELECT {KEYS}, priority, s, sum(d) FROM (
            SELECT {KEYS}, priority, old_status AS s, -1 AS d FROM changed
            UNION ALL
            SELECT {KEYS}, priority, status AS s, 1 AS d FROM changed
        ) AS deltas
        GROUP BY {KEYS}, priority, s
        HAVING sum(d) <> 0
    )
    INSERT INTO conveyor_job_minutes (minute, org_id, user_id, study_id, kind, queue, status, n, seconds)
    SELECT date_trunc('minute', completed_at), {KEYS}, status, count(*),
           coalesce(sum(extract(epoch FROM completed_at - started_at)), 0)
    FROM changed
    WHERE status IN ('completed', 'failed', 'cancelled', 'timeout') AND completed_at IS NOT NULL
    GROUP BY date_trunc('minute', completed_at), {KEYS}, status;
    RETURN NULL;
END $$;

CREATE TRIGGER conveyor_jobs_count_insert AFTER INSERT ON conveyor_jobs
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION conveyor_count_inserted();
CREATE TRIGGER conveyor_jobs_count_delete AFTER DELETE ON conveyor_jobs
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION conveyor_count_deleted();
CREATE TRIGGER conveyor_jobs_count_update AFTER UPDATE ON conveyor_jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION conveyor_count_updated();

-- Jobs stored before the roll-up existed.
INSERT INTO conveyor_job_counts (org_id, user_id, study_id, kind, queue, priority, status, n)
SELECT {KEYS}, priority, status, count(*) FROM conveyor_jobs GROUP BY {KEYS}, priority, status;
"""  # nosec B608

DROP_TRIGGERS = """
DROP TRIGGER IF EXISTS conveyor_jobs_count_insert ON conveyor_jobs;
DROP TRIGGER IF EXISTS conveyor_jobs_count_delete ON conveyor_jobs;
DROP TRIGGER IF EXISTS conveyor_jobs_count_update ON conveyor_jobs;
DROP FUNCTION IF EXISTS conveyor_count_inserted();
DROP FUNCTION IF EXISTS conveyor_count_deleted();
DROP FUNCTION IF EXISTS conveyor_count_updated();
"""


def upgrade() -> None:
    op.create_table(
        "conveyor_job_counts",
        sa.Column("org_id", sa.String(length=200), nullable=True),
        sa.Column("user_id", sa.String(length=200), nullable=True),
        sa.Column("study_id", sa.String(length=200), nullable=True),
        sa.Column("kind", sa.String(length=200), nullable=False),
        sa.Column("queue", sa.String(length=100), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "conveyor_job_minutes",
        sa.Column("minute", UTCDateTime(), nullable=False),
        sa.Column("org_id", sa.String(length=200), nullable=True),
        sa.Column("user_id", sa.String(length=200), nullable=True),
        sa.Column("study_id", sa.String(length=200), nullable=True),
        sa.Column("kind", sa.String(length=200), nullable=False),
        sa.Column("queue", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("running_peak", sa.Integer(), server_default="0", nullable=False),
    )
    op.create_index("ix_conveyor_job_minutes_minute", "conveyor_job_minutes", ["minute"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(TRIGGERS)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(DROP_TRIGGERS)
    op.drop_index("ix_conveyor_job_minutes_minute", table_name="conveyor_job_minutes")
    op.drop_table("conveyor_job_minutes")
    op.drop_table("conveyor_job_counts")
