"""`AsyncClient`: the asyncio twin of `Client`, method for method.

Each method awaits the same `calls` description its blocking twin sends; the full
documentation of each is on `Client` (as httpx documents its two clients once).
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator, Mapping, Sequence
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


class AsyncClient:
    """An asyncio client for conveyor's HTTP API; arguments as `Client`'s, with an
    `httpx.AsyncBaseTransport` (e.g. `httpx.ASGITransport(app=…)` in tests).

    Example::

        from conveyor.client import AsyncClient

        async with AsyncClient("http://127.0.0.1:8000", api_key="cvk_…") as client:
            job = await client.submit("sleep", {"seconds": 2}, priority="high")
            done = await client.wait(job.id, timeout=60)
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
        transport: httpx.AsyncBaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        options = calls.client_options(base_url, api_key=api_key, token=token, timeout=timeout, headers=headers)
        self._http = httpx.AsyncClient(transport=transport, **options)
        self._retries = retries
        self.schedules = AsyncSchedules(self)
        self.batches = AsyncBatches(self)
        self.audit = AsyncAudit(self)
        self.api_keys = AsyncApiKeys(self)
        self.users = AsyncUsers(self)

    def __repr__(self) -> str:
        return f"AsyncClient(base_url={str(self._http.base_url)!r})"

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Closes the connections (an `async with` block does it on leaving)."""
        await self._http.aclose()

    async def _send(self, call: Call[T]) -> T:
        failures = 0
        while True:
            try:
                response = await self._http.request(
                    call.method,
                    call.path,
                    params=call.params,
                    json=call.json,
                    headers=call.headers,
                    timeout=call.timeout(self._http.timeout),
                )
            except httpx.TransportError as exc:
                failures += 1
                await asyncio.sleep(call.retry_delay(failures, self._retries, exc))
                continue
            if (delay := call.resend_after(response, failures + 1, self._retries)) is not None:
                failures += 1
                await asyncio.sleep(delay)
                continue
            outcome = call.outcome(response, retried=failures > 0)
            if not isinstance(outcome, Call):
                return outcome
            call, failures = outcome, 0

    # --- jobs -----------------------------------------------------------------------------------

    async def submit(
        self, job_type: str, data: Mapping[str, Any] | BaseModel | None = None, **options: Unpack[SubmitOptions]
    ) -> Job:
        """Creates a job; see `Client.submit`."""
        return await self._send(calls.submit(job_type, data, options))

    async def get(self, job_id: JobId, *, include_data: bool = False) -> Job:
        """The job with its progress, and its result or error once finished; `include_data`:
        its input too. Raises NotFound."""
        return await self._send(calls.get_job(job_id, include_data=include_data))

    async def list(
        self, *, page: int = 1, page_size: int = 50, cursor: str | None = None, **filters: Unpack[JobFilters]
    ) -> Page[Job]:
        """One page of the jobs the caller may see (`sort`, `cursor`: see `Client.list`)."""
        return await self._send(calls.list_jobs(filters, page=page, page_size=page_size, cursor=cursor))

    async def iter_jobs(self, *, page_size: int = 100, **filters: Unpack[JobFilters]) -> AsyncIterator[Job]:
        """Every job matching the filters, a page fetched at a time; see `Client.iter_jobs`.

        Example::

            async for job in client.iter_jobs(status="failed"):
                await client.retry(job.id)
        """
        pager = calls.JobPager(filters, page_size)
        while (call := pager.next_call()) is not None:
            for job in pager.take(await self._send(call)):
                yield job

    async def cancel(self, job_id: JobId, *, signature: Signature | None = None) -> Job:
        """Cancels a job; see `Client.cancel`. Raises Conflict for a finished job."""
        return await self._send(calls.cancel(job_id, signature))

    async def delete(self, job_id: JobId, *, signature: Signature | None = None) -> Job:
        """Seed 002's `DELETE /api/v1/jobs/{id}`: cancels as `cancel` does, recorded in the
        audit trail as job.deleted; see `Client.delete`."""
        return await self._send(calls.delete(job_id, signature))

    async def purge(self, job_id: JobId, *, signature: Signature | None = None) -> Job:
        """Removes a job that is not running for good; see `Client.purge`."""
        return await self._send(calls.purge(job_id, signature))

    async def retry(self, job_id: JobId, *, signature: Signature | None = None) -> Job:
        """Runs a failed, cancelled or timed-out job again as a new job; see `Client.retry`."""
        return await self._send(calls.retry(job_id, signature))

    async def wait(self, job_id: JobId, timeout: Seconds | None = 30.0) -> Job:
        """Returns the job once finished, whatever its outcome; raises WaitTimeout (with
        `current_status` and `current_progress`) when `timeout` seconds pass first. See
        `Client.wait`."""
        return await self._send(calls.wait(job_id, timeout))

    async def logs(self, job_id: JobId, *, level: str | None = None, limit: int = 100, offset: int = 0) -> LogPage:
        """A job's log lines, oldest first, from `level` up; see `Client.logs`."""
        return await self._send(calls.logs(job_id, level=level, limit=limit, offset=offset))

    async def stats(self) -> Stats:
        """Counts by status, type and priority, and recent performance."""
        return await self._send(calls.stats())

    # --- queues, health -----------------------------------------------------------------------------

    async def queues(self) -> builtins.list[Queue]:
        """Every queue with its depth, oldest waiting job, throughput and workers."""
        return await self._send(calls.queues())

    async def pause_queue(self, name: str) -> QueueState:
        """Workers stop claiming from the queue (running jobs finish). Operators and above."""
        return await self._send(calls.set_queue_paused(name, True))

    async def resume_queue(self, name: str) -> QueueState:
        return await self._send(calls.set_queue_paused(name, False))

    async def workers(self) -> builtins.list[Worker]:
        """The live workers: host, pid, queues, concurrency, jobs running, last heartbeat."""
        return await self._send(calls.workers())

    async def health(self) -> Health:
        """The service's health (needs no credentials); `unhealthy` is returned, not raised."""
        return await self._send(calls.health())

    # --- the caller, sign-in, e-signatures ----------------------------------------------------------

    async def me(self) -> Caller:
        """Who these credentials are, their role and permissions; see `Client.me`."""
        return await self._send(calls.me())

    async def sign_in(self, user_id: str, password: str) -> SignIn:
        """A JWT for a local user; see `Client.sign_in`."""
        return await self._send(calls.sign_in(user_id, password))

    async def change_password(self, current: str, new: str) -> User:
        """The signed-in user's own password; see `Client.change_password`."""
        return await self._send(calls.change_own_password(current, new))

    async def signature_policy(self) -> SignaturePolicy:
        """The server's rules for e-signatures; see `Client.signature_policy`."""
        return await self._send(calls.signature_policy())

    async def signatures(self, job_id: JobId) -> builtins.list[SignatureRecord]:
        """The e-signatures applied to a job; see `Client.signatures`."""
        return await self._send(calls.job_signatures(job_id))

    # --- the result cache --------------------------------------------------------------------------

    async def cache_stats(self) -> CacheStats:
        """Cached results of the caller's scope; see `Client.cache_stats`."""
        return await self._send(calls.cache_stats())

    async def clear_cache(self, *, labels: Mapping[str, str] | None = None, signature: Signature | None = None) -> int:
        """Forgets cached results; see `Client.clear_cache`."""
        return await self._send(calls.clear_cache(labels, signature))


