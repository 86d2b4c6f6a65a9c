"""A job listing's order (JobOrder) as SQL, and the keyset pages it walks.

Every order is (sort column, created_at, id), all in one direction, so an index on (column,
created_at) yields the rows already in order and a page past a cursor starts with an index
seek on the row value `(column, created_at, id) > (v, at, id)`. The jobs table has such
indexes for status and type only (creation time over every status: below); priority, due
time and finish time sort the matching rows (190-470 ms with a million jobs and no filter),
because an index per sort key would cost every enqueue, claim and outcome write an entry
(with three more, bulk enqueue's server side took half again its instructions per row).

completed_at is NULL until a job finishes, and a row value with a NULL in it compares to
nothing; such a job sorts as later than every finished one (PostgreSQL's own place for NULL
in an index: last ascending, first descending). A page past a cursor is therefore read in up
to two segments, the finished jobs and the unfinished ones, each an index range of its own
rather than one OR that would make the database filter its way through the index.

Creation order over every status has no index of its own (each job stored, claimed or
finished would write an entry into it): a page of it is read from (status, created_at), a
page per status, merged and cut to size (`page`), as quick with a million jobs as one index
would be. A filter with an index of its own in creation order (type, organisation, user,
batch) is read through that index instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from conveyor.model import JobFilter, JobOrder
from conveyor.store.filters import STATUS_VALUES
from conveyor.store.schema import jobs

COLUMNS = {
    "created": jobs.c.created_at,
    "priority": jobs.c.priority,
    "status": jobs.c.status,
    "type": jobs.c.kind,
    "run_at": jobs.c.run_at,
    "finished": jobs.c.completed_at,
}
NULLABLE = {"finished"}

# Where a page starts: the last job of the previous page's sort value, created_at and id.
After = tuple[Any, datetime, UUID]


@dataclass(frozen=True, slots=True)
class Segment:
    """One range of a page: extra conditions and the order to read it in."""

    where: Sequence[Any]
    order_by: Sequence[Any]


def _tail(descending: bool, c: Any = jobs.c) -> list[Any]:
    return [c.created_at.desc(), c.id.desc()] if descending else [c.created_at.asc(), c.id.asc()]


def reads_by_status(order: JobOrder, where: JobFilter) -> bool:
    """Whether a listing in `order` matching `where` is read a status at a time (see the
    module's docstring): creation order, no status asked for, and no filter read through an
    index of its own."""
    if order.key != "created" or where.statuses or where.kinds or where.batch_id is not None:
        return False
    if where.owner_user_id is not None or where.owner_org_id is not None:
        return False
    scope = where.visible_to
    return scope is None or (scope.org_id is None and scope.user_id is None)


def page(
    clauses: Sequence[Any], order: JobOrder, segment: Segment, *, limit: int, offset: int, by_status: bool
) -> sa.Select[Any]:
    """The statement for `limit` jobs of `segment` past `offset`, matching `clauses`."""
    if not by_status:
        return sa.select(jobs).where(*clauses, *segment.where).order_by(*segment.order_by).limit(limit).offset(offset)
    # Each status's first limit + offset rows in order: the page is among them.
    ranges = [
        sa.select(jobs)
        .where(*clauses, *segment.where, jobs.c.status == status)
        .order_by(*segment.order_by)
        .limit(limit + offset)
        .subquery()
        for status in STATUS_VALUES
    ]
    merged = sa.union_all(*(sa.select(r) for r in ranges)).subquery()
    return sa.select(merged).order_by(*_tail(order.descending, merged.c)).limit(limit).offset(offset)


def order_by(order: JobOrder) -> list[Any]:
    """The whole ORDER BY of a listing in `order` (its NULLs where segments() expects them)."""
    column = COLUMNS[order.key]
    if order.key == "created":
        return _tail(order.descending)
    if order.key in NULLABLE:
        head = column.desc().nulls_first() if order.descending else column.asc().nulls_last()
    else:
        head = column.desc() if order.descending else column.asc()
    return [head, *_tail(order.descending)]


def segments(order: JobOrder, after: After | None) -> list[Segment]:
    """The ranges that make up a page in `order`, read one after the other until it is full:
    one, except past a cursor in a nullable order (see the module's docstring)."""
    if after is None:
        return [Segment((), order_by(order))]
    value, at, last_id = after
    column = COLUMNS[order.key]
    c = jobs.c
    past = (lambda a, b: a < b) if order.descending else (lambda a, b: a > b)
    if order.key == "created":
        return [Segment([past(sa.tuple_(c.created_at, c.id), sa.tuple_(at, last_id))], _tail(order.descending))]
    if order.key not in NULLABLE:
        return [Segment([past(sa.tuple_(column, c.created_at, c.id), sa.tuple_(value, at, last_id))], order_by(order))]
    finished = Segment(
        [column.is_not(None), past(sa.tuple_(column, c.created_at, c.id), sa.tuple_(value, at, last_id))],
        [column.desc() if order.descending else column.asc(), *_tail(order.descending)],
    )
    unfinished_past = Segment(
        [column.is_(None), past(sa.tuple_(c.created_at, c.id), sa.tuple_(at, last_id))], _tail(order.descending)
    )
    every_finished = Segment([column.is_not(None)], finished.order_by)
    if value is None:
        # past an unfinished job: the rest of the unfinished, then (descending) every finished one
        return [unfinished_past, every_finished] if order.descending else [unfinished_past]
    # past a finished job: the rest of the finished, then (ascending) every unfinished one
    all_unfinished = Segment([column.is_(None)], _tail(order.descending))
    return [finished] if order.descending else [finished, all_unfinished]
