"""Webhooks and alerts over HTTP, on both databases: the secret shown once, changes audited,
URLs checked, a ping delivered and listed among the deliveries, alerts listed and on /metrics.
Who may call which route, and that another organisation's subscription is 404, is in
test_api_authz.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from conftest import ApiHarness, api_harness, eventually, running_worker
from receiver import Receiver

from conveyor.store.audit import AuditFilter
from conveyor.webhooks import verify_signature


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[ApiHarness]:
    async with api_harness(database_url, webhook_allow_hosts="127.0.0.1", webhook_retry_base_seconds=0.05) as harness:
        yield harness


async def test_a_subscription_is_created_shown_changed_and_deleted(api: ApiHarness) -> None:
    admin = await api.key("admin", org="org-a")
    async with Receiver() as receiver:
        created = await api.client.post(
            "/api/v1/webhooks", json={"url": receiver.url, "events": ["job.failed"], "description": "pager"},
            headers=admin,
        )  # fmt: skip
        assert created.status_code == 201, created.text
        data = created.json()["data"]
        secret, webhook_id = data["secret"], data["id"]
        assert secret.startswith("whsec_") and data["orgId"] == "org-a" and data["events"] == ["job.failed"]

        shown = (await api.client.get(f"/api/v1/webhooks/{webhook_id}", headers=admin)).json()["data"]
        assert "secret" not in shown and shown["url"] == receiver.url
        listed = (await api.client.get("/api/v1/webhooks", headers=admin)).json()["data"]
        assert [w["id"] for w in listed["webhooks"]] == [webhook_id] and listed["total"] == 1
        assert all("secret" not in w for w in listed["webhooks"])

        changed = await api.client.patch(
            f"/api/v1/webhooks/{webhook_id}", json={"events": ["job.failed", "alert.raised"], "rotateSecret": True},
            headers=admin,
        )  # fmt: skip
        assert changed.status_code == 200, changed.text
        new_secret = changed.json()["data"]["secret"]
        assert new_secret != secret and changed.json()["data"]["events"] == ["job.failed", "alert.raised"]

        pinged = await api.client.post(f"/api/v1/webhooks/{webhook_id}/ping", headers=admin)
        assert pinged.status_code == 202, pinged.text
        async with running_worker(api.conveyor):

            async def delivered() -> bool:
                return len(receiver.received) == 1

            await eventually(delivered)
        [request] = receiver.received
        assert request.event["type"] == "ping"
        assert verify_signature(new_secret, request.body, request.headers["x-conveyor-signature"])
        assert not verify_signature(secret, request.body, request.headers["x-conveyor-signature"]), "rotated"

        async def recorded() -> list[dict[str, object]]:
            url = f"/api/v1/webhooks/{webhook_id}/deliveries"
            return (await api.client.get(url, headers=admin)).json()["data"]["deliveries"]  # type: ignore[no-any-return]

        [delivery] = await eventually(recorded)
        assert (delivery["eventType"], delivery["statusCode"], delivery["success"], delivery["attempt"]) == (
            "ping", 200, True, 1,
        )  # fmt: skip
        assert delivery["jobId"] == pinged.json()["data"]["jobId"]

    deleted = await api.client.delete(f"/api/v1/webhooks/{webhook_id}", headers=admin)
    assert deleted.status_code == 200 and deleted.json()["data"]["deleted"] is True
    gone = await api.client.get(f"/api/v1/webhooks/{webhook_id}", headers=admin)
    assert gone.status_code == 404 and gone.json()["details"]["code"] == "WEBHOOK_NOT_FOUND"

    records, _ = await api.conveyor.audit.list(AuditFilter(object_type="webhook"), limit=20)
    assert [r.action for r in records] == ["webhook.created", "webhook.updated", "webhook.pinged", "webhook.deleted"]
    assert all(secret not in str(r.after) and new_secret not in str(r.after) for r in records)
    updated = next(r for r in records if r.action == "webhook.updated")
    assert updated.before["events"] == ["job.failed"] and updated.after["secretRotated"] is True


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "http://10.0.0.7/hook", "events": ["job.failed"]}, "url"),
        ({"url": "http://169.254.169.254/latest", "events": ["job.failed"]}, "url"),
        ({"url": "file:///etc/passwd", "events": ["job.failed"]}, "url"),
        ({"url": "http://127.0.0.1:9/x", "events": ["job.exploded"]}, "events.0"),
        ({"url": "http://127.0.0.1:9/x", "events": []}, "events"),
        ({"url": "http://127.0.0.1:9/x", "events": ["job.failed"], "secret": "short"}, "secret"),
        ({"url": "http://127.0.0.1:9/x", "events": ["job.failed"], "orgId": "org-b"}, "orgId"),
    ],
)
async def test_bad_subscriptions_are_refused_naming_the_field(
    api: ApiHarness, body: dict[str, object], field: str
) -> None:
    admin = await api.key("admin", org="org-a")
    response = await api.client.post("/api/v1/webhooks", json=body, headers=admin)
    assert response.status_code in (400, 403), response.text
    details = response.json()["details"]
    assert details.get("field") == field or any(e["field"] == field for e in details.get("errors", [])), details
    assert (await api.client.get("/api/v1/webhooks", headers=admin)).json()["data"]["total"] == 0


async def test_alerts_are_listed_and_exported_as_metrics(api: ApiHarness) -> None:
    store = api.conveyor.store
    raised = await store.raise_alert(
        org_id="org-a", kind="t.echo", metric="error_rate", threshold=0.01, value=0.2, samples=50
    )
    old = await store.raise_alert(
        org_id="org-a", kind="t.fail", metric="latency_p95_ms", threshold=1000, value=1500, samples=30
    )
    await store.clear_alert(old.id, 200.0)
    operator = await api.key("operator", org="org-a")
    active = (await api.client.get("/api/v1/alerts", headers=operator)).json()["data"]
    assert [a["id"] for a in active["alerts"]] == [str(raised.id)] and active["alerts"][0]["status"] == "active"
    cleared = (await api.client.get("/api/v1/alerts?status=cleared", headers=operator)).json()["data"]
    assert [(a["jobType"], a["clearedValue"]) for a in cleared["alerts"]] == [("t.fail", 200.0)]
    every = (await api.client.get("/api/v1/alerts?status=all", headers=operator)).json()["data"]
    assert every["total"] == 2
    metrics = await api.client.get("/metrics", headers=operator)
    assert 'conveyor_alerts_active{metric="error_rate",org="org-a",type="t.echo"} 0.2' in metrics.text
    assert 't.fail"' not in metrics.text.split("conveyor_alerts_active")[-1]


async def test_study_scoped_admins_may_not_manage_organisation_wide_subscriptions(api: ApiHarness) -> None:
    scoped = await api.key("admin", org="org-a", study="study-1")
    body = {"url": "http://127.0.0.1:9/x", "events": ["job.failed"]}
    refused = await api.client.post("/api/v1/webhooks", json=body, headers=scoped)
    assert refused.status_code == 403 and refused.json()["details"]["code"] == "FORBIDDEN"
    assert (await api.client.get("/api/v1/webhooks", headers=scoped)).status_code == 403
    admin = await api.key("admin", org="org-a")
    created = (await api.client.post("/api/v1/webhooks", json=body, headers=admin)).json()["data"]
    assert (await api.client.get(f"/api/v1/webhooks/{created['id']}", headers=scoped)).status_code == 403