class AsyncSchedules:
    """`client.schedules` of an `AsyncClient`; see `Schedules`."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def list(self, *, page: int = 1, page_size: int = 20) -> Page[Schedule]:
        return await self._client._send(calls.list_schedules(page=page, page_size=page_size))

    async def create(
        self,
        name: str,
        job_type: str,
        data: Mapping[str, Any] | BaseModel | None = None,
        **settings: Unpack[ScheduleSettings],
    ) -> Schedule:
        """Creates a schedule (`cron` or `interval`); see `Schedules.create`."""
        return await self._client._send(calls.create_schedule(name, job_type, data, settings))

    async def get(self, schedule_id: JobId) -> Schedule:
        return await self._client._send(calls.get_schedule(schedule_id))

    async def update(
        self, schedule_id: JobId, *, signature: Signature | None = None, **changes: Unpack[ScheduleChanges]
    ) -> Schedule:
        """Changes the settings given (a new timing starts from now)."""
        return await self._client._send(calls.update_schedule(schedule_id, changes, signature))

    async def pause(self, schedule_id: JobId, *, signature: Signature | None = None) -> Schedule:
        return await self._client._send(calls.set_schedule_enabled(schedule_id, False, signature))

    async def resume(self, schedule_id: JobId, *, signature: Signature | None = None) -> Schedule:
        """Resumes from the first tick after now (ticks missed while paused never fire)."""
        return await self._client._send(calls.set_schedule_enabled(schedule_id, True, signature))

    async def delete(self, schedule_id: JobId, *, signature: Signature | None = None) -> Schedule:
        """Deletes the schedule (its jobs stay) and returns it as it was."""
        return await self._client._send(calls.delete_schedule(schedule_id, signature))

    async def run(self, schedule_id: JobId) -> Job:
        """One job of the schedule now; see `Schedules.run`."""
        return await self._client.get(await self._client._send(calls.run_schedule(schedule_id)))


class AsyncBatches:
    """`client.batches` of an `AsyncClient`; see `Batches`."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
        self, name: str, jobs: Sequence[BatchItem], *, parallel_limit: int | None = None, fail_fast: bool = False
    ) -> Batch:
        """Submits the jobs as one batch; see `Batches.create`."""
        return await self._client._send(
            calls.create_batch(name, jobs, parallel_limit=parallel_limit, fail_fast=fail_fast)
        )

    async def list(self, *, page: int = 1, page_size: int = 20) -> Page[Batch]:
        return await self._client._send(calls.list_batches(page=page, page_size=page_size))

    async def get(self, batch_id: JobId) -> Batch:
        return await self._client._send(calls.get_batch(batch_id))

    async def cancel(self, batch_id: JobId) -> Batch:
        """Cancels what has not finished; see `Batches.cancel`."""
        return await self._client._send(calls.cancel_batch(batch_id))


