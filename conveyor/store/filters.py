"""A JobFilter as SQL: one translation for the jobs table and for the roll-up tables.

The roll-ups (rollups.py) keep some of a job's columns under other names and lack others;
`FilterColumns` says which column stands for what, and a filter that needs a column a table
lacks cannot be answered there (None), so that the caller counts the jobs table instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from conveyor.model import JobFilter, Status, Visibility
from conveyor.store.schema import job_counts, job_minutes, jobs

Column = Any  # a SQLAlchemy column
STATUS_VALUES = tuple(status.value for status in Status)  # every status, as stored


@dataclass(frozen=True, slots=True)
class FilterColumns:
    status: Column
    kind: Column
    queue: Column
    org_id: Column
    user_id: Column
    study_id: Column
    priority: Column | None = None
    created_at: Column | None = None
    batch_id: Column | None = None
    labels: Column | None = None


JOB_COLUMNS = FilterColumns(
    status=jobs.c.status,
    kind=jobs.c.kind,
    queue=jobs.c.queue,
    org_id=jobs.c.owner_org_id,
    user_id=jobs.c.owner_user_id,
    study_id=jobs.c.owner_study_id,
    priority=jobs.c.priority,
    created_at=jobs.c.created_at,
    batch_id=jobs.c.batch_id,
    labels=jobs.c.labels,
)


def rollup_columns(table: sa.Table) -> FilterColumns:
    c = table.c
    return FilterColumns(
        status=c.status,
        kind=c.kind,
        queue=c.queue,
        org_id=c.org_id,
        user_id=c.user_id,
        study_id=c.study_id,
        priority=c.get("priority"),
    )


COUNT_COLUMNS = rollup_columns(job_counts)
MINUTE_COLUMNS = rollup_columns(job_minutes)


def clauses_for(where: JobFilter, cols: FilterColumns) -> list[sa.ColumnElement[bool]] | None:
    """The WHERE clauses of `where` over a table with `cols`; None if it lacks one needed."""
    needed = [
        (where.priorities, cols.priority),
        (where.created_after or where.created_before, cols.created_at),
        (where.batch_id is not None, cols.batch_id),
        (where.labels, cols.labels),
    ]
    if any(wanted and column is None for wanted, column in needed):
        return None
    clauses: list[sa.ColumnElement[bool]] = []
    if where.statuses:
        clauses.append(cols.status.in_([s.value for s in where.statuses]))
    if where.kinds:
        clauses.append(cols.kind.in_(where.kinds))
    if where.queues:
        clauses.append(cols.queue.in_(where.queues))
    if where.priorities:
        clauses.append(cols.priority.in_(where.priorities))
    if (where.created_after or where.created_before) and not where.statuses:
        # Every status, named: a time window is then read through (status, created_at).
        clauses.append(cols.status.in_(STATUS_VALUES))
    if where.created_after:
        clauses.append(cols.created_at >= where.created_after)
    if where.created_before:
        clauses.append(cols.created_at < where.created_before)
    if where.owner_user_id is not None:
        clauses.append(cols.user_id == where.owner_user_id)
    if where.owner_org_id is not None:
        clauses.append(cols.org_id == where.owner_org_id)
    if where.batch_id is not None:
        clauses.append(cols.batch_id == where.batch_id)
    for key, value in where.labels.items():
        clauses.append(cols.labels[key].as_string() == value)
    if where.visible_to is not None:
        clauses.extend(scope_clauses(where.visible_to, cols.org_id, cols.study_id, cols.user_id))
    return clauses


def scope_clauses(scope: Visibility, org_id: Column, study_id: Column, user_id: Column) -> list[sa.ColumnElement[bool]]:
    """What `scope` may see, over a table's owner columns (jobs, schedules). The rule itself
    is access.Principal.visibility's; this is its SQL."""
    clauses = [org_id.is_(None) if scope.org_id is None else org_id == scope.org_id]
    if scope.study_id is not None:
        clauses.append(study_id == scope.study_id)
    if scope.user_id is not None:
        clauses.append(user_id == scope.user_id)
    return clauses


def filter_clauses(where: JobFilter) -> list[sa.ColumnElement[bool]]:
    """The WHERE clauses of `where` over the jobs table (which has every column)."""
    clauses = clauses_for(where, JOB_COLUMNS)
    # type narrowing: JOB_COLUMNS has every column clauses_for asks (bandit B101)
    assert clauses is not None  # nosec B101
    return clauses
