"""Engine: the one facade that edges (API, CLI, client code) call to enqueue and manage jobs."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncGenerator, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from pydantic import ValidationError

from conveyor.audit import AuditEntry, current_actor
from conveyor.crypto import Keyring
from conveyor.engine.audit import Audit
from conveyor.engine.changes import Changes
from conveyor.engine.coalescer import EnqueueCoalescer
from conveyor.engine.reads import DEFAULT_WINDOW as DEFAULT_READ_WINDOW
from conveyor.engine.reads import Reads
from conveyor.engine.sealing import Sealing
from conveyor.errors import (
    InvalidJobData,
    InvalidJobOptions,
    JobNotCancellable,
    JobNotDeletable,
    JobNotFound,
    JobNotRetryable,
)
from conveyor.gcpause import gc_paused
from conveyor.jobtypes import Definition, JobType, Registry
from conveyor.model import (
    HELD_UNTIL,
    MAX_KEY_LENGTH,
    MAX_LABEL_KEY_LENGTH,
    MAX_LABEL_VALUE_LENGTH,
    MAX_NAME_LENGTH,
    MAX_QUEUE_LENGTH,
    RETRYABLE_BY_HAND,
    Job,
    JobFilter,
    JobOrder,
    LogEntry,
    LogLevel,
    NewJob,
    Owner,
    Priority,
    PriorityLike,
    Status,
    Visibility,
    job_state,
    new_job_id,
    priority_level,
    stored_key,
    too_long_owner_field,
    utc_now,
)
from conveyor.notifier import Notifier
from conveyor.retry import RetryPolicy, policy_for
from conveyor.storable import unstorable
from conveyor.store.base import TOPICS, Store

if TYPE_CHECKING:
    from conveyor.audit import SignatureMark
    from conveyor.signatures import Signatures

JobTypeRef = str | type[JobType] | Callable[..., Any]

# The furthest ahead a job may be scheduled, and the longest timeout: far beyond any real use,
# well inside what both databases' timestamps hold.
MAX_DELAY = timedelta(days=3660)
# Members read once: an enum attribute lookup is a descriptor call, paid per job in bulk.
_SCHEDULED, _PENDING = Status.SCHEDULED, Status.PENDING
_NO_OWNER = Owner()
# Jobs validated at a time in a bulk enqueue, while the previous batch is being written (the
# first batch smaller: 3 % quicker per 10,000 jobs on PostgreSQL).
FIRST_BULK_BATCH = 200
BULK_BATCH = 1000
# Distinct (job type, options) plans an engine remembers before starting afresh.
MAX_PLANS = 1024


@dataclass(slots=True)
class JobRequest:
    """One job to enqueue. Unset options take the job type's defaults."""

    job_type: JobTypeRef
    data: Any = field(default_factory=dict)
    queue: str | None = None
    priority: PriorityLike | None = None
    run_at: datetime | None = None
    delay: timedelta | None = None
    timeout: timedelta | None = None
    max_retries: int | None = None
    idempotency_key: str | None = None
    labels: dict[str, str] | None = None
    owner: Owner | None = None
    batch_id: UUID | None = None
    schedule_id: str | None = None
    retry_of: UUID | None = None
    file_info: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class _Plan:
    definition: Definition
    queue: str
    priority: int
    max_attempts: int
    timeout: timedelta | None


