"""Webhooks on both databases: events written with the outcomes that make them (only for
organisations that subscribe), dispatched by the leader into delivery jobs, signed so that a
receiver can verify them and refuse replays, retried with backoff when the receiver fails,
recorded attempt by attempt; outgoing URLs refused when they point into private ranges."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from conftest import eventually, make_settings, running_worker
from jobtypes_for_tests import jobtypes
from receiver import Receiver

from conveyor import Conveyor
from conveyor.engine import JobRequest
from conveyor.errors import InvalidWebhook
from conveyor.model import Owner, Status
from conveyor.webhooks import AllowList, TargetRefused, check_target, sign, verify_signature

ORG_A = Owner(user_id="u1", org_id="org-a", created_by="u1")
ORG_B = Owner(user_id="u2", org_id="org-b", created_by="u2")
FAST_RETRIES = {"webhook_allow_hosts": "127.0.0.1", "webhook_retry_base_seconds": 0.05, "webhook_timeout_seconds": 5}
# No scheduler in the tests' workers: the tests dispatch themselves (but for the last one).
MANUAL = {**FAST_RETRIES, "scheduler_enabled": False}


@pytest.fixture
async def hooks(database_url: str) -> AsyncIterator[Conveyor]:
    conveyor = Conveyor.from_settings(make_settings(database_url, **MANUAL), registries=[jobtypes])
    await conveyor.start()
    yield conveyor
    await conveyor.close()


async def outbox(app: Conveyor) -> list[Any]:
    return await app.store.webhook_events_page(1000)  # type: ignore[no-any-return]


async def run_jobs(app: Conveyor, *requests: JobRequest) -> list[Any]:
    jobs = await app.engine.enqueue_many(list(requests))
    async with running_worker(app):
        return [await app.engine.wait(j.id, timeout=20) for j in jobs]


async def test_outcomes_make_events_only_for_organisations_that_subscribe(hooks: Conveyor) -> None:
    await run_jobs(hooks, JobRequest("t.echo", {"value": 1}, owner=ORG_A))
    assert await outbox(hooks) == [], "no subscription: no event"

    async with Receiver() as receiver:
        await hooks.webhooks.create(org_id="org-a", url=receiver.url, events=["job.failed"])
        done = await run_jobs(
            hooks,
            JobRequest("t.echo", {"value": 2}, owner=ORG_A),  # completed: not subscribed to
            JobRequest("t.fail", {"permanent": True}, owner=ORG_A),
            JobRequest("t.fail", {"permanent": True}, owner=ORG_B),  # another organisation
        )
        cancelled = await hooks.engine.enqueue("t.echo", {"value": 3}, owner=ORG_A, delay=None)
        await hooks.engine.cancel(cancelled.id)
    events = await outbox(hooks)
    assert [(e.event_type, e.org_id, e.job_id) for e in events] == [("job.failed", "org-a", done[1].id)]


async def test_a_receiver_verifies_signatures_and_sees_retries_after_it_fails(hooks: Conveyor) -> None:
    async with Receiver(answers=[500, 503]) as receiver:
        webhook, secret = await hooks.webhooks.create(org_id="org-a", url=receiver.url, events=["job.completed"])
        assert secret.startswith("whsec_")
        [job] = await run_jobs(hooks, JobRequest("t.echo", {"value": 7}, owner=ORG_A, labels={"country": "Kenya"}))
        assert await hooks.dispatcher.run_once() == 1
        assert await hooks.dispatcher.run_once() == 0, "the event is gone from the outbox"
        async with running_worker(hooks):

            async def delivered() -> bool:
                return len(receiver.received) >= 3

            await eventually(delivered, timeout=20)
        received = list(receiver.received)

    assert len(received) == 3, "two failures, then the delivery that succeeded; no more"
    for request in received:
        header = request.headers["x-conveyor-signature"]
        assert verify_signature(secret, request.body, header)
        t = int(header.split(",")[0].removeprefix("t="))
        assert abs(time.time() - t) < 60
        assert not verify_signature(secret, request.body, header, now=t + 301), "a replay after 5 minutes is refused"
        assert not verify_signature("whsec_other", request.body, header)
        assert not verify_signature(secret, request.body + b" ", header), "a changed body is refused"
        assert request.headers["x-conveyor-event"] == "job.completed"
        assert request.headers["x-conveyor-webhook-id"] == str(webhook.id)
    assert [r.headers["x-conveyor-attempt"] for r in received] == ["1", "2", "3"]
    event = received[0].event
    assert {r.event["id"] for r in received} == {event["id"]}, "each retry carries the same event"
    assert event["type"] == "job.completed" and event["orgId"] == "org-a"
    assert event["data"]["job"]["id"] == str(job.id)
    assert event["data"]["job"]["status"] == "completed" and event["data"]["job"]["labels"] == {"country": "Kenya"}

    deliveries, total = await hooks.webhooks.deliveries(webhook.id, limit=10, offset=0)
    assert total == 3
    assert [(d.attempt, d.status_code, d.success) for d in reversed(deliveries)] == [
        (1, 500, False), (2, 503, False), (3, 200, True),
    ]  # fmt: skip
    assert all(d.duration_ms >= 0 and d.event_id == event["id"] for d in deliveries)
    assert deliveries[-1].error == "the receiver answered 500"
    delivery_job = await hooks.engine.get(deliveries[0].job_id)
    assert delivery_job.status is Status.COMPLETED and delivery_job.attempt == 3


async def test_delivery_jobs_make_no_events_of_their_own(hooks: Conveyor) -> None:
    async with Receiver() as receiver:
        await hooks.webhooks.create(org_id="org-a", url=receiver.url, events=["job.completed", "job.failed"])
        await run_jobs(hooks, JobRequest("t.echo", {"value": 1}, owner=ORG_A))
        await hooks.dispatcher.run_once()
        async with running_worker(hooks):
            await eventually(lambda: _true_when(len(receiver.received) == 1))
        assert await outbox(hooks) == [], "the delivery's own completion is not an event"


async def _true_when(value: bool) -> bool:
    return value


async def test_a_dispatch_repeated_after_a_crash_delivers_once(hooks: Conveyor) -> None:
    async with Receiver() as receiver:
        await hooks.webhooks.create(org_id="org-a", url=receiver.url, events=["job.completed"])
        await run_jobs(hooks, JobRequest("t.echo", {"value": 1}, owner=ORG_A))
        events = await outbox(hooks)
        # The leader made the jobs, then died before deleting the events: the next one repeats.
        original_delete = hooks.store.delete_webhook_events

        async def crash(ids: Any) -> None:
            raise RuntimeError("leader died")

        hooks.store.delete_webhook_events = crash  # type: ignore[method-assign]
        with pytest.raises(RuntimeError):
            await hooks.dispatcher.run_once()
        hooks.store.delete_webhook_events = original_delete  # type: ignore[method-assign]
        assert [e.id for e in await outbox(hooks)] == [e.id for e in events]
        await hooks.dispatcher.run_once()
        async with running_worker(hooks):
            await eventually(lambda: _true_when(len(receiver.received) == 1))
        _page, total = await hooks.engine.list(_delivery_filter(), limit=10, offset=0)
        assert total == 1, "the second dispatch found the first one's job by its idempotency key"


def _delivery_filter() -> Any:
    from conveyor.model import JobFilter

    return JobFilter(kinds=("webhook_delivery",))


async def test_batch_completed_is_announced_once_when_its_last_member_finishes(hooks: Conveyor) -> None:
    async with Receiver() as receiver:
        await hooks.webhooks.create(org_id="org-a", url=receiver.url, events=["batch.completed"])
        view = await hooks.batches.submit(
            "pair", [JobRequest("t.echo", {"value": n}) for n in range(2)], owner=ORG_A, parallel_limit=1
        )
        async with running_worker(hooks):
            for job in view.jobs:
                await hooks.engine.wait(job.id, timeout=20)
            await hooks.dispatcher.run_once()  # job events: the batch is announced
            await hooks.dispatcher.run_once()  # the batch's event: its delivery
            await hooks.dispatcher.run_once()
            await eventually(lambda: _true_when(len(receiver.received) == 1))
        [request] = receiver.received
    event = request.event
    assert event["type"] == "batch.completed"
    assert event["data"]["batch"]["id"] == str(view.batch.id)
    assert event["data"]["batch"]["status"] == "completed" and event["data"]["batch"]["total"] == 2


async def test_deleted_or_disabled_subscriptions_receive_nothing(hooks: Conveyor) -> None:
    async with Receiver() as receiver:
        webhook, _ = await hooks.webhooks.create(org_id="org-a", url=receiver.url, events=["job.completed"])
        await run_jobs(hooks, JobRequest("t.echo", {"value": 1}, owner=ORG_A))
        await hooks.dispatcher.run_once()
        await hooks.webhooks.update(webhook, enabled=False)
        async with running_worker(hooks):
            page, _ = await hooks.engine.list(_delivery_filter(), limit=10, offset=0)
            done = await hooks.engine.wait(page[0].id, timeout=20)
        assert done.status is Status.COMPLETED and done.result == {"skipped": "subscription disabled"}
        assert receiver.received == []


# --- outgoing URLs ------------------------------------------------------------------------------

NOTHING_ALLOWED = AllowList()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/x",
        "http://localhost/x",
        "http://10.1.2.3/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data",  # cloud metadata (link-local)
        "http://[::1]/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://[::ffff:127.0.0.1]/",  # IPv4-mapped loopback
        "http://100.64.0.1/",  # shared address space
        "http://0.0.0.0/",
        "http://224.0.0.1/",
    ],
)
async def test_private_loopback_and_link_local_targets_are_refused(url: str) -> None:
    with pytest.raises(TargetRefused, match="not public"):
        await check_target(url, NOTHING_ALLOWED)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://example.com/", "http:// or https://"),
        ("http:///path", "no host"),
        ("http://user:pw@93.184.216.34/", "credentials"),
        ("javascript:alert(1)", "http:// or https://"),
    ],
)
async def test_urls_of_the_wrong_form_are_refused(url: str, problem: str) -> None:
    with pytest.raises(TargetRefused, match=problem):
        await check_target(url, NOTHING_ALLOWED)


async def test_allow_listed_hosts_and_networks_pass_and_public_addresses_need_no_list() -> None:
    target = await check_target("https://93.184.216.34:8443/hooks?x=1", NOTHING_ALLOWED)
    assert (target.connect_url, target.host_header) == ("https://93.184.216.34:8443/hooks?x=1", "93.184.216.34:8443")
    assert (await check_target("http://127.0.0.1:9/", AllowList.parse(["127.0.0.0/8"]))).address == "127.0.0.1"
    assert (await check_target("http://localhost:9/", AllowList.parse(["localhost"]))).host == "localhost"
    with pytest.raises(TargetRefused):
        await check_target("http://127.0.0.1:9/", AllowList.parse(["10.0.0.0/8", "example.com"]))


async def test_the_target_is_checked_again_at_delivery(hooks: Conveyor) -> None:
    """A subscription saved while its host was allowed (or resolved to a public address) is
    refused at delivery once it no longer is: the attempt is recorded and the job fails for good."""
    async with Receiver() as receiver:
        webhook, _ = await hooks.webhooks.create(org_id="org-a", url=receiver.url, events=["job.completed"])
        hooks.webhooks.allow = NOTHING_ALLOWED  # as if the name now resolved to loopback
        job = await hooks.webhooks.ping(webhook)
        async with running_worker(hooks):
            done = await hooks.engine.wait(job.id, timeout=20)
        assert receiver.received == []
    assert done.status is Status.FAILED and done.attempt == 1
    [delivery], _ = await hooks.webhooks.deliveries(webhook.id, limit=10, offset=0)
    assert delivery.status_code is None and not delivery.success and "not public" in (delivery.error or "")


async def test_creating_a_subscription_checks_its_url(hooks: Conveyor) -> None:
    with pytest.raises(TargetRefused):
        await hooks.webhooks.create(org_id="org-a", url="http://10.0.0.1/x", events=["job.failed"])
    page, total = await hooks.store.list_webhooks(org_id="org-a")
    assert (page, total) == ([], 0)


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"url": "http://127.0.0.1/" + "x" * 2000}, "url"),
        ({"description": "d" * 201}, "description"),
        ({"description": "a\x00b"}, "description"),
        ({"org_id": "o" * 201}, "org_id"),
        ({"created_by": "c" * 201}, "created_by"),
        ({"events": []}, "events"),
        ({"events": ["job.failed", "job.exploded"]}, "events"),
    ],
)
async def test_settings_no_subscription_can_hold_are_refused_naming_the_field(
    hooks: Conveyor, settings: dict[str, Any], field: str
) -> None:
    """The API checks these at its edge; a library caller meets the same rules, on either
    database (PostgreSQL raised its own error, SQLite stored them)."""
    given = {"org_id": "org-a", "url": "http://127.0.0.1/x", "events": ["job.failed"], **settings}
    with pytest.raises(InvalidWebhook) as created:
        await hooks.webhooks.create(**given)
    assert created.value.details["field"] == field
    assert await hooks.store.list_webhooks(org_id=given["org_id"]) == ([], 0)
    webhook, _secret = await hooks.webhooks.create(org_id="org-a", url="http://127.0.0.1/x", events=["job.failed"])
    changes = {k: v for k, v in settings.items() if k in ("url", "description", "events")}
    if changes:
        with pytest.raises(InvalidWebhook) as updated:
            await hooks.webhooks.update(webhook, **changes)
        assert updated.value.details["field"] == field
        assert await hooks.webhooks.get(webhook.id) == webhook


def test_signatures_follow_the_documented_scheme() -> None:
    import hashlib
    import hmac

    body = b'{"id":"evt_1"}'
    header = sign("whsec_k", body, timestamp=1_700_000_000)
    expected = hmac.new(b"whsec_k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert verify_signature("whsec_k", body, header, now=1_700_000_100)
    assert not verify_signature("whsec_k", body, header, now=1_700_000_301)
    assert not verify_signature("whsec_k", body, "v1=" + expected, now=1_700_000_000), "no timestamp"
    assert not verify_signature("whsec_k", body, "t=x,v1=" + expected, now=1_700_000_000)


async def test_secrets_are_sealed_at_rest_when_a_key_is_configured(database_url: str) -> None:
    from conftest import TEST_ENCRYPTION

    settings = make_settings(database_url, **MANUAL, **TEST_ENCRYPTION)
    app = Conveyor.from_settings(settings, registries=[jobtypes])
    await app.start()
    try:
        webhook, secret = await app.webhooks.create(
            org_id="org-a", url="http://127.0.0.1:9/x", events=["job.completed"], secret="my-own-secret-1234"
        )
        stored = await app.store.get_webhook(webhook.id)
        assert secret == "my-own-secret-1234" and "my-own-secret" not in stored.secret
        assert stored.secret.startswith("sealed:")
        assert app.webhooks.open_secret(stored) == secret
    finally:
        await app.close()


async def test_the_leader_dispatches_and_the_workers_deliver_on_their_own(database_url: str) -> None:
    settings = make_settings(database_url, **FAST_RETRIES, scheduler_interval_seconds=0.1, scheduler_lease_seconds=5)
    app = Conveyor.from_settings(settings, registries=[jobtypes])
    await app.start()
    try:
        async with Receiver() as receiver:
            await app.webhooks.create(org_id="org-a", url=receiver.url, events=["job.completed"])
            job = await app.engine.enqueue("t.echo", {"value": 1}, owner=ORG_A)
            async with running_worker(app):  # its scheduler leads: dispatch runs each pass
                await eventually(lambda: _true_when(len(receiver.received) == 1), timeout=20)
        assert receiver.received[0].event["data"]["job"]["id"] == str(job.id)
    finally:
        await app.close()
