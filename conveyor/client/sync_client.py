"""`Client`: the blocking client (see `conveyor.client` for the whole picture)."""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar, Unpack

import httpx
from pydantic import BaseModel

from conveyor.client import calls
from conveyor.client.calls import (
    AuditFilters,
    BatchItem,
    Call,
    JobFilters,
    JobId,
    ScheduleChanges,
    ScheduleSettings,
    Seconds,
    SubmitOptions,
)
from conveyor.client.models import (
    ApiKey,
    AuditRecord,
    AuditVerdict,
    Batch,
    CacheStats,
    Caller,
    Health,
    Job,
    LogPage,
    NewApiKey,
    Page,
    Queue,
    QueueState,
    Schedule,
    SignaturePolicy,
    SignatureRecord,
    SignIn,
    Stats,
    User,
    Worker,
)
from conveyor.client.signing import Signature

T = TypeVar("T")


class Client:
    """A blocking client for conveyor's HTTP API.

    Args:
        base_url: where `conveyor serve` listens.
        api_key: an API key (`cvk_…`), sent as `Authorization: Bearer`.
        token: a JWT instead of an API key, sent the same way.
        timeout: seconds (or an `httpx.Timeout`) for each request; `wait` adds the time it
            asks the server to wait. None: no limit.
        retries: how many times a call that is safe to repeat is sent again after a
            connection failure (reads, `wait`, `cancel`, queue pause and resume, and `submit`
            with an idempotency key), and after a 503 `DATABASE_UNAVAILABLE` answer (waiting
            its Retry-After, at most 10 s). Other errors the server answers are not retried.
        transport: an httpx transport (a test's `httpx.MockTransport`, custom TLS…).
        headers: more headers for every request.

    Example::

        from conveyor.client import Client

        with Client("http://127.0.0.1:8000", api_key="cvk_…") as client:
            job = client.submit("sleep", {"seconds": 2}, priority="high")
            done = client.wait(job.id, timeout=60)
            print(done.status, done.result)
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        token: str | None = None,
        timeout: float | httpx.Timeout | None = calls.DEFAULT_TIMEOUT,
        retries: int = 2,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        options = calls.client_options(base_url, api_key=api_key, token=token, timeout=timeout, headers=headers)
        self._http = httpx.Client(transport=transport, **options)
        self._retries = retries
        self.schedules = Schedules(self)
        self.batches = Batches(self)
        self.audit = Audit(self)
        self.api_keys = ApiKeys(self)
        self.users = Users(self)

    def __repr__(self) -> str:
        return f"Client(base_url={str(self._http.base_url)!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Closes the connections (a `with` block does it on leaving)."""
        self._http.close()

    def _send(self, call: Call[T]) -> T:
        failures = 0
        while True:
            try:
                response = self._http.request(
                    call.method,
                    call.path,
                    params=call.params,
                    json=call.json,
                    headers=call.headers,
                    timeout=call.timeout(self._http.timeout),
                )
            except httpx.TransportError as exc:
                failures += 1
                time.sleep(call.retry_delay(failures, self._retries, exc))
                continue
            if (delay := call.resend_after(response, failures + 1, self._retries)) is not None:
                failures += 1
                time.sleep(delay)
                continue
            outcome = call.outcome(response, retried=failures > 0)
            if not isinstance(outcome, Call):
                return outcome
            call, failures = outcome, 0

    # --- jobs -----------------------------------------------------------------------------------

    def submit(
        self, job_type: str, data: Mapping[str, Any] | BaseModel | None = None, **options: Unpack[SubmitOptions]
    ) -> Job:
        """Creates a job (`POST /api/v1/jobs`) and returns it, `pending` (or `scheduled`).

        Args:
            job_type: the job type's kind, e.g. `"sleep"`.
            data: the job type's input (a mapping or a pydantic model).
            priority: `critical`, `high`, `medium` (the default) or `low`, or 1-10.
            queue: another queue than the job type's.
            labels: free key/values to filter on later (`list(labels=…)`).
            idempotency_key: the same key answers with the job it first created (and makes
                the call safe to retry).
            run_at: not before this (timezone-aware); or `delay`, seconds or a timedelta.
            job_timeout: longest run, seconds or a timedelta.
            max_retries: attempts after the first, instead of the priority class's.
            use_cache: reuse an identical job's result (a job type with a cache key, the
                same key, completed within the server's CACHE_TTL), or share one still
                running; the job returned then has `cache_info` (`hit` or `attached`).

        Raises:
            InvalidRequest: an unknown type (`allowed_types`) or bad data (`fields`).
        """
        return self._send(calls.submit(job_type, data, options))

    def get(self, job_id: JobId, *, include_data: bool = False) -> Job:
        """The job with its progress, and its result or error once finished; `include_data`:
        its input `data` too (a sensitive job's comes masked, named in `masked`, to a caller
        who may not read it). Raises NotFound."""
        return self._send(calls.get_job(job_id, include_data=include_data))

    def list(
        self, *, page: int = 1, page_size: int = 50, cursor: str | None = None, **filters: Unpack[JobFilters]
    ) -> Page[Job]:
        """One page of the jobs the caller may see, newest first unless `sort` says otherwise.

        Filters: `status`, `type`, `priority` (one value or several), `queue`, `labels`
        (a mapping, all must match), `created_after`, `created_before`, `batch_id`, `org_id`.
        `sort`: `newest`, `oldest`, or one of created, priority, status, type, run_at,
        finished, with a leading `-` for descending (`"-priority"`: highest first). Items carry
        the summary of each job; `get` gives the result. `cursor` (a page's `next_cursor`,
        same filters and sort) gives the page after it: as quick deep in a million jobs as
        the first, where `page=N` makes the database step over every job before it.

        Example::

            page = client.list(status=["failed", "timeout"], sort="-priority", page_size=20)
            print(page.total, [job.id for job in page.items], page.next_cursor)
        """
        return self._send(calls.list_jobs(filters, page=page, page_size=page_size, cursor=cursor))

    def iter_jobs(self, *, page_size: int = 100, **filters: Unpack[JobFilters]) -> Iterator[Job]:
        """Every job matching the filters (as `list`, `sort` too), fetching a page at a time
        as the iteration goes, each past the last job of the one before: none is yielded
        twice, none skipped; newest first, jobs created meanwhile are not included."""
        pager = calls.JobPager(filters, page_size)
        while (call := pager.next_call()) is not None:
            yield from pager.take(self._send(call))

    def cancel(self, job_id: JobId, *, signature: Signature | None = None) -> Job:
        """Cancels a job: at once when it waits, at its next checkpoint when it runs (the job
        shows `cancel_requested` until then). Raises Conflict for a finished job.

        `signature`: an e-signature, for a server that makes this cancel critical (by default,
        of a critical-priority job); without one it raises SignatureRequired."""
        return self._send(calls.cancel(job_id, signature))

    def delete(self, job_id: JobId, *, signature: Signature | None = None) -> Job:
        """Seed 002's `DELETE /api/v1/jobs/{id}`: cancels the job as `cancel` does, recorded in
        the audit trail as job.deleted rather than job.cancelled (the job stays listed until
        retention removes it). Raises Conflict for a finished job."""
        return self._send(calls.delete(job_id, signature))

    def purge(self, job_id: JobId, *, signature: Signature | None = None) -> Job:
        """Removes a job that is not running for good, with its result and logs
        (`DELETE /api/v1/jobs/{id}?purge=true`, audit job.deleted); returns it as it was. Raises
        Conflict for a running job (cancel it first); `signature` where the server demands one."""
        return self._send(calls.purge(job_id, signature))

    def retry(self, job_id: JobId, *, signature: Signature | None = None) -> Job:
        """Runs a failed, cancelled or timed-out job again, as a new job whose `retry_of`
        names the old one. Raises Conflict for any other status; `signature` as for `cancel`."""
        return self._send(calls.retry(job_id, signature))

    def wait(self, job_id: JobId, timeout: Seconds | None = 30.0) -> Job:
        """Waits until the job finishes and returns it, whatever its outcome (check
        `job.status`: completed, failed, cancelled or timeout).

        The server answers the moment the job finishes. `timeout` is in seconds (None: no
        limit); past five minutes the client chains the server's waits.

        Raises:
            WaitTimeout: the time ran out first; it carries `current_status` and
                `current_progress`. The job goes on.
        """
        return self._send(calls.wait(job_id, timeout))

    def logs(self, job_id: JobId, *, level: str | None = None, limit: int = 100, offset: int = 0) -> LogPage:
        """A job's log lines, oldest first; `level` is the lowest to include (debug, info,
        warning, error, critical)."""
        return self._send(calls.logs(job_id, level=level, limit=limit, offset=offset))

    def stats(self) -> Stats:
        """Counts by status, type and priority, and recent performance."""
        return self._send(calls.stats())

    # --- queues, health -----------------------------------------------------------------------------

    def queues(self) -> builtins.list[Queue]:
        """Every queue with its depth, oldest waiting job, throughput and workers."""
        return self._send(calls.queues())

    def pause_queue(self, name: str) -> QueueState:
        """Workers stop claiming from the queue (running jobs finish). Operators and above."""
        return self._send(calls.set_queue_paused(name, True))

    def resume_queue(self, name: str) -> QueueState:
        return self._send(calls.set_queue_paused(name, False))

    def workers(self) -> builtins.list[Worker]:
        """The live workers: host, pid, queues, concurrency, jobs running, last heartbeat."""
        return self._send(calls.workers())

    def health(self) -> Health:
        """The service's health (needs no credentials); `unhealthy` is returned, not raised."""
        return self._send(calls.health())

    # --- the caller, sign-in, e-signatures ----------------------------------------------------------

    def me(self) -> Caller:
        """Who these credentials are (`via`: api_key or jwt), their role and permissions."""
        return self._send(calls.me())

    def sign_in(self, user_id: str, password: str) -> SignIn:
        """A JWT for a local user (`POST /api/v1/auth/token`; needs no credentials). Raises
        Unauthorized (`INVALID_CREDENTIALS`) for a wrong id or password, a locked-out or
        disabled account alike; each failure counts toward the lock-out.

        Example::

            with Client(url) as anonymous:
                token = anonymous.sign_in("ada", password).access_token
            with Client(url, token=token) as client:
                print(client.me().name)
        """
        return self._send(calls.sign_in(user_id, password))

    def change_password(self, current: str, new: str) -> User:
        """The signed-in user's own password (a JWT from `sign_in`; an API key has none).
        Tokens issued before stop working."""
        return self._send(calls.change_own_password(current, new))

    def signature_policy(self) -> SignaturePolicy:
        """The server's own rules: which operations need an e-signature, and the meanings a
        signer may state. `policy.requires("cache.clear")`."""
        return self._send(calls.signature_policy())

    def signatures(self, job_id: JobId) -> builtins.list[SignatureRecord]:
        """The e-signatures applied to a job, oldest first: signer, printed name, meaning,
        time, action and the audit record's hash."""
        return self._send(calls.job_signatures(job_id))

    # --- the result cache --------------------------------------------------------------------------

    def cache_stats(self) -> CacheStats:
        """Cached results of the caller's scope (`GET /api/v1/cache/stats`, seed 003's shape)."""
        return self._send(calls.cache_stats())

    def clear_cache(self, *, labels: Mapping[str, str] | None = None, signature: Signature | None = None) -> int:
        """Forgets cached results (of jobs with these labels, when given; their jobs stay) and
        returns how many. Operators and above; an e-signature (`signature`) where the server
        makes cache.clear critical (by default)."""
        return self._send(calls.clear_cache(labels, signature))


