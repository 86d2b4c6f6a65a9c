"""Batches: many jobs submitted as one, run at most `parallel_limit` at a time across every
worker, and cancelled together — by hand, or with `fail_fast` by the first failure.

`Batches` is what edges call (submit, get, list, cancel), with the same visibility rule as
jobs. The limit is kept by the store (store/batches.py): jobs beyond it wait as `scheduled`
(model.HELD_UNTIL) and are released one for each member that finishes, so the claim — the
hot path of every job — does not change at all.

Seed 003's `POST /api/v1/calibrate/batch` maps onto `submit` (`batch_name`, `parallel_limit`,
`fail_fast`, one JobRequest per calibration) and its `/batch/{id}/status` onto `get`
(`counts`, each job's status, `status`).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from conveyor.engine import Engine, JobRequest
from conveyor.errors import (
    BatchNotCancellable,
    BatchNotFound,
    InvalidBatch,
    InvalidJobData,
    InvalidJobOptions,
    UnknownJobType,
)
from conveyor.model import FINISHED, HELD_UNTIL, NewJob, Owner, Status, Visibility, new_job_id, utc_now
from conveyor.storable import text_problem
from conveyor.store.batches import Batch, BatchMember

DEFAULT_MAX_SIZE = 50
MAX_PARALLEL_LIMIT = 10_000


class BatchStatus:
    """A batch's overall status, from its jobs' (in this order):

    - `pending`: no job has started yet;
    - `running`: some job has started or finished, and some has not finished;
    - once every job has finished: `failed` if any failed or timed out, else `cancelled` if
      any was cancelled, else `completed`.
    """

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


def overall_status(members: Sequence[BatchMember]) -> str:
    statuses = {m.status for m in members}
    if not statuses <= FINISHED:
        untouched = statuses <= {Status.SCHEDULED, Status.PENDING} and not any(m.started_at for m in members)
        return BatchStatus.PENDING if untouched else BatchStatus.RUNNING
    if statuses & {Status.FAILED, Status.TIMEOUT}:
        return BatchStatus.FAILED
    if Status.CANCELLED in statuses:
        return BatchStatus.CANCELLED
    return BatchStatus.COMPLETED


@dataclass(frozen=True, slots=True)
class BatchView:
    """A batch with its jobs: what the edges show."""

    batch: Batch
    jobs: list[BatchMember]

    @property
    def status(self) -> str:
        return overall_status(self.jobs)

    @property
    def counts(self) -> dict[str, int]:
        """Jobs by status (every status, zeros included); `waiting_for_slot` counts the
        scheduled ones that wait for a slot under the parallel limit."""
        by_status = Counter(m.status for m in self.jobs)
        return {s.value: by_status[s] for s in Status} | {"waiting_for_slot": sum(m.held for m in self.jobs)}

    @property
    def total(self) -> int:
        return len(self.jobs)


def describe(view: BatchView) -> dict[str, Any]:
    """A batch as the CLI shows it (snake_case; datetimes left to the edge)."""
    b = view.batch
    return {
        "id": str(b.id),
        "name": b.name,
        "status": view.status,
        "parallel_limit": b.parallel_limit,
        "fail_fast": b.fail_fast,
        "total": view.total,
        "counts": view.counts,
        "created_at": b.created_at,
        "cancelled_at": b.cancelled_at,
        "cancel_reason": b.cancel_reason,
        "owner": dataclasses.asdict(b.owner),
        "jobs": [
            {"id": str(m.id), "type": m.kind, "status": m.status.value, "waiting_for_slot": m.held} for m in view.jobs
        ],
    }


class Batches:
    """Example::

    view = await conveyor.batches.submit(
        "Multi-country comparison",
        [JobRequest("calibration", {"country": c}) for c in ("Kenya", "Mozambique")],
        parallel_limit=3,
        fail_fast=True,
    )
    view.batch.id, [job.id for job in view.jobs], view.status
    """

    def __init__(self, engine: Engine, *, max_size: int = DEFAULT_MAX_SIZE) -> None:
        if max_size < 1:
            raise ValueError("a batch's max_size must be at least 1")
        self.engine = engine
        self.store = engine.store
        self.max_size = max_size

    # --- submit ---------------------------------------------------------------------------------

    async def submit(
        self,
        name: str,
        requests: Sequence[JobRequest],
        *,
        parallel_limit: int | None = None,
        fail_fast: bool = False,
        owner: Owner | None = None,
    ) -> BatchView:
        """Store the batch and all its jobs in one transaction, or nothing: every job is
        validated first (errors name `jobs.<index>.…`). The jobs take the batch's owner;
        those beyond `parallel_limit` (highest priority first) wait for a slot."""
        name = self._check(name, requests, parallel_limit, fail_fast)
        owner = owner or Owner()
        batch_id = new_job_id()
        now = utc_now()
        plans: dict[tuple[Any, ...], Any] = {}
        new_jobs = [
            self._prepare(i, dataclasses.replace(r, owner=owner, batch_id=batch_id), now, plans)
            for i, r in enumerate(requests)
        ]
        if parallel_limit is not None:
            hold(sorted(new_jobs, key=lambda n: -n.priority)[parallel_limit:])  # stable: ties in order
        batch = Batch(
            id=batch_id,
            name=name,
            parallel_limit=parallel_limit,
            fail_fast=fail_fast,
            size=len(new_jobs),
            owner=owner,
            created_at=now,
        )
        await self.store.insert_batch(batch, new_jobs)  # each job's job.created goes in with it
        after = {
            "name": name,
            "parallelLimit": parallel_limit,
            "failFast": fail_fast,
            "jobIds": [str(n.id) for n in new_jobs],
        }
        await self.engine.audit.record("batch.created", "batch", batch_id, after=after, org_id=owner.org_id)
        return await self.get(batch_id)

    def _check(self, name: str, requests: Sequence[JobRequest], parallel_limit: int | None, fail_fast: bool) -> str:
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 200 or text_problem(name):
            raise InvalidBatch("name must be 1-200 characters of text", field="name")
        if not requests:
            raise InvalidBatch("a batch needs at least one job", field="jobs")
        if len(requests) > self.max_size:
            raise InvalidBatch(
                f"a batch holds at most {self.max_size} jobs (BATCH_MAX_SIZE); this one has {len(requests)}",
                field="jobs",
            )
        if parallel_limit is not None and (
            isinstance(parallel_limit, bool)
            or not isinstance(parallel_limit, int)
            or not 1 <= parallel_limit <= MAX_PARALLEL_LIMIT
        ):
            raise InvalidBatch(
                f"parallel_limit must be an integer 1-{MAX_PARALLEL_LIMIT}, or none", field="parallel_limit"
            )
        if not isinstance(fail_fast, bool):
            raise InvalidBatch("fail_fast must be true or false", field="fail_fast")
        for i, request in enumerate(requests):
            for option in ("idempotency_key", "run_at", "delay"):
                if getattr(request, option) is not None:
                    raise InvalidBatch(
                        f"jobs of a batch start as their batch allows: no {option}", field=f"jobs.{i}.{option}"
                    )
        return name.strip()

    def _prepare(self, index: int, request: JobRequest, now: Any, plans: dict[tuple[Any, ...], Any]) -> NewJob:
        """One job validated as an enqueue is, its errors named as the batch's `jobs.<index>`."""
        try:
            return self.engine.prepare(request, now=now, plans=plans)
        except InvalidJobData as exc:
            errors = [
                {**e, "field": f"jobs.{index}.data" + (f".{e['field']}" if e["field"] else "")} for e in exc.errors
            ]
            raise InvalidJobData(exc.kind, errors) from None
        except InvalidJobOptions as exc:
            raise InvalidJobOptions(exc.message, field=f"jobs.{index}.{exc.details.get('field')}") from None
        except UnknownJobType as exc:
            exc.details["field"] = f"jobs.{index}.type"
            raise

    # --- reads ----------------------------------------------------------------------------------

    async def get(self, batch_id: UUID, *, visible_to: Visibility | None = None) -> BatchView:
        """The batch with its jobs; BatchNotFound also when it lies outside `visible_to`."""
        # The jobs first, then the batch: a fail_fast cancel that the jobs show is then in the
        # batch row too (both are written in one transaction), whatever commits in between.
        members = await self.store.batch_members([batch_id])
        batch = await self.store.get_batch(batch_id)
        if batch is None or (visible_to is not None and not visible_to.allows(batch.owner)):
            raise BatchNotFound(batch_id)
        return BatchView(batch, members.get(batch_id, []))

    async def list(
        self, *, visible_to: Visibility | None = None, limit: int = 20, offset: int = 0
    ) -> tuple[list[BatchView], int]:
        """A page of the batches `visible_to` may see, newest first, and how many in all."""
        found, total = await self.store.list_batches(visible_to=visible_to, limit=limit, offset=offset)
        members = await self.store.batch_members([b.id for b in found]) if found else {}
        return [BatchView(b, members[b.id]) for b in found], total

    # --- cancel ---------------------------------------------------------------------------------

    async def cancel(self, batch_id: UUID, *, visible_to: Visibility | None = None) -> BatchView:
        """Cancel what has not finished: waiting jobs at once, running ones at their next
        checkpoint. A batch whose jobs have all finished is refused (BatchNotCancellable)."""
        view = await self.get(batch_id, visible_to=visible_to)
        if all(m.status in FINISHED for m in view.jobs):
            raise BatchNotCancellable(batch_id, view.status)
        done = await self.store.cancel_batch(batch_id)
        if done is None:
            raise BatchNotFound(batch_id)
        after = {"cancelled": [str(i) for i in done.cancelled], "stopRequested": [str(i) for i in done.stop_requested]}
        await self.engine.audit.record(
            "batch.cancelled", "batch", batch_id, before={"status": view.status}, after=after,
            org_id=view.batch.owner.org_id,
        )  # fmt: skip
        return await self.get(batch_id)


def hold(new_jobs: Sequence[NewJob]) -> None:
    """These jobs wait for a slot in their batch (see model.HELD_UNTIL)."""
    for new in new_jobs:
        new.status = Status.SCHEDULED
        new.run_at = HELD_UNTIL