def _check_text_options(request: JobRequest, labels: dict[str, str]) -> None:
    """Refuse text options no database could store as given (see conveyor.model's limits),
    naming the field."""
    if labels:
        if found := unstorable(labels, "labels"):
            raise InvalidJobOptions(f"{found[0]} {found[1]}", field="labels")
        if (
            "" in labels
            or max(map(len, labels)) > MAX_LABEL_KEY_LENGTH
            or max(map(len, labels.values())) > MAX_LABEL_VALUE_LENGTH
        ):
            raise InvalidJobOptions(
                f"labels: keys of 1-{MAX_LABEL_KEY_LENGTH} characters, values of at most {MAX_LABEL_VALUE_LENGTH}",
                field="labels",
            )
    if key := request.idempotency_key:
        if found := unstorable(key, "idempotency_key"):
            raise InvalidJobOptions(f"{found[0]} {found[1]}", field="idempotency_key")
        if len(key) > MAX_KEY_LENGTH:
            raise InvalidJobOptions(f"idempotency_key longer than {MAX_KEY_LENGTH} characters", field="idempotency_key")
    if request.schedule_id is not None and len(request.schedule_id) > MAX_NAME_LENGTH:
        raise InvalidJobOptions(f"schedule_id longer than {MAX_NAME_LENGTH} characters", field="schedule_id")
    if request.owner and (field := too_long_owner_field(request.owner)):
        raise InvalidJobOptions(f"{field} longer than {MAX_NAME_LENGTH} characters", field=field)


def _cache_key(key: str | None) -> str | None:
    """A job type's cache key as stored (a long one as its SHA-256: a hit for the same input)."""
    return None if key is None else stored_key(key)