class Schedules:
    """`client.schedules`: cron and interval schedules (`/api/v1/jobs/schedules`)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def list(self, *, page: int = 1, page_size: int = 20) -> Page[Schedule]:
        return self._client._send(calls.list_schedules(page=page, page_size=page_size))

    def create(
        self,
        name: str,
        job_type: str,
        data: Mapping[str, Any] | BaseModel | None = None,
        **settings: Unpack[ScheduleSettings],
    ) -> Schedule:
        """Creates a schedule: `cron` (five fields, read in `timezone`, UTC by default) or
        `interval` (seconds or a timedelta). `missed_policy`: skip (default), run_once or
        run_all. Raises InvalidRequest naming the field at fault.

        Example::

            client.schedules.create("nightly export", "reports.export", {"format": "csv"},
                                    cron="0 2 * * *", timezone="Europe/Berlin")
        """
        return self._client._send(calls.create_schedule(name, job_type, data, settings))

    def get(self, schedule_id: JobId) -> Schedule:
        return self._client._send(calls.get_schedule(schedule_id))

    def update(
        self, schedule_id: JobId, *, signature: Signature | None = None, **changes: Unpack[ScheduleChanges]
    ) -> Schedule:
        """Changes the settings given (a new timing starts from now). Like `pause`, `resume` and
        `delete`, it takes an e-signature (`signature`) where the server makes schedule changes
        critical (by default)."""
        return self._client._send(calls.update_schedule(schedule_id, changes, signature))

    def pause(self, schedule_id: JobId, *, signature: Signature | None = None) -> Schedule:
        return self._client._send(calls.set_schedule_enabled(schedule_id, False, signature))

    def resume(self, schedule_id: JobId, *, signature: Signature | None = None) -> Schedule:
        """Resumes from the first tick after now (ticks missed while paused never fire)."""
        return self._client._send(calls.set_schedule_enabled(schedule_id, True, signature))

    def delete(self, schedule_id: JobId, *, signature: Signature | None = None) -> Schedule:
        """Deletes the schedule (its jobs stay) and returns it as it was."""
        return self._client._send(calls.delete_schedule(schedule_id, signature))

    def run(self, schedule_id: JobId) -> Job:
        """One job of the schedule now, paused or not (its ticks stay as they were): the job."""
        return self._client.get(self._client._send(calls.run_schedule(schedule_id)))


class Batches:
    """`client.batches`: jobs submitted together (`/api/v1/batches`)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self, name: str, jobs: Sequence[BatchItem], *, parallel_limit: int | None = None, fail_fast: bool = False
    ) -> Batch:
        """Submits the jobs as one batch (all or none; at most the server's BATCH_MAX_SIZE, 50
        by default). At most `parallel_limit` run at once; with `fail_fast` the first failure
        cancels the rest. Raises InvalidRequest naming the field (`jobs.2.data.count`).

        Example::

            batch = client.batches.create(
                "Multi-country comparison",
                [{"type": "sleep", "data": {"seconds": 2}, "labels": {"country": c}} for c in ("Kenya", "Mali")],
                parallel_limit=1,
            )
            print(batch.id, batch.status, [job.id for job in batch.jobs])
        """
        return self._client._send(calls.create_batch(name, jobs, parallel_limit=parallel_limit, fail_fast=fail_fast))

    def list(self, *, page: int = 1, page_size: int = 20) -> Page[Batch]:
        """The batches the caller may see, newest first (items without their jobs)."""
        return self._client._send(calls.list_batches(page=page, page_size=page_size))

    def get(self, batch_id: JobId) -> Batch:
        """The batch: overall status, counts by status, each job's status."""
        return self._client._send(calls.get_batch(batch_id))

    def cancel(self, batch_id: JobId) -> Batch:
        """Cancels what has not finished (running jobs at their next checkpoint). Raises
        Conflict when every job has finished."""
        return self._client._send(calls.cancel_batch(batch_id))


