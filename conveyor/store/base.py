"""The seam between conveyor and a database: every operation the core may ask of one."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from conveyor.audit import AuditEntry
from conveyor.model import (
    Job,
    JobFilter,
    JobOrder,
    LogEntry,
    LogLevel,
    NewJob,
    Outcome,
    Owner,
    ProgressUpdate,
)

# A notification: (topic, payload). Topics: "insert" (payload: queue name), "cancel"
# (payload: job id), "finish" (payload: job id).
Listener = Callable[[str, str], None]
TOPICS = ("insert", "cancel", "finish")


class Store(Protocol):
    """Batch-first; each call is one transaction. Methods that change a running job are
    told which attempt on which worker they apply to, and do nothing otherwise."""

    dialect: str

    async def migrate(self) -> None:
        """Bring the schema to the newest revision (safe when several processes start at once)."""

    async def connect(self) -> None:
        """Open the connections every process uses, so that the first call waits for no
        handshake (a store also connects on first use when this was not called)."""

    async def close(self) -> None: ...

    async def listen(self, listener: Listener, topics: Collection[str] = TOPICS) -> None:
        """Deliver notifications of `topics`, from this process and (PostgreSQL) every other, to
        `listener` (registered once however often it is given; later calls add topics). Other
        topics may be delivered too; a process hears other processes only on topics asked for."""

    @property
    def notifies_across_processes(self) -> bool:
        """True where other processes' inserts wake us without polling (LISTEN/NOTIFY)."""

    async def insert_jobs(self, jobs: Sequence[NewJob], *, also: Sequence[AuditEntry] = ()) -> list[tuple[Job, bool]]:
        """Insert in one transaction. A job whose idempotency key exists already is not
        inserted: the existing job comes back instead, with False. `also`: audit records
        journaled in that transaction when any job was inserted (a retry's job.retried)."""

    async def insert_batches(self, batches: Iterable[Sequence[NewJob]]) -> list[Job]:
        """Insert jobs without idempotency keys, all in one transaction. `batches` may be lazy:
        a store may write one batch while the next is made, and if making one raises,
        nothing is stored."""

    async def get_job(self, job_id: UUID) -> Job | None: ...

    async def list_jobs(
        self,
        where: JobFilter,
        *,
        limit: int,
        offset: int,
        newest_first: bool = True,
        after: tuple[Any, datetime, UUID] | None = None,
        order: JobOrder | None = None,
    ) -> tuple[list[Job], int]:
        """A page of jobs matching `where` in `order` (default: by creation, newest first as
        `newest_first` says), and how many match in all. `after` (a job's value of the sort
        key, created_at and id) starts the page past that job, in the listing's order."""

    async def changed_owners(
        self, job_ids: Sequence[str], queues: Sequence[str], since: datetime
    ) -> tuple[set[Owner], set[str]]:
        """The owners of the jobs `job_ids` names and of those created at or after `since` in
        `queues`, and which of `queues` had such jobs."""

    async def count_jobs(self, where: JobFilter, by: str = "status") -> dict[str, int]:
        """How many jobs match, grouped by one column (status, kind, priority, queue)."""

    async def claim_jobs(self, queues: Sequence[str], limit: int, worker_id: str, lease: timedelta) -> list[Job]:
        """Move up to `limit` pending jobs, highest priority then oldest first, to running
        under `worker_id` with a lease; no job is ever handed to two claimers."""

    async def heartbeat(
        self, worker_id: str, job_ids: Sequence[UUID], lease: timedelta
    ) -> dict[UUID, tuple[int, bool]]:
        """Extend the leases of `job_ids` still running on `worker_id`; returns {id: (attempt,
        cancel_requested)} for those, so the worker learns of cancels and lost leases. Only
        the jobs the worker names: one claimed for it whose claim's answer never reached it
        (the connection cut after the commit) must not be kept alive by its heartbeats, but
        run out its lease and be rescued."""

    async def flush(
        self,
        outcomes: Sequence[Outcome] = (),
        progress: Sequence[ProgressUpdate] = (),
        logs: Sequence[LogEntry] = (),
    ) -> list[UUID]:
        """Write logs, progress and outcomes in one transaction; returns the ids of the jobs
        whose outcome was applied (the attempt was still theirs)."""

    async def request_cancel(
        self, job_id: UUID, records: Callable[[Job], Sequence[AuditEntry]] | None = None
    ) -> tuple[Job | None, bool]:
        """Cancel a scheduled or pending job at once, or flag a running one. Returns the job
        as it is afterwards (None when it does not exist) and whether anything was done.
        `records`: the audit records of the job as changed, journaled in the same transaction."""

    async def delete_job(
        self, job_id: UUID, records: Callable[[Job], Sequence[AuditEntry]] | None = None
    ) -> tuple[Job | None, bool]:
        """Delete a job that is not running, with its log lines. Returns the job as it was
        (None when it does not exist) and whether it was deleted (False: it is running).
        `records`: the audit records of the deleted job, journaled in the same transaction."""

    async def stage_due(self, now: datetime | None = None) -> int:
        """scheduled -> pending for jobs whose run_at has come; returns how many."""

    async def rescue_expired(self, now: datetime | None = None) -> list[UUID]:
        """Running jobs whose lease expired (their worker died): back to pending, or failed
        when out of attempts, or cancelled when that was asked. Returns their ids."""

    async def get_logs(
        self, job_id: UUID, *, min_level: LogLevel | None, limit: int, offset: int
    ) -> tuple[list[LogEntry], int]: ...

    async def settle_batches(self, batch_ids: Iterable[UUID]) -> None:
        """For each batch: with fail_fast, once a member has failed or timed out, cancel the
        rest; otherwise release members waiting for a slot while fewer than its parallel_limit
        hold one. Idempotent; the batches' other operations are in store/batches.py."""

    async def attempts_held(self, job_ids: Sequence[UUID], worker_id: str) -> dict[UUID, int]:
        """Which of these jobs are running on `worker_id`, with their attempt. A plain read:
        it never waits on row locks."""

    async def running_on(self, worker_id: str) -> dict[UUID, int]:
        """Every job the store records as running on `worker_id`, with its attempt (a plain
        read, like attempts_held)."""
