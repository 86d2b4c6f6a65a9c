"""What the dashboard asks of the API, on both databases: who the caller is (`/api/v1/me`), live
workers, finished jobs per minute for the charts, keyset pages of the job list with sort and
organisation filters, and the static pages themselves. Who may call each route is in
test_api_authz.py (generated from the route table); the pages in a browser in test_dashboard.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any
from uuid import UUID

from conftest import ApiHarness, eventually, running_worker

from conveyor.access import ROLE_PERMISSIONS, Role
from conveyor.model import Owner, Status


async def test_me_answers_the_callers_role_and_the_permissions_of_its_table(api: ApiHarness) -> None:
    for role in Role:
        headers = await api.key(role.value, org="org-a")
        body = (await api.client.get("/api/v1/me", headers=headers)).json()
        data = body["data"]
        assert body["success"] is True
        assert data["role"] == role.value and data["orgId"] == "org-a" and data["via"] == "api_key"
        assert data["permissions"] == sorted(p.value for p in ROLE_PERMISSIONS[role])
        assert data["superAdmin"] is (role is Role.SUPER_ADMIN)
    token = api.jwt(sub="ada", roles=["operator"], org="org-b", name="Ada Lovelace")
    data = (await api.client.get("/api/v1/me", headers=token)).json()["data"]
    assert (data["userId"], data["name"], data["role"], data["orgId"], data["via"]) == (
        "ada", "Ada Lovelace", "operator", "org-b", "jwt",
    )  # fmt: skip
    assert (await api.client.get("/api/v1/me")).status_code == 401


async def test_workers_lists_the_live_workers(api: ApiHarness) -> None:
    headers = await api.key("viewer", org="org-a")
    assert (await api.client.get("/api/v1/workers", headers=headers)).json()["data"]["workers"] == []
    async with running_worker(api.conveyor, concurrency=3, queues=["default", "reports"]) as worker:

        async def listed() -> list[dict[str, object]]:
            return (await api.client.get("/api/v1/workers", headers=headers)).json()["data"]["workers"]

        shown = (await eventually(listed))[0]
        assert shown["id"] == worker.worker_id
        assert (shown["queues"], shown["concurrency"], shown["running"]) == (["default", "reports"], 3, 0)
        assert shown["pid"] > 0 and shown["hostname"] and shown["lastSeenSecondsAgo"] < 30


async def test_throughput_counts_finished_jobs_per_minute_of_the_callers_scope(api: ApiHarness) -> None:
    mine = await api.key("operator", org="org-a")
    theirs = await api.key("operator", org="org-b")
    for value in range(3):
        await api.client.post("/api/v1/jobs", json={"type": "t.echo", "data": {"value": value}}, headers=mine)
    await api.client.post("/api/v1/jobs", json={"type": "t.fail", "data": {"permanent": True}}, headers=mine)
    await api.client.post("/api/v1/jobs", json={"type": "t.echo", "data": {"value": 9}}, headers=theirs)
    async with running_worker(api.conveyor):

        async def all_finished() -> bool:
            counts = await api.conveyor.engine.counts()
            return counts.get("completed", 0) == 4 and counts.get("failed", 0) == 1

        await eventually(all_finished, timeout=20)
    await api.conveyor.store.compact_rollups()  # PostgreSQL: folded or not, the counts are the same

    body = (await api.client.get("/api/v1/jobs/stats/throughput", headers=mine)).json()["data"]
    assert (body["window"], body["bucketMinutes"], len(body["buckets"])) == ("1h", 1, 60)
    starts = [datetime.fromisoformat(b["start"]) for b in body["buckets"]]
    assert all(b - a == timedelta(minutes=1) for a, b in pairwise(starts))
    assert starts[-1] <= datetime.now(UTC) < starts[-1] + timedelta(minutes=1, seconds=5)
    totals = {k: sum(b[k] for b in body["buckets"]) for k in ("completed", "failed", "cancelled")}
    assert totals == {"completed": 3, "failed": 1, "cancelled": 0}  # org-b's job is not counted
    busy = [b for b in body["buckets"] if b["completed"] or b["failed"]]
    assert sum(b["failed"] for b in busy) == 1
    assert all(b["errorRate"] is None for b in body["buckets"] if not (b["completed"] or b["failed"]))
    if len(busy) == 1:  # all in one minute (not across a minute's turn)
        assert busy[0]["errorRate"] == 25.0

    day = (await api.client.get("/api/v1/jobs/stats/throughput?window=24h", headers=mine)).json()["data"]
    assert (day["bucketMinutes"], len(day["buckets"])) == (15, 96)
    assert sum(b["completed"] for b in day["buckets"]) == 3
    wide = await api.client.get("/api/v1/jobs/stats/throughput?window=24h&bucket_minutes=60", headers=mine)
    assert len(wide.json()["data"]["buckets"]) == 24
    bad = await api.client.get("/api/v1/jobs/stats/throughput?window=7d", headers=mine)
    assert bad.status_code == 400 and bad.json()["details"]["field"] == "window"


async def _seed(api: ApiHarness, n: int, org: str) -> list[UUID]:
    ids = []
    for i in range(n):
        job = await api.conveyor.engine.enqueue(
            "t.echo", {"value": i}, queue="idle", owner=Owner(user_id="u", org_id=org), labels={"n": str(i % 3)}
        )
        ids.append(job.id)
    return ids


async def test_cursor_pages_walk_every_job_once_in_either_order(api: ApiHarness) -> None:
    ids = await _seed(api, 23, "org-a")
    await _seed(api, 4, "org-b")
    headers = await api.key("admin", org="org-a")
    for sort, expected in (("newest", ids[::-1]), ("oldest", ids)):
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 10, "sort": sort, **({"cursor": cursor} if cursor else {})}
            data = (await api.client.get("/api/v1/jobs", params=params, headers=headers)).json()["data"]
            assert data["total"] == 23
            seen += [j["id"] for j in data["jobs"]]
            cursor = data["nextCursor"]
            if cursor is None:
                break
        assert seen == [str(i) for i in expected], sort
    # filters hold across pages
    first = (await api.client.get("/api/v1/jobs", params={"limit": 3, "label": "n:0"}, headers=headers)).json()
    second = await api.client.get(
        "/api/v1/jobs", params={"limit": 3, "label": "n:0", "cursor": first["data"]["nextCursor"]}, headers=headers
    )
    labelled = [str(i) for n, i in enumerate(ids) if n % 3 == 0][::-1]
    assert [j["id"] for j in first["data"]["jobs"] + second.json()["data"]["jobs"]] == labelled[:6]
    bad = await api.client.get("/api/v1/jobs", params={"cursor": "not-a-cursor"}, headers=headers)
    assert bad.status_code == 400 and bad.json()["details"]["field"] == "cursor"


async def test_every_sort_key_pages_by_cursor_through_every_job_once_in_its_order(api: ApiHarness) -> None:
    """Each sort key, ascending and descending, walked in pages of 4 by cursor, gives the order
    the key defines (ties by creation time, then id; an unfinished job's finish time is later
    than any finished one's), every job once; filters hold across the pages."""
    owner = Owner(user_id="u", org_id="org-a")
    made = []
    for i in range(15):
        kind = "t.echo" if i % 3 else "t.fail"
        options: dict[str, Any] = {"queue": "idle", "owner": owner, "priority": 1 + (i * 7) % 4}
        if i % 5 == 4:
            options["delay"] = timedelta(hours=1 + i)  # scheduled, due later
        made.append(await api.conveyor.engine.enqueue(kind, {"value": i}, **options))
    for job in made[::4]:
        await api.conveyor.engine.cancel(job.id)  # finished: a completion time
    await api.conveyor.engine.enqueue("t.echo", {"value": 99}, queue="idle", owner=Owner(user_id="v", org_id="org-b"))
    stored = [await api.conveyor.store.get_job(j.id) for j in made]
    headers = await api.key("admin", org="org-a")
    last = datetime.max.replace(tzinfo=UTC)
    keys: dict[str, Any] = {
        "created": lambda j: j.created_at,
        "priority": lambda j: j.priority,
        "status": lambda j: j.status.value,
        "type": lambda j: j.kind,
        "run_at": lambda j: j.run_at,
        "finished": lambda j: j.completed_at or last,
    }
    for key, value in keys.items():
        for descending in (False, True):
            expected = sorted(stored, key=lambda j: (value(j), j.created_at, j.id), reverse=descending)
            sort = f"-{key}" if descending else key
            seen: list[str] = []
            cursor = None
            while True:
                params = {"limit": 4, "sort": sort, **({"cursor": cursor} if cursor else {})}
                answer = await api.client.get("/api/v1/jobs", params=params, headers=headers)
                data = answer.json()["data"]
                assert answer.status_code == 200 and data["total"] == 15, answer.text
                seen += [j["id"] for j in data["jobs"]]
                cursor = data["nextCursor"]
                if cursor is None:
                    break
            assert seen == [str(j.id) for j in expected], sort
    failing = await api.client.get("/api/v1/jobs", params={"sort": "-priority", "type": "t.fail"}, headers=headers)
    assert [j["type"] for j in failing.json()["data"]["jobs"]] == ["t.fail"] * 5
    bad = await api.client.get("/api/v1/jobs", params={"sort": "colour"}, headers=headers)
    assert bad.status_code == 400 and bad.json()["details"]["field"] == "sort"
    assert "priority" in bad.json()["error"]
    first = (await api.client.get("/api/v1/jobs", params={"sort": "priority", "limit": 2}, headers=headers)).json()
    other = await api.client.get(
        "/api/v1/jobs", params={"sort": "status", "cursor": first["data"]["nextCursor"]}, headers=headers
    )
    assert other.status_code == 400 and other.json()["details"]["field"] == "cursor"


async def test_org_filter_narrows_a_super_admins_list_and_never_widens_an_admins(api: ApiHarness) -> None:
    await _seed(api, 3, "org-a")
    await _seed(api, 2, "org-b")
    root = await api.key("super_admin")
    admin = await api.key("admin", org="org-a")

    async def total(headers: dict[str, str], **params: str) -> int:
        return int((await api.client.get("/api/v1/jobs", params=params, headers=headers)).json()["data"]["total"])

    assert await total(root) == 5
    assert await total(root, org_id="org-b") == 2
    assert await total(admin) == 3
    assert await total(admin, org_id="org-b") == 0


async def test_the_dashboard_is_served_with_a_strict_content_policy(api: ApiHarness) -> None:
    moved = await api.client.get("/dashboard")
    assert moved.status_code == 307 and moved.headers["location"] == "/dashboard/"
    page = await api.client.get("/dashboard/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="js/app.js">' in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy
    script = await api.client.get("/dashboard/js/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert (await api.client.get("/dashboard/../conveyor/settings.py")).status_code == 404
    assert (await api.client.get("/dashboard/js/nothing.js")).status_code == 404


async def test_a_finished_job_stays_in_the_minute_counts_after_a_restart(api: ApiHarness) -> None:
    """The charts read the database: a new app over the same database shows the same figures."""
    headers = await api.key("viewer", org="org-a")
    job = await api.conveyor.engine.enqueue("t.echo", {"value": 1}, owner=Owner(user_id="u", org_id="org-a"))
    async with running_worker(api.conveyor):
        assert (await api.conveyor.engine.wait(job.id, 20)).status is Status.COMPLETED
    before = (await api.client.get("/api/v1/jobs/stats/throughput", headers=headers)).json()["data"]["buckets"]
    from conftest import api_harness

    async with api_harness(str(api.conveyor.settings.database_url)) as again:
        after = (await again.client.get("/api/v1/jobs/stats/throughput", headers=headers)).json()["data"]["buckets"]
    assert sum(b["completed"] for b in before) == sum(b["completed"] for b in after) == 1