class Audit:
    """`client.audit`: the audit trail (`/api/v1/audit`; admins and super admins)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def list(self, *, page: int = 1, page_size: int = 50, **filters: Unpack[AuditFilters]) -> Page[AuditRecord]:
        """One page of records, oldest first. Filters: `actor` (a user id), `action`
        (`job.created`…), `object_type`, `object_id`, `since`, `until` (timezone-aware).

        Example::

            page = client.audit.list(action="job.cancelled", page_size=20)
            print(page.total, [(r.seq, r.actor_id, r.object_id) for r in page.items])
        """
        return self._client._send(calls.list_audit(filters, page=page, page_size=page_size))

    def export(self, *, format: str = "json", **filters: Unpack[AuditFilters]) -> str:
        """Every matching record, as CSV (`format="csv"`) or a JSON array, in one string (the
        server streams it; the client holds it). The export is itself recorded in the trail."""
        return self._client._send(calls.export_audit(filters, format=format))

    def verify(self) -> AuditVerdict:
        """Walks the whole chain on the server: `ok`, or `broken_seq` and `problem`."""
        return self._client._send(calls.verify_audit())


class ApiKeys:
    """`client.api_keys`: API keys (`/api/v1/api-keys`; admins for their organisation,
    super admins for any)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(self, name: str, role: str, *, org_id: str | None = None, study_id: str | None = None) -> NewApiKey:
        """Creates a key; its secret is `.key`, shown this once. An admin's keys belong to its own
        organisation; only a super admin names another `org_id`.

        Example::

            new = client.api_keys.create("nightly exports", "user")
            print(new.id, new.key)
        """
        return self._client._send(calls.create_api_key(name, role, org_id=org_id, study_id=study_id))

    def list(self) -> builtins.list[ApiKey]:
        """The keys the caller may manage (never their secrets)."""
        return self._client._send(calls.list_api_keys())

    def revoke(self, key_id: str, *, signature: Signature | None = None) -> ApiKey:
        """Revokes a key (its id, the second part of `cvk_<id>_…`). Raises NotFound; takes an
        e-signature (`signature`) where the server makes api_key.revoke critical (by default)."""
        return self._client._send(calls.revoke_api_key(key_id, signature))


