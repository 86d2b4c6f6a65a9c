"""Indexes for the jobs list's sort keys (priority, status, type, run_at, finish time).

The list orders by (key, created_at, id) and pages past a cursor with the row value
`(key, created_at, id) > (…)` (conveyor/store/ordering.py). With a million jobs on PostgreSQL
(python -m bench.list_plans) every such page sorted the whole table (200-450 ms, a Seq Scan and
a Sort) where no index began with the key, and where one began with the key and created_at
but lacked id the planner sometimes chose the same (descending by status or type past a deep
cursor: 240-1,000 ms). An index on all three columns answers each page with one Index Scan in
order, in under a millisecond; status and type's two-column indexes gain id in place (every
query that used them uses the prefix still). created_at keeps its one-column index: the page
past a creation-time cursor uses it with an incremental sort of equal times, under 0.2 ms.

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

NEW = {
    "ix_conveyor_jobs_priority_created": "priority",
    "ix_conveyor_jobs_run_at_created": "run_at",
    "ix_conveyor_jobs_completed_created": "completed_at",
}
WIDENED = {"ix_conveyor_jobs_status_created": "status", "ix_conveyor_jobs_kind_created": "kind"}


def upgrade() -> None:
    for name, column in NEW.items():
        op.create_index(name, "conveyor_jobs", [column, "created_at", "id"])
    for name, column in WIDENED.items():
        op.drop_index(name, table_name="conveyor_jobs")
        op.create_index(name, "conveyor_jobs", [column, "created_at", "id"])


def downgrade() -> None:
    for name, column in WIDENED.items():
        op.drop_index(name, table_name="conveyor_jobs")
        op.create_index(name, "conveyor_jobs", [column, "created_at"])
    for name in NEW:
        op.drop_index(name, table_name="conveyor_jobs")