class Engine:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        *,
        notifier: Notifier | None = None,
        class_policies: dict[Priority, RetryPolicy] | None = None,
        default_timeout: timedelta | None = None,
        max_timeout: timedelta | None = None,
        wait_poll_interval: float = 0.25,
        audit: Audit | None = None,
        keyring: Keyring | None = None,
        read_window: timedelta = DEFAULT_READ_WINDOW,
    ) -> None:
        self.store = store
        # Services built-in job types reach through ctx.service(name) (the webhook deliverer),
        # registered by the runtime.
        self.services: dict[str, Any] = {}
        self.audit = audit or Audit(store)
        # job.read records for sealed data opened, once per reader and job within the window.
        self.reads = Reads(self.audit, read_window)
        # E-signatures demanded of critical operations (set by conveyor.runtime.Conveyor).
        self.signatures: Signatures | None = None
        self.sealing = Sealing(registry, keyring)
        self.registry = registry
        self.notifier = notifier or Notifier()
        self.class_policies = class_policies
        self.default_timeout = default_timeout
        self.max_timeout = max_timeout
        self._wait_poll_interval = wait_poll_interval
        self._listening: set[str] = set()
        self._listen_lock = asyncio.Lock()
        self._plans: dict[tuple[Any, ...], _Plan] = {}
        # Concurrent single enqueues share statements (see coalescer.py).
        self._coalescer = EnqueueCoalescer(store.insert_jobs)
        # Live views' feed: notifications coalesced and narrowed to each follower's jobs.
        self.changes = Changes(store, self.notifier, self.start)

    async def start(self, topics: Collection[str] = TOPICS) -> None:
        """Feed the store's notifications of `topics` to the notifier. Only what is listened
        for is heard from other processes: a process that only enqueues hears nothing."""
        if not self._listening.issuperset(topics):
            async with self._listen_lock:  # a second caller returns once the first is listening
                if missing := set(topics) - self._listening:
                    await self.store.listen(self.notifier.publish, missing)
                    self._listening |= missing

    # --- enqueue ------------------------------------------------------------------------

    async def enqueue(self, job_type: JobTypeRef, data: Any = None, **options: Any) -> Job:
        """Validate and store one job; returns it (the existing one for a known idempotency key).

        Example::

            job = await engine.enqueue("sleep", {"seconds": 2}, priority="high")
        """
        job, _created = await self.submit(job_type, data, **options)
        return job

    async def submit(self, job_type: JobTypeRef, data: Any = None, **options: Any) -> tuple[Job, bool]:
        """As enqueue, and whether the job was created now (False: its idempotency key was
        known, and the job returned is the one it named)."""
        new_job = self.prepare(JobRequest(job_type, {} if data is None else data, **options))
        job, created = await self._coalescer.insert(new_job)
        return self.sealing.opened(job), created

    async def enqueue_many(self, requests: Sequence[JobRequest]) -> list[Job]:
        """All or nothing: one transaction, and an invalid request stores none of them."""
        with gc_paused():  # the whole call, its waits for the database included: see conveyor.gcpause
            if any(r.idempotency_key is not None for r in requests):
                plans: dict[tuple[Any, ...], _Plan] = {}
                now = utc_now()
                new_jobs = [self.prepare(r, now=now, plans=plans) for r in requests]
                return [self.sealing.opened(job) for job, _created in await self.store.insert_jobs(new_jobs)]
            return await self._store_batches(
                len(requests), lambda now, plans, a, b: self._prepare_batch(requests[a:b], now, plans)
            )

    async def enqueue_each(self, job_type: JobTypeRef, items: Iterable[Any], **options: Any) -> list[Job]:
        """One job of `job_type` for each of `items` (its data), all with the same `options`
        (enqueue's, but an idempotency key: one key names one job). As enqueue_many: one
        transaction, and invalid data stores none of them. The usual bulk call, as Sidekiq's
        push_bulk, without a JobRequest to make per job (10,000 of them cost ~10 ms, and
        objects for the collector to walk).

            jobs = await engine.enqueue_each("send_reminder", [{"patient": p} for p in due], queue="sms")
        """
        if options.get("idempotency_key") is not None:
            raise InvalidJobOptions(
                "one idempotency key names one job: give each its own (enqueue_many)", field="idempotency_key"
            )
        template = JobRequest(job_type, None, **options)
        with gc_paused():  # as enqueue_many
            datas = items if isinstance(items, list | tuple) else list(items)
            return await self._store_batches(
                len(datas), lambda now, plans, a, b: self._prepare_items(template, datas[a:b], now, plans)
            )

    async def _store_batches(
        self, count: int, prepare: Callable[[datetime, dict[tuple[Any, ...], _Plan], int, int], list[NewJob]]
    ) -> list[Job]:
        """`count` jobs without idempotency keys, `prepare(now, plans, start, stop)` making each
        batch: the store may write one while the next is made, and a smaller first batch sets
        the database to work sooner."""
        now = utc_now()
        plans: dict[tuple[Any, ...], _Plan] = {}  # bulk requests mostly share a type and options
        bounds = [0, *range(FIRST_BULK_BATCH, count, BULK_BATCH), count]
        batches = (prepare(now, plans, a, b) for a, b in itertools.pairwise(bounds) if b > a)
        return [self.sealing.opened(job) for job in await self.store.insert_batches(batches)]

    def prepare(
        self, request: JobRequest, *, now: datetime | None = None, plans: dict[tuple[Any, ...], _Plan] | None = None
    ) -> NewJob:
        """The job `request` describes, validated and with its defaults applied."""
        if plans is None:  # single enqueues remember plans across calls, as bulk ones do within one
            plans = self._plans
            if len(plans) > MAX_PLANS:
                plans.clear()
        plan = self._plan_of(request, plans)
        now = now or utc_now()
        run_at = self._run_at(request, now)
        data = plan.definition.parse(request.data)
        return self._new_job(request, plan, run_at, request.data, data, plan.definition.dump_input(data), now)

    # A batch of one job type and options with plain dict data (the usual bulk call) has its
    # data validated and dumped in one call into pydantic, at a quarter of the cost per job;
    # anything else, and invalid data, takes prepare's way, so that the error raised is the
    # first offending request's, naming its field.

    def _prepare_batch(
        self, requests: Sequence[JobRequest], now: datetime, plans: dict[tuple[Any, ...], _Plan]
    ) -> list[NewJob]:
        """As prepare for each request."""
        plan = self._plan_of(requests[0], plans)
        alike = plan.definition.input_model is not None and all(
            self._plan_of(r, plans) is plan and type(r.data) is dict for r in requests
        )
        checked = self._validated(plan, [r.data for r in requests]) if alike else None
        if checked is None:
            return [self.prepare(r, now=now, plans=plans) for r in requests]
        parsed, stored = checked
        return [
            self._new_job(r, plan, self._run_at(r, now), r.data, data, dumped, now)
            for r, data, dumped in zip(requests, parsed, stored, strict=True)
        ]

    def _prepare_items(
        self, template: JobRequest, items: Sequence[Any], now: datetime, plans: dict[tuple[Any, ...], _Plan]
    ) -> list[NewJob]:
        """As prepare for `template` with each of `items` as its data."""
        plan = self._plan_of(template, plans)
        alike = plan.definition.input_model is not None and all(type(item) is dict for item in items)
        checked = self._validated(plan, items) if alike else None
        if checked is None:
            return [self.prepare(replace(template, data=item), now=now, plans=plans) for item in items]
        parsed, stored = checked
        run_at = self._run_at(template, now)
        return [
            self._new_job(template, plan, run_at, given, data, dumped, now)
            for given, data, dumped in zip(items, parsed, stored, strict=True)
        ]

    @staticmethod
    def _validated(plan: _Plan, datas: Sequence[Any]) -> tuple[list[Any], list[Any]] | None:
        """The data validated, and dumped as stored, in one call each; None if any is invalid."""
        try:
            parsed = plan.definition.parse_many(datas)
        except ValidationError:
            return None
        return parsed, plan.definition.dump_many(parsed)

    def _plan_of(self, request: JobRequest, plans: dict[tuple[Any, ...], _Plan]) -> _Plan:
        key = (request.job_type, request.queue, request.priority, request.max_retries, request.timeout)
        plan = plans.get(key)
        if plan is None:
            plan = plans[key] = self._plan(request)
        return plan

    def _new_job(
        self, request: JobRequest, plan: _Plan, run_at: datetime, given: Any, data: Any, stored: Any, now: datetime
    ) -> NewJob:
        """The job to store for `request` with `given` as its data (request.data unless made
        for one of several items): `data` validated, `stored` its JSON form."""
        definition = plan.definition
        # The input as given (a NaN would be dumped as null, silently), then as it will be stored
        # (empty input, as many bulk jobs have, holds nothing to check).
        if (given or stored) and (found := unstorable(given) or unstorable(stored)):
            field, problem = found
            raise InvalidJobData(definition.kind, [{"field": field, "message": problem, "type": "unstorable"}])
        labels = {str(k): str(v) for k, v in request.labels.items()} if request.labels else {}
        if labels or request.idempotency_key or request.owner or request.schedule_id:
            _check_text_options(request, labels)
        job_id = new_job_id()
        if definition.sensitive:  # stored sealed (conveyor.engine.sealing)
            stored = self.sealing.seal_data(definition.kind, job_id, stored)
        # Positional, in the dataclass's order: keywords cost a bulk enqueue about 2 µs a job.
        return NewJob(
            job_id,
            definition.kind,
            plan.queue,
            _SCHEDULED if run_at > now else _PENDING,
            plan.priority,
            stored,
            plan.max_attempts,
            run_at,
            plan.timeout,
            request.idempotency_key,
            _cache_key(definition.implementation.cache_key(data)),
            labels,
            request.owner or _NO_OWNER,
            request.batch_id,
            request.schedule_id,
            request.retry_of,
            request.file_info,
            current_actor(),
        )

    def _plan(self, request: JobRequest) -> _Plan:
        """What a request's job type and options decide, whatever its data."""
        definition = self.registry.get(request.job_type)
        priority = self._priority(request.priority if request.priority is not None else definition.priority)
        queue = request.queue or definition.queue
        if len(queue) > MAX_QUEUE_LENGTH:
            raise InvalidJobOptions(f"queue longer than {MAX_QUEUE_LENGTH} characters", field="queue")
        return _Plan(
            definition=definition,
            queue=queue,
            priority=priority,
            max_attempts=self._max_attempts(definition, priority, request.max_retries),
            timeout=self._timeout(definition, request.timeout),
        )

    @staticmethod
    def _priority(priority: PriorityLike) -> int:
        try:
            return priority_level(priority)
        except ValueError as exc:
            raise InvalidJobOptions(str(exc), field="priority") from None

    @staticmethod
    def _run_at(request: JobRequest, now: datetime) -> datetime:
        if request.run_at is not None and request.delay is not None:
            raise InvalidJobOptions("give run_at or delay, not both", field="run_at")
        if request.delay is not None:
            if request.delay < timedelta(0):
                raise InvalidJobOptions("delay must not be negative", field="delay")
            if request.delay > MAX_DELAY:
                raise InvalidJobOptions(f"delay more than {MAX_DELAY.days} days", field="delay")
            return now + request.delay
        if request.run_at is not None:
            if request.run_at.tzinfo is None:
                raise InvalidJobOptions("run_at must carry a time zone", field="run_at")
            try:
                run_at = request.run_at.astimezone(UTC)
            except OverflowError:
                run_at = datetime.max.replace(tzinfo=UTC)
            if run_at > now + MAX_DELAY:
                raise InvalidJobOptions(f"run_at more than {MAX_DELAY.days} days ahead", field="run_at")
            return max(run_at, now)
        return now

    def _max_attempts(self, definition: Definition, priority: int, max_retries: int | None) -> int:
        if max_retries is not None:
            if max_retries < 0:
                raise InvalidJobOptions("max_retries must be >= 0", field="max_retries")
            return max_retries + 1
        return self.policy(definition, priority).max_attempts

    def policy(self, definition: Definition, priority: int) -> RetryPolicy:
        return definition.retry or policy_for(priority, self.class_policies)

    def _timeout(self, definition: Definition, requested: timedelta | None) -> timedelta | None:
        timeout = requested or definition.timeout or self.default_timeout
        if timeout is None:
            return None
        if timeout <= timedelta(0):
            raise InvalidJobOptions("timeout must be positive", field="timeout")
        if timeout > MAX_DELAY:
            raise InvalidJobOptions(f"timeout more than {MAX_DELAY.days} days", field="timeout")
        if self.max_timeout is not None and timeout > self.max_timeout:
            raise InvalidJobOptions(
                f"timeout {timeout.total_seconds():g}s exceeds the maximum of {self.max_timeout.total_seconds():g}s",
                field="timeout",
            )
        return timeout

    # --- reads ----------------------------------------------------------------------------

    async def get(self, job_id: UUID, *, visible_to: Visibility | None = None, reveal: bool = True) -> Job:
        """The job; JobNotFound also when it lies outside `visible_to` (ids leak nothing).
        Reading a sensitive job's data or result is recorded in the audit trail (job.read).
        `reveal=False` (a reader whose role may not read sensitive data): sealed fields come
        masked (Sealing.masked), and nothing is recorded as read."""
        job = await self._stored(job_id, visible_to)
        if not reveal:
            return self.sealing.masked(job)
        await self._record_read(job)
        return self.sealing.opened(job)

    async def _stored(self, job_id: UUID, visible_to: Visibility | None) -> Job:
        """The job as stored (sealed fields sealed), for the engine's own checks: not a read."""
        job = await self.store.get_job(job_id)
        if job is None or (visible_to is not None and not visible_to.allows(job.owner)):
            raise JobNotFound(job_id)
        return job

    async def _record_read(self, job: Job) -> None:
        await self.reads.job(job, self.sealing.sealed_fields(job))

    async def list(
        self,
        where: JobFilter | None = None,
        *,
        limit: int = 50,
        offset: int = 0,
        newest_first: bool = True,
        after: tuple[Any, datetime, UUID] | None = None,
        order: JobOrder | None = None,
    ) -> tuple[list[Job], int]:
        """A page of jobs and how many match; the sensitive ones among them are named by one
        job.read record. `order`: by creation (newest first unless `newest_first` is False)
        or another of SORT_KEYS. `after` (from the last job of the previous page: its value of
        the sort key, `JobOrder.value_of`, its created_at and id) pages by key: as fast on the
        millionth job as on the first."""
        jobs, total = await self.store.list_jobs(
            where or JobFilter(), limit=limit, offset=offset, newest_first=newest_first, after=after, order=order
        )
        if sensitive := [j for j in jobs if self.sealing.sealed_fields(j)]:
            await self.reads.page(sensitive)
        return [self.sealing.opened(job) for job in jobs], total

    async def counts(self, where: JobFilter | None = None, *, by: str = "status") -> dict[str, int]:
        return await self.store.count_jobs(where or JobFilter(), by=by)

    async def logs(
        self,
        job_id: UUID,
        *,
        min_level: LogLevel | None = None,
        limit: int = 100,
        offset: int = 0,
        visible_to: Visibility | None = None,
        reveal: bool = True,
    ) -> tuple[list[LogEntry], int]:
        """A page of the job's log lines; `reveal=False` masks sealed messages (see get)."""
        job = await self._stored(job_id, visible_to)
        logs, total = await self.store.get_logs(job_id, min_level=min_level, limit=limit, offset=offset)
        if not reveal:
            return self.sealing.masked_logs(logs), total
        if self.sealing.any_sealed_log(logs):
            await self.reads.job(job, ["logs"])
        return self.sealing.open_logs(logs), total

    # --- operations ---------------------------------------------------------------------------

    async def _signature(self, operation: str, job: Job) -> SignatureMark | None:
        """The request's e-signature when `operation` on `job` is critical (else None);
        SignatureRequired / SignatureInvalid before anything changes."""
        if self.signatures is None:
            return None
        return await self.signatures.demand(operation, critical_job=job.priority_class is Priority.CRITICAL)

    async def cancel(self, job_id: UUID, *, visible_to: Visibility | None = None, action: str = "job.cancelled") -> Job:
        """Scheduled and pending jobs are cancelled at once; a running one is asked to stop at
        its next checkpoint (its status stays running until it does). Finished: refused.
        Recorded in the audit trail as `action` (the API's DELETE says job.deleted), in the
        transaction of the change, with the request's e-signature where one is demanded."""
        before = await self._stored(job_id, visible_to)
        # Seed 002's DELETE cancels (recorded as job.deleted): it is a cancel, not a deletion.
        signature = await self._signature("job.cancel", before)

        def records(job: Job) -> list[AuditEntry]:
            return [self.audit.entry(action, "job", job.id, before=job_state(before), after=job_state(job),
                                     org_id=job.owner.org_id, signature=signature)]  # fmt: skip

        job, acted = await self.store.request_cancel(job_id, records)
        if job is None:
            raise JobNotFound(job_id)
        if not acted:
            raise JobNotCancellable(job_id, job.status.value)
        return job

    async def delete(self, job_id: UUID, *, visible_to: Visibility | None = None) -> Job:
        """Delete a job that is not running (any other status), with its log lines; returns
        the job as it was. A running job is refused (JobNotDeletable): cancel it first.
        Recorded in the audit trail as job.deleted (before: the job's state), in the transaction
        of the deletion, with the request's e-signature where one is demanded."""
        signature = None
        if visible_to is not None or (self.signatures is not None and self.signatures.in_request()):
            signature = await self._signature("job.delete", await self._stored(job_id, visible_to))

        def records(job: Job) -> list[AuditEntry]:
            return [self.audit.entry("job.deleted", "job", job.id, before=job_state(job), org_id=job.owner.org_id,
                                     signature=signature)]  # fmt: skip

        job, deleted = await self.store.delete_job(job_id, records)
        if job is None:
            raise JobNotFound(job_id)
        if not deleted:
            raise JobNotDeletable(job_id, job.status.value)
        return job

    async def retry(self, job_id: UUID, *, visible_to: Visibility | None = None) -> Job:
        """Run a failed, cancelled or timed-out job again, as a new job that names it in retry_of."""
        job = self.sealing.opened(await self._stored(job_id, visible_to))  # its data goes into the new job
        if job.status not in RETRYABLE_BY_HAND:
            raise JobNotRetryable(job_id, job.status.value)
        signature = await self._signature("job.retry", job)
        request = JobRequest(
            job.kind,
            job.data,
            queue=job.queue,
            priority=job.priority,
            timeout=job.timeout,
            max_retries=job.max_attempts - 1,
            labels=job.labels,
            owner=job.owner,
            batch_id=job.batch_id,
            retry_of=job.id,
            file_info=job.file_info,
        )
        new_job = self.prepare(request)
        # Recorded in the transaction that stores the new job: both, or neither.
        retried = self.audit.entry(
            "job.retried", "job", job.id, before=job_state(job), after={"retryJobId": str(new_job.id)},
            org_id=job.owner.org_id, signature=signature,
        )  # fmt: skip
        if job.batch_id is not None:  # a member of a batch: it joins the batch waiting for a slot, as the others did
            new_job.status, new_job.run_at = _SCHEDULED, HELD_UNTIL
        [(stored, _created)] = await self.store.insert_jobs([new_job], also=[retried])
        if job.batch_id is None:
            return self.sealing.opened(stored)
        await self.store.settle_batches([job.batch_id])
        return self.sealing.opened(await self._stored(new_job.id, None))

    async def watch(
        self, job_id: UUID, *, visible_to: Visibility | None = None, interval: float = 1.0
    ) -> AsyncGenerator[Job, None]:
        """The job now, then again each time it changes (looked at every `interval` seconds,
        and at once when it finishes), until it has finished: a live view's feed.

        The jobs come as stored: a sensitive job's data and result stay sealed (the watcher
        sees its state and progress; reading its result is `get`, recorded as a read)."""
        await self.start(("finish",))
        finished = asyncio.Event()
        # Only this job's own finish cuts the interval short: a "*" (another process's commit,
        # on SQLite many a second) would make a busy database's watchers read in a loop.
        unsubscribe = self.notifier.subscribe("finish", lambda got: finished.set() if got == str(job_id) else None)
        try:
            last: tuple[Any, ...] | None = None
            while True:
                job = await self._stored(job_id, visible_to)
                seen = (job.status, job.updated_at, job.cancel_requested)
                if seen != last:
                    last = seen
                    yield job
                if job.status.is_finished:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(finished.wait(), timeout=interval)
        finally:
            unsubscribe()

    async def wait(
        self, job_id: UUID, timeout: float, *, visible_to: Visibility | None = None, reveal: bool = True
    ) -> Job:
        """The job once it finishes, or as it is when `timeout` seconds pass.

        Woken by the finish notification; where other processes' finishes are not announced
        (SQLite), it also looks every `wait_poll_interval` seconds.
        """
        await self.start(("finish",))
        future, unsubscribe = self.notifier.future_for("finish", str(job_id))
        try:
            deadline = asyncio.get_running_loop().time() + timeout
            while True:
                job = await self._stored(job_id, visible_to)
                remaining = deadline - asyncio.get_running_loop().time()
                if job.status.is_finished or remaining <= 0:
                    if not reveal:
                        return self.sealing.masked(job)
                    await self._record_read(job)  # once, for what is returned
                    return self.sealing.opened(job)
                if future.done():  # woken ("*", another job's commit): a fresh one, or every
                    unsubscribe()  # later wait would return at once and the loop read flat out
                    future, unsubscribe = self.notifier.future_for("finish", str(job_id))
                step = remaining if self.store.notifies_across_processes else min(remaining, self._wait_poll_interval)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(future), timeout=step)
        finally:
            unsubscribe()
            future.cancel()