class Users:
    """`client.users`: local users (`/api/v1/users`; admins for their organisation, super admins
    for every one)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def list(self) -> builtins.list[User]:
        return self._client._send(calls.list_users())

    def get(self, user_id: str) -> User:
        """Raises NotFound for a user of another organisation, as for one that does not exist."""
        return self._client._send(calls.get_user(user_id))

    def create(self, user_id: str, *, name: str, role: str, password: str, org_id: str | None = None) -> User:
        """Creates a local user; `name` is the printed name shown with their signatures. Raises
        InvalidRequest naming `password` when it breaks the password rules, Conflict
        (`USER_EXISTS`) for an id taken.

        Example::

            client.users.create("ada", name="Ada Lovelace", role="operator", password=password)
        """
        return self._client._send(calls.create_user(user_id, name=name, role=role, password=password, org_id=org_id))

    def update(
        self, user_id: str, *, name: str | None = None, role: str | None = None, disabled: bool | None = None
    ) -> User:
        """Changes the printed name or the role, or disables (`disabled=True`) or enables the user."""
        return self._client._send(calls.update_user(user_id, name=name, role=role, disabled=disabled))

    def reset_password(self, user_id: str, password: str) -> User:
        """Sets the user's password (lifts a lock-out; their tokens stop working)."""
        return self._client._send(calls.reset_password(user_id, password))

    def unlock(self, user_id: str) -> User:
        """Lifts the user's lock-out."""
        return self._client._send(calls.unlock_user(user_id))