class AsyncAudit:
    """`client.audit` of an `AsyncClient`; see `Audit`."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def list(self, *, page: int = 1, page_size: int = 50, **filters: Unpack[AuditFilters]) -> Page[AuditRecord]:
        return await self._client._send(calls.list_audit(filters, page=page, page_size=page_size))

    async def export(self, *, format: str = "json", **filters: Unpack[AuditFilters]) -> str:
        """Every matching record as CSV or a JSON array; see `Audit.export`."""
        return await self._client._send(calls.export_audit(filters, format=format))

    async def verify(self) -> AuditVerdict:
        return await self._client._send(calls.verify_audit())


class AsyncApiKeys:
    """`client.api_keys` of an `AsyncClient`; see `ApiKeys`."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
        self, name: str, role: str, *, org_id: str | None = None, study_id: str | None = None
    ) -> NewApiKey:
        return await self._client._send(calls.create_api_key(name, role, org_id=org_id, study_id=study_id))

    async def list(self) -> builtins.list[ApiKey]:
        return await self._client._send(calls.list_api_keys())

    async def revoke(self, key_id: str, *, signature: Signature | None = None) -> ApiKey:
        return await self._client._send(calls.revoke_api_key(key_id, signature))


class AsyncUsers:
    """`client.users` of an `AsyncClient`; see `Users`."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def list(self) -> builtins.list[User]:
        return await self._client._send(calls.list_users())

    async def get(self, user_id: str) -> User:
        return await self._client._send(calls.get_user(user_id))

    async def create(self, user_id: str, *, name: str, role: str, password: str, org_id: str | None = None) -> User:
        return await self._client._send(
            calls.create_user(user_id, name=name, role=role, password=password, org_id=org_id)
        )

    async def update(
        self, user_id: str, *, name: str | None = None, role: str | None = None, disabled: bool | None = None
    ) -> User:
        return await self._client._send(calls.update_user(user_id, name=name, role=role, disabled=disabled))

    async def reset_password(self, user_id: str, password: str) -> User:
        return await self._client._send(calls.reset_password(user_id, password))

    async def unlock(self, user_id: str) -> User:
        return await self._client._send(calls.unlock_user(user_id))
