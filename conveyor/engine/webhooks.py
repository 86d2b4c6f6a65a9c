"""Webhooks: subscriptions (with their audit records), the leader's dispatch of the outbox into
delivery jobs, and the delivery itself (the built-in job type `webhook_delivery`).

An event's way: the transaction that finishes a job (or raises an alert) writes it to the
outbox (store/webhooks.py); the leader's pass (`Dispatcher.run_once`) reads the outbox, makes
one delivery job per subscription that wants the event, under the idempotency key
`webhook:<event id>:<subscription id>`, then deletes the events it read. A leader that dies
between the two leaves the events in place; the next pass makes the same jobs again, which the
keys turn into no-ops: each delivery is made once. A delivery job signs the event and POSTs it
(`Deliverer.deliver`), records the attempt (status code, duration, error), and fails with a
retryable error on anything but a 2xx, so the job's retry policy (exponential backoff with
jitter) tries again.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from conveyor.context import Context
from conveyor.crypto import Keyring
from conveyor.engine import Engine, JobRequest
from conveyor.engine.batches import BatchView
from conveyor.errors import InvalidWebhook, JobError, PermanentError, WebhookNotFound
from conveyor.jobtypes import Registry
from conveyor.model import Job, Owner, Priority, new_job_id, utc_now
from conveyor.retry import RetryPolicy
from conveyor.storable import text_problem
from conveyor.store.schema import webhooks as webhooks_table
from conveyor.store.webhooks import (
    BATCH_COMPLETED,
    DELIVERY_KIND,
    EVENT_TYPES,
    JOB_EVENTS,
    Delivery,
    Webhook,
    WebhookEvent,
)
from conveyor.webhooks import SIGNATURE_HEADER, AllowList, TargetRefused, check_target, sign

log = logging.getLogger("conveyor.webhooks")

PING = "ping"
# a prefix that marks generated secrets, not a secret (bandit B105)
SECRET_PREFIX = "whsec_"  # nosec B105
DISPATCH_BATCH = 500
USER_AGENT = "conveyor-webhooks/0.1"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def audited(webhook: Webhook) -> dict[str, Any]:
    """What the audit trail keeps of a subscription: never its secret."""
    return {
        "url": webhook.url,
        "events": list(webhook.events),
        "description": webhook.description,
        "enabled": webhook.enabled,
        "orgId": webhook.org_id,
    }


def secret_aad(webhook_id: UUID) -> str:
    return f"webhook:{webhook_id}:secret"


async def rotate_secrets(store: Any, keyring: Keyring, batch: int = 500) -> int:
    """Re-seal with the current key the subscriptions' secrets another key sealed; how many
    (else, once the old key is dropped, deliveries could not sign)."""
    done = offset = 0
    while True:
        page, _total = await store.list_webhooks(every_org=True, limit=batch, offset=offset)
        for webhook in page:
            if keyring.kid_of(webhook.secret) in (None, keyring.current):
                continue
            bound = secret_aad(webhook.id)
            resealed = keyring.seal_text(keyring.open_text(webhook.secret, bound), bound)
            done += await store.replace_webhook_secret(webhook.id, webhook.secret, resealed)
        if len(page) < batch:
            return done
        offset += batch


# The longest text a subscription's columns hold: the schema's sizes.
_TEXT_LIMITS = {name: webhooks_table.c[name].type.length for name in ("url", "description", "org_id", "created_by")}


def _check_settings(settings: dict[str, Any]) -> None:
    """Refuse settings no subscription can hold, naming the field (the API checks them at its
    edge too; library callers meet them here, on either database alike)."""
    for name, limit in _TEXT_LIMITS.items():
        value = settings.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > limit or text_problem(value)):
            raise InvalidWebhook(f"{name} must be text of at most {limit} characters", field=name)
    if "events" in settings:
        events = settings["events"]
        unknown = sorted(set(events) - set(EVENT_TYPES)) if not isinstance(events, str) else [events]
        if not events or unknown:
            wrong = ", ".join(unknown) or "none"
            raise InvalidWebhook(f"events: one or more of {', '.join(EVENT_TYPES)}; not {wrong}", field="events")


class Webhooks:
    """Subscriptions: create (the secret shown once), read, change, delete, each change audited."""

    def __init__(self, engine: Engine, *, allow: AllowList, keyring: Keyring | None = None, queue: str = "default"):
        self.engine = engine
        self.store: Any = engine.store
        self.allow = allow
        self.keyring = keyring
        self.queue = queue

    # --- secrets: sealed at rest when the installation has a key ---------------------------------

    def _seal(self, webhook_id: UUID, secret: str) -> str:
        return self.keyring.seal_text(secret, secret_aad(webhook_id)) if self.keyring else secret

    def open_secret(self, webhook: Webhook) -> str:
        if self.keyring is None or not webhook.secret.startswith("sealed:"):
            return webhook.secret
        return self.keyring.open_text(webhook.secret, secret_aad(webhook.id))

    # --- CRUD ------------------------------------------------------------------------------------

    async def check_url(self, url: str) -> None:
        """TargetRefused when the URL may not be called (form, or an address not public)."""
        await check_target(url, self.allow)

    async def create(
        self,
        *,
        org_id: str | None,
        url: str,
        events: Sequence[str],
        secret: str | None = None,
        description: str | None = None,
        enabled: bool = True,
        created_by: str | None = None,
    ) -> tuple[Webhook, str]:
        """Store a subscription; it and its secret in clear (shown to its creator once)."""
        _check_settings(
            {"org_id": org_id, "url": url, "events": events, "description": description, "created_by": created_by}
        )
        await self.check_url(url)
        webhook_id = new_job_id()
        plain = secret or new_secret()
        now = utc_now()
        webhook = Webhook(
            webhook_id, org_id, url, tuple(dict.fromkeys(events)), self._seal(webhook_id, plain),
            description, enabled, created_by, now, now,
        )  # fmt: skip
        await self.store.insert_webhook(webhook)
        await self.engine.audit.record("webhook.created", "webhook", webhook_id, after=audited(webhook), org_id=org_id)
        return webhook, plain

    async def get(self, webhook_id: UUID) -> Webhook | None:
        return await self.store.get_webhook(webhook_id)  # type: ignore[no-any-return]

    async def list(self, *, org_id: str | None, every_org: bool, limit: int, offset: int) -> tuple[list[Webhook], int]:
        return await self.store.list_webhooks(org_id=org_id, every_org=every_org, limit=limit, offset=offset)  # type: ignore[no-any-return]

    async def update(self, webhook: Webhook, **changes: Any) -> Webhook:
        """Change url, events, description, enabled or secret (given in clear)."""
        _check_settings(changes)
        if "url" in changes:
            await self.check_url(changes["url"])
        if "events" in changes:
            changes["events"] = list(dict.fromkeys(changes["events"]))
        secret_changed = "secret" in changes
        if secret_changed:
            changes["secret"] = self._seal(webhook.id, changes["secret"])
        before, after = await self.store.update_webhook(webhook.id, **changes)
        if after is None:
            raise WebhookNotFound(webhook.id)
        record = audited(after) | ({"secretRotated": True} if secret_changed else {})
        await self.engine.audit.record(
            "webhook.updated", "webhook", webhook.id, before=audited(before), after=record, org_id=after.org_id
        )
        return after  # type: ignore[no-any-return]

    async def delete(self, webhook: Webhook) -> Webhook | None:
        deleted = await self.store.delete_webhook(webhook.id)
        if deleted is not None:
            await self.engine.audit.record(
                "webhook.deleted", "webhook", webhook.id, before=audited(deleted), org_id=deleted.org_id
            )
        return deleted  # type: ignore[no-any-return]

    async def deliveries(self, webhook_id: UUID, *, limit: int, offset: int) -> tuple[list[Delivery], int]:
        return await self.store.list_deliveries(webhook_id, limit=limit, offset=offset)  # type: ignore[no-any-return]

    async def ping(self, webhook: Webhook) -> Job:
        """A `ping` event delivered to this subscription alone, now (a job like any delivery)."""
        event_id = f"evt_ping_{secrets.token_hex(8)}"
        event = envelope(event_id, PING, webhook.org_id, {"webhookId": str(webhook.id)})
        await self.engine.audit.record(
            "webhook.pinged", "webhook", webhook.id, after={"eventId": event_id}, org_id=webhook.org_id
        )
        return await self.engine.enqueue(
            DELIVERY_KIND, delivery_data(webhook, event), **self._job_options(webhook.org_id)
        )

    def _job_options(self, org_id: str | None) -> dict[str, Any]:
        return {"queue": self.queue, "owner": Owner(org_id=org_id, created_by="webhooks")}


def envelope(event_id: str, event_type: str, org_id: str | None, data: dict[str, Any]) -> dict[str, Any]:
    """The JSON body every delivery carries."""
    return {"id": event_id, "type": event_type, "createdAt": _iso(utc_now()), "orgId": org_id, "data": data}


def delivery_data(webhook: Webhook, event: dict[str, Any]) -> dict[str, Any]:
    return {"webhookId": str(webhook.id), "eventId": event["id"], "eventType": event["type"], "event": event}


def job_summary(job: Job, *, include_error: bool) -> dict[str, Any]:
    return {
        "id": str(job.id),
        "type": job.kind,
        "queue": job.queue,
        "status": job.status.value,
        "attempts": job.attempt,
        "maxAttempts": job.max_attempts,
        "createdAt": _iso(job.created_at),
        "startedAt": _iso(job.started_at),
        "completedAt": _iso(job.completed_at),
        "batchId": str(job.batch_id) if job.batch_id else None,
        "labels": job.labels or {},
        "error": job.error if include_error else None,
    }


class Dispatcher:
    """The leader's part: outbox events into delivery jobs."""

    def __init__(self, webhooks: Webhooks, *, batch: int = DISPATCH_BATCH) -> None:
        self.webhooks = webhooks
        self.engine = webhooks.engine
        self.store: Any = webhooks.store
        self.batch = batch

    async def run_once(self) -> int:
        """Dispatch up to a batch of events; how many delivery jobs were made."""
        events: list[WebhookEvent] = await self.store.webhook_events_page(self.batch)
        if not events:
            return 0
        # A batch whose last member finished gets its batch.completed event (written to the
        # outbox with the batch's mark, in one transaction: dispatched by the next pass).
        finished_batches = {e.batch_id for e in events if e.batch_id is not None and e.event_type in JOB_EVENTS}
        if finished_batches:
            await self.store.announce_completed_batches(finished_batches)
        subscriptions: list[Webhook] = await self.store.enabled_webhooks({e.org_id for e in events})
        jobs = {j.id: j for j in await self.store.get_jobs([e.job_id for e in events if e.job_id is not None])}
        requests = []
        for event in events:
            wanted = [w for w in subscriptions if w.org_id == event.org_id and w.wants(event.event_type)]
            if not wanted:
                continue
            body = envelope(f"evt_{event.id.hex}", event.event_type, event.org_id, await self._data(event, jobs))
            body["createdAt"] = _iso(event.created_at)
            for webhook in wanted:
                requests.append(
                    JobRequest(
                        DELIVERY_KIND,
                        delivery_data(webhook, body),
                        idempotency_key=f"webhook:{event.id}:{webhook.id}",
                        **self.webhooks._job_options(event.org_id),
                    )
                )
        if requests:
            await self.engine.enqueue_many(requests)
        await self.store.delete_webhook_events([e.id for e in events])
        return len(requests)

    async def _data(self, event: WebhookEvent, jobs: dict[UUID, Job]) -> dict[str, Any]:
        if event.job_id is not None:
            job = jobs.get(event.job_id)
            if job is None:  # deleted since: what the event itself knows
                status = event.event_type.removeprefix("job.")
                return {"job": {"id": str(event.job_id), "status": status, "batchId": _str(event.batch_id)}}
            return {"job": job_summary(job, include_error=not self.engine.sealing.sensitive(job.kind))}
        if event.event_type == BATCH_COMPLETED and event.batch_id is not None:
            return {"batch": await self._batch(event.batch_id)}
        return {"alert": event.payload} if event.event_type.startswith("alert.") else dict(event.payload or {})

    async def _batch(self, batch_id: UUID) -> dict[str, Any]:
        batch = await self.store.get_batch(batch_id)
        if batch is None:
            return {"id": str(batch_id)}
        members = (await self.store.batch_members([batch_id]))[batch_id]
        view = BatchView(batch, members)
        return {
            "id": str(batch.id),
            "name": batch.name,
            "status": view.status,
            "total": view.total,
            "counts": view.counts,
            "createdAt": _iso(batch.created_at),
            "cancelReason": batch.cancel_reason,
        }


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


class DeliveryInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    webhookId: UUID
    eventId: str
    eventType: str
    event: dict[str, Any]


@dataclass
class Deliverer:
    """The delivery job's body: sign, POST to the checked address, record the attempt."""

    webhooks: Webhooks
    timeout: float = 10.0

    async def deliver(self, ctx: Context, data: DeliveryInput) -> dict[str, Any]:
        webhook = await self.webhooks.get(data.webhookId)
        if webhook is None or not webhook.enabled:
            ctx.info("the subscription is gone or disabled: nothing sent", component="webhooks")
            return {"skipped": "subscription deleted" if webhook is None else "subscription disabled"}
        body = json.dumps(data.event, separators=(",", ":"), sort_keys=True).encode()
        started = time.perf_counter()
        try:
            target = await check_target(webhook.url, self.webhooks.allow)
        except TargetRefused as exc:
            await self._record(ctx, webhook, data, None, started, str(exc))
            raise
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Host": target.host_header,
            "X-Conveyor-Event": data.eventType,
            "X-Conveyor-Event-Id": data.eventId,
            "X-Conveyor-Webhook-Id": str(webhook.id),
            "X-Conveyor-Delivery": f"{ctx.job_id}:{ctx.attempt}",
            "X-Conveyor-Attempt": str(ctx.attempt),
            SIGNATURE_HEADER: sign(self.webhooks.open_secret(webhook), body),
        }
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        import httpx  # here, not at the top: workers that deliver nothing do not load it

        try:
            # Redirects are not followed: a 3xx could point anywhere, past the address check.
            async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False, trust_env=False) as client:
                response = await client.post(target.connect_url, content=body, headers=headers, extensions=extensions)
        except httpx.HTTPError as exc:
            message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            await self._record(ctx, webhook, data, None, started, message)
            raise JobError(f"delivery to {webhook.url} failed: {message}", code="WEBHOOK_UNREACHABLE") from None
        ok = 200 <= response.status_code < 300
        error = None if ok else f"the receiver answered {response.status_code}"
        delivery = await self._record(ctx, webhook, data, response.status_code, started, error)
        if not ok:
            raise JobError(f"delivery to {webhook.url}: {error}", code="WEBHOOK_REJECTED")
        return {"statusCode": response.status_code, "durationMs": delivery.duration_ms, "attempt": ctx.attempt}

    async def _record(
        self, ctx: Context, webhook: Webhook, data: DeliveryInput, status: int | None, started: float, error: str | None
    ) -> Delivery:
        duration_ms = round((time.perf_counter() - started) * 1000.0, 3)
        delivery = Delivery(
            webhook_id=webhook.id,
            event_id=data.eventId,
            event_type=data.eventType,
            job_id=ctx.job_id,
            attempt=ctx.attempt,
            status_code=status,
            success=error is None,
            duration_ms=duration_ms,
            error=error[:500] if error else None,
            delivered_at=utc_now(),
        )
        ctx.log(
            f"attempt {ctx.attempt}: {status or 'no answer'} in {duration_ms:.0f} ms"
            + (f" ({error})" if error else ""),
            "info" if error is None else "warning",
            component="webhooks",
        )
        return await self.webhooks.store.insert_delivery(delivery)  # type: ignore[no-any-return]


async def webhook_delivery(ctx: Context, data: DeliveryInput) -> dict[str, Any]:
    """Deliver one event to one subscription (see Deliverer)."""
    try:
        deliverer: Deliverer = ctx.service("webhooks")
    except LookupError as exc:
        raise PermanentError(str(exc)) from None
    return await deliverer.deliver(ctx, data)


def delivery_jobtypes(*, max_attempts: int, retry_base: timedelta, timeout: timedelta, queue: str) -> Registry:
    """The `webhook_delivery` job type with the installation's retry policy."""
    registry = Registry()
    policy = RetryPolicy(max_retries=max(0, max_attempts - 1), base=retry_base, max_delay=timedelta(hours=6))
    registry.job_type(DELIVERY_KIND, queue=queue, priority=Priority.HIGH, retry=policy, timeout=timeout, internal=True)(
        webhook_delivery
    )
    return registry


__all__ = ["Deliverer", "Dispatcher", "Webhooks", "delivery_jobtypes", "webhook_delivery"]
