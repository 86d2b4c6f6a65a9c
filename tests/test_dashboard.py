"""The dashboard in a real browser (Chromium, driven by Playwright) against a real `conveyor
serve` (API, dashboard, a worker) on a SQLite file. Jobs are seeded through the engine, from
this process, into the same database; the tests sign in through the page and check what a
user sees and does: counts of their own organisation only, a job's page, cancelling a running
job from it, a role without the permission not offered the action, filters and pagination.

Skipped, saying why, where Chromium or Playwright is missing (scripts/test.sh installs both).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import httpx
import pytest

from conveyor import Conveyor, Settings
from conveyor.apikeys import ApiKeys
from conveyor.engine import JobRequest
from conveyor.engine.schedules import ScheduleSpec
from conveyor.model import Owner, Status

CHROMIUM = os.environ.get("CONVEYOR_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - the test extra installs it
    sync_playwright = None  # type: ignore[assignment]

pytestmark = [
    pytest.mark.skipif(sync_playwright is None, reason="Playwright is not installed (pip install -e '.[test]')"),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
]

T = TypeVar("T")
# Screenshots of each page, kept as test artefacts (CI may upload the directory).
ARTIFACTS = Path(os.environ.get("CONVEYOR_TEST_ARTIFACTS", "test-artifacts")) / "dashboard"
JWT_SECRET = "dashboard-tests-secret-that-is-long-enough-0123456789"
# The served installation's key: sensitive job types (the workbench's sentiment analysis) seal.
ENCRYPTION_KEYS = {"dash": "dGhpcyBpcyBhIHRlc3Qga2V5LCBub3QgYSBzZWNyZXQ="}
ORG = "org-a"
OTHER = "org-b"
IDLE = "reports"  # a queue no worker of the server serves: its jobs stay pending
SEEDED = 65  # org-a's pending jobs in IDLE: two pages of 50
PRIORITY = ["low", "high"]  # by the seeded job's index: odd ones are high
DASH = "\N{EN DASH}"  # the page writes ranges with an en dash: "Jobs 1 to 50 of 65"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """A running `conveyor serve`, its database, and API keys by role."""

    def __init__(self, base_url: str, database_url: str) -> None:
        self.base_url = base_url
        self.database_url = database_url
        self.keys: dict[str, str] = {}

    def engine(self, action: Callable[[Conveyor], Any]) -> Any:
        """Run `action(conveyor)` (a coroutine function) on the served database, from here (in
        a thread of its own: Playwright's synchronous API keeps an event loop on this one)."""

        async def run() -> Any:
            settings = Settings(database_url=self.database_url, auto_migrate=False, encryption_keys=ENCRYPTION_KEYS)
            conveyor = Conveyor.from_settings(settings)
            await conveyor.start()
            try:
                return await action(conveyor)
            finally:
                await conveyor.close()

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, run()).result()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp("dashboard")
    database_url = f"sqlite:///{directory / 'dashboard.db'}"
    port = _free_port()
    server = Served(f"http://127.0.0.1:{port}", database_url)

    async def prepare(conveyor: Conveyor) -> dict[str, str]:
        keys = ApiKeys(conveyor.store)
        made = {}
        for name, role, org in [
            ("admin", "admin", ORG),
            ("viewer", "viewer", ORG),
            ("operator", "operator", ORG),
            ("root", "super_admin", None),
        ]:
            made[name] = (await keys.create(role=role, name=f"{name} key", org_id=org)).key
        mine = Owner(user_id="alice", org_id=ORG, created_by="alice")
        theirs = Owner(user_id="bob", org_id=OTHER, created_by="bob")
        country = ["Kenya", "Peru", "Peru", "Peru", "Peru"]
        seeded = [
            JobRequest("noop", {}, queue=IDLE, owner=mine, labels={"country": country[i % 5]}, priority=PRIORITY[i % 2])
            for i in range(SEEDED)
        ]
        await conveyor.engine.enqueue_many(seeded + [JobRequest("noop", {}, queue=IDLE, owner=theirs)] * 7)
        return made

    # The first start migrates the new file.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _started(database_url)).result()
    server.keys = server.engine(prepare)
    env = {
        **os.environ,
        "CONVEYOR_DATABASE_URL": database_url,
        "API_PORT": str(port),
        "CONVEYOR_JWT_SECRET": JWT_SECRET,
        "CONVEYOR_ENCRYPTION_KEYS": json.dumps(ENCRYPTION_KEYS),
        "CONVEYOR_QUEUES": "default",
        "CONVEYOR_API_WORKERS": "1",
        "CONVEYOR_LOG_LEVEL": "WARNING",
    }
    log_path = directory / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen([sys.executable, "-m", "conveyor", "serve"], env=env, stdout=log, stderr=log)
        try:
            _wait_until_up(server.base_url, process, log_path)
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


async def _started(database_url: str) -> None:
    conveyor = Conveyor.from_settings(Settings(database_url=database_url, auto_migrate=True))
    await conveyor.start()
    await conveyor.close()


def _wait_until_up(base_url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base_url}/api/v1/jobs/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError("conveyor serve did not start:\n" + log_path.read_text())
        time.sleep(0.2)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(str(error)))
    yield opened
    context.close()
    assert not problems, f"errors in the page: {problems}"


def snap(page: Page, name: str) -> None:
    """Save the page as it is now, whole, as ARTIFACTS/<name>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, served: Served, key_name: str, at: str = "") -> None:
    page.goto(f"{served.base_url}/dashboard/{at}")
    page.get_by_role("textbox", name="API key").fill(served.keys[key_name])
    page.get_by_role("button", name="Sign in with the key").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def tile(page: Page, status: str) -> Any:
    return page.locator(f"#status-counts .tile[data-status='{status}'] .tile-value")


def test_signing_in_with_a_key_shows_the_organisations_counts_queues_and_charts(page: Page, served: Served) -> None:
    def finished(conveyor: Conveyor) -> Any:
        async def run() -> None:
            owner = Owner(user_id="alice", org_id=ORG)
            jobs = [await conveyor.engine.enqueue("noop", {}, owner=owner) for _ in range(3)]
            for job in jobs:  # the server's worker runs them
                assert (await conveyor.engine.wait(job.id, 30)).status is Status.COMPLETED

        return run()

    served.engine(finished)
    page.goto(f"{served.base_url}/dashboard/")
    page.get_by_role("textbox", name="API key").fill("cvk_0000000000000000_wrong")
    page.get_by_role("button", name="Sign in with the key").click()
    expect(page.get_by_role("alert").filter(has_text="unknown or revoked API key")).to_be_visible()
    snap(page, "sign-in")

    sign_in(page, served, "admin")
    expect(page.locator("#who")).to_contain_text("admin · organisation org-a")
    # org-a's jobs only: SEEDED pending (org-b's 7 are not counted) and the 3 completed here
    expect(tile(page, "pending")).to_have_text(str(SEEDED))
    expect(tile(page, "completed")).to_have_text(re.compile(r"^[3-9]$"))
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=IDLE, exact=True))
    expect(row).to_contain_text(f"{SEEDED}")
    expect(page.locator(".chart-summary").first).to_contain_text(re.compile(r"[3-9] completed"))
    expect(page.get_by_role("link", name="Audit trail")).to_be_visible()
    snap(page, "overview")

    page.get_by_role("link", name="pending").click()  # a tile opens the filtered list
    expect(page.locator("#job-count")).to_have_text(f"Jobs 1{DASH}50 of {SEEDED}")
    snap(page, "jobs")


def test_jobs_filters_search_and_pagination(page: Page, served: Served) -> None:
    sign_in(page, served, "admin", "#/jobs")
    filters = page.get_by_role("form", name="Filter jobs")
    filters.get_by_label("Queue").fill(IDLE)
    filters.get_by_role("button", name="Apply").click()
    expect(page.locator("#job-count")).to_have_text(f"Jobs 1{DASH}50 of {SEEDED}")
    first_page = page.locator("#job-list tbody tr").first.get_by_role("link").get_attribute("title")
    page.get_by_role("button", name="Older →").click()
    expect(page.locator("#job-count")).to_have_text(f"Jobs 51{DASH}{SEEDED} of {SEEDED}")
    expect(page.locator("#job-list tbody tr")).to_have_count(SEEDED - 50)
    expect(page.get_by_role("button", name="Older →")).to_be_disabled()
    page.get_by_role("button", name="← Newer").click()
    expect(page.locator("#job-count")).to_have_text(f"Jobs 1{DASH}50 of {SEEDED}")
    assert page.locator("#job-list tbody tr").first.get_by_role("link").get_attribute("title") == first_page

    # label and priority together: every fifth job is in Kenya; odd ones are high
    kenya_high = sum(1 for i in range(SEEDED) if i % 5 == 0 and i % 2)
    filters = page.get_by_role("form", name="Filter jobs")
    filters.get_by_label("Label").fill("country:Kenya")
    filters.get_by_label("Priority").select_option("high")
    filters.get_by_role("button", name="Apply").click()
    expect(page.locator("#job-count")).to_have_text(f"Jobs 1{DASH}{kenya_high} of {kenya_high}")
    assert "label=country%3AKenya" in page.url and "priority=high" in page.url
    filters = page.get_by_role("form", name="Filter jobs")
    filters.get_by_label("Status").select_option("completed")
    filters.get_by_role("button", name="Apply").click()
    expect(page.locator("#job-count")).to_have_text("No job matches (0).")

    # a column header sorts by its column, the other way when clicked again, and says so
    page.get_by_role("link", name="Clear").click()
    filters = page.get_by_role("form", name="Filter jobs")
    filters.get_by_label("Queue").fill(IDLE)
    filters.get_by_role("button", name="Apply").click()
    header = page.locator("#job-list th").filter(has=page.get_by_role("button", name="Priority"))
    expect(header).to_have_attribute("aria-sort", "none")
    header.get_by_role("button").click()
    expect(page).to_have_url(re.compile(r"sort=-priority"))
    header = page.locator("#job-list th").filter(has=page.get_by_role("button", name="Priority"))
    expect(header).to_have_attribute("aria-sort", "descending")
    expect(page.locator("#job-list caption")).to_have_text("Jobs, priority, highest first")
    highs = sum(1 for i in range(SEEDED) if i % 2)
    priorities = page.locator("#job-list tbody tr td:nth-child(4)")
    expect(priorities.first).to_contain_text("high")
    page.get_by_role("button", name="Next →").click()
    expect(page.locator("#job-count")).to_have_text(f"Jobs 51{DASH}{SEEDED} of {SEEDED}")
    expect(priorities).to_have_count(SEEDED - 50)
    assert all("low" in text for text in priorities.all_inner_texts()[highs - 50 :])
    header = page.locator("#job-list th").filter(has=page.get_by_role("button", name="Priority"))
    header.get_by_role("button").click()
    expect(page).to_have_url(re.compile(r"sort=priority(&|$)"))
    expect(page.locator("#job-list th").filter(has=page.get_by_role("button", name="Priority"))).to_have_attribute(
        "aria-sort", "ascending"
    )
    expect(priorities.first).to_contain_text("low")
    snap(page, "jobs-sorted")

    # oldest first starts with the first seeded job; its id opens its page
    page.get_by_role("link", name="Clear").click()
    filters = page.get_by_role("form", name="Filter jobs")
    filters.get_by_label("Queue").fill(IDLE)
    filters.get_by_label("Order").select_option("oldest")
    filters.get_by_role("button", name="Apply").click()
    expect(page.locator("#job-list caption")).to_have_text("Jobs, oldest first")
    oldest = page.locator("#job-list tbody tr").first.get_by_role("link").get_attribute("title")
    assert oldest is not None
    search = page.get_by_role("search", name="Find a job by id")
    search.get_by_label("Job id").fill(oldest)
    search.get_by_role("button", name="Open").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(oldest)
    expect(page.locator(".subtitle")).to_contain_text("pending")
    expect(page.locator(".subtitle")).to_contain_text(f"queue {IDLE}")


def _running_sleep(served: Served, seconds: float = 120) -> UUID:
    async def start(conveyor: Conveyor) -> UUID:
        owner = Owner(user_id="alice", org_id=ORG)
        job = await conveyor.engine.enqueue("sleep", {"seconds": seconds}, owner=owner, labels={"team": "ops"})
        deadline = time.monotonic() + 30
        while (await conveyor.engine.get(job.id)).status is not Status.RUNNING:
            assert time.monotonic() < deadline, "the server's worker did not start the job"
            await asyncio.sleep(0.1)
        return job.id

    return served.engine(start)  # type: ignore[no-any-return]


def test_cancel_a_running_job_from_its_page(page: Page, served: Served) -> None:
    job_id = _running_sleep(served)
    sign_in(page, served, "operator", f"#/job/{job_id}")
    expect(page.locator(".subtitle")).to_contain_text("running")
    expect(page.locator(".subtitle")).to_contain_text("sleep")
    bar = page.get_by_role("progressbar", name="job progress")
    expect(bar).to_be_visible()
    expect(page.get_by_text("team=ops")).to_be_visible()
    expect(bar).not_to_have_attribute("aria-valuenow", "0")
    snap(page, "job-running")

    page.get_by_role("button", name="Cancel job").click()
    dialog = page.get_by_role("dialog", name="Are you sure?")
    expect(dialog).to_contain_text(str(job_id))
    dialog.get_by_role("button", name="Cancel job").click()
    # the page follows the job live: cancelled at its next checkpoint
    expect(page.locator(".subtitle .badge")).to_have_text("cancelled", timeout=15_000)
    expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)
    expect(page.get_by_role("button", name="Retry")).to_be_visible()
    stored = served.engine(lambda conveyor: conveyor.engine.get(job_id))
    assert stored.status is Status.CANCELLED


def test_a_viewer_is_not_offered_actions_it_may_not_take(page: Page, served: Served) -> None:
    job_id = _running_sleep(served, seconds=60)
    try:
        sign_in(page, served, "viewer", f"#/job/{job_id}")
        expect(page.locator(".subtitle")).to_contain_text("running")
        expect(page.get_by_role("heading", name="Logs")).to_be_visible()
        expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)
        expect(page.get_by_role("link", name="Audit trail")).to_be_hidden()
        page.get_by_role("link", name="Queues").click()
        expect(page.get_by_role("link", name=IDLE, exact=True)).to_be_visible()
        expect(page.get_by_role("button", name="Pause")).to_have_count(0)
        snap(page, "queues")
        page.get_by_role("link", name="Workers").click()
        expect(page.get_by_role("cell", name="default", exact=True)).to_be_visible()
        snap(page, "workers")
    finally:
        served.engine(lambda conveyor: conveyor.engine.cancel(job_id))


def test_an_operator_pauses_and_resumes_a_queue(page: Page, served: Served) -> None:
    sign_in(page, served, "operator", "#/queues")
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=IDLE, exact=True))
    row.get_by_role("button", name="Pause").click()
    expect(row.get_by_role("button", name="Resume")).to_be_visible()
    expect(row).to_contain_text("paused")
    states = served.engine(lambda conveyor: conveyor.store.queue_states())
    assert states[IDLE].paused
    row.get_by_role("button", name="Resume").click()
    expect(row.get_by_role("button", name="Pause")).to_be_visible()
    assert not served.engine(lambda conveyor: conveyor.store.queue_states())[IDLE].paused


def test_a_super_admin_filters_by_organisation_and_an_admin_reads_the_audit_trail(page: Page, served: Served) -> None:
    sign_in(page, served, "root", "#/jobs")
    filters = page.get_by_role("form", name="Filter jobs")
    filters.get_by_label("Organisation").fill(OTHER)
    filters.get_by_role("button", name="Apply").click()
    expect(page.locator("#job-count")).to_have_text(f"Jobs 1{DASH}7 of 7")

    page.get_by_role("button", name="Sign out").click()
    sign_in(page, served, "admin", "#/audit")
    expect(page.get_by_role("heading", name="Audit trail")).to_be_visible()
    page.get_by_role("button", name="Verify the chain").click()
    expect(page.locator("#audit-verdict")).to_contain_text("Intact")
    snap(page, "audit-trail")
    with page.expect_download() as download:
        page.get_by_role("button", name="Export CSV").click()
    assert download.value.suggested_filename == "conveyor-audit.csv"
    assert Path(download.value.path()).read_text().startswith("seq,recordedAt")


PASSWORD = "correct horse battery staple"  # a test user's, in a throwaway database


async def _user(conveyor: Conveyor) -> None:
    """Ada, an operator of org-a with a password (where this build has user accounts)."""
    if not _has_user_accounts():
        return
    users = conveyor.users  # type: ignore[attr-defined]
    if await users.get("ada") is None:
        await users.create("ada", name="Ada Lovelace", role="operator", password=PASSWORD, org_id=ORG)


def test_batches_show_their_progress_and_an_operator_pauses_a_schedule(page: Page, served: Served) -> None:
    async def prepare(conveyor: Conveyor) -> str:
        owner = Owner(user_id="alice", org_id=ORG)
        # two jobs the server's worker runs, one in a queue it does not serve
        jobs = [JobRequest("noop", {}), JobRequest("noop", {}), JobRequest("noop", {}, queue="held")]
        view = await conveyor.batches.submit("nightly import", jobs, owner=owner)
        for member in view.jobs[:2]:
            assert (await conveyor.engine.wait(member.id, 30)).status is Status.COMPLETED
        spec = ScheduleSpec("yearly report", "noop", {}, cron="0 0 1 1 *")
        await _user(conveyor)  # changing a schedule is a critical operation: a key's signer
        return (await conveyor.schedules.create(spec, owner=owner)).id

    schedule_id = served.engine(prepare)
    sign_in(page, served, "operator", "#/batches")
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name="nightly import"))
    expect(row).to_contain_text("2 completed, 0 failed, 0 cancelled, 0 running, 1 waiting")
    expect(row.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "67")
    snap(page, "batches")

    page.get_by_role("link", name="Schedules").click()
    row = page.get_by_role("row").filter(has=page.get_by_role("cell", name="yearly report"))
    expect(row).to_contain_text("cron 0 0 1 1 * (UTC)")
    expect(row).to_contain_text("-01-01 00:00:00 UTC")  # the next fire time
    snap(page, "schedules")
    row.get_by_role("button", name="Pause").click()
    signature = page.get_by_role("dialog", name="Electronic signature")
    if _has_user_accounts():  # an API key signs with a local user of its organisation
        signature.get_by_label("User id").fill("ada")
        signature.get_by_label("Password").fill(PASSWORD)
        signature.get_by_label("Meaning").fill("approved")
        signature.get_by_role("button", name="Sign and continue").click()
    expect(row.get_by_role("button", name="Resume")).to_be_visible()
    expect(row).to_contain_text("paused")
    schedule = served.engine(lambda conveyor: conveyor.store.get_schedule(schedule_id))
    assert schedule.enabled is False
    # Run now, paused or not: one job at once, and the page follows it.
    row.get_by_role("button", name="Run yearly report now").click()
    expect(page).to_have_url(re.compile(r"#/job/[0-9a-f-]{36}$"))
    expect(page.locator(".subtitle")).to_contain_text("noop")
    expect(page.locator(".subtitle .badge")).to_have_text("completed", timeout=15_000)
    ran = served.engine(lambda conveyor: conveyor.engine.get(UUID(page.url.rsplit("/", 1)[1])))
    assert ran.schedule_id == schedule_id


def _has_user_accounts() -> bool:
    from conveyor.api.app import route_table

    return any(r.path == "/api/v1/auth/token" for r in route_table())


@pytest.mark.skipif(not _has_user_accounts(), reason="this build has no user accounts (POST /api/v1/auth/token)")
def test_a_user_signs_in_and_signs_a_critical_cancel(page: Page, served: Served) -> None:
    """Cancelling a critical-priority job is a critical operation by default: the page asks for
    the e-signature, sends it with the request, and the job is cancelled with it recorded."""

    async def prepare(conveyor: Conveyor) -> UUID:
        await _user(conveyor)
        owner = Owner(user_id="ada", org_id=ORG, created_by="Ada Lovelace")
        job = await conveyor.engine.enqueue("noop", {}, queue=IDLE, owner=owner, priority="critical")
        return job.id

    job_id = served.engine(prepare)
    page.goto(f"{served.base_url}/dashboard/#/job/{job_id}")
    sign_in_form = page.get_by_role("form", name="With a user account")
    sign_in_form.get_by_label("User id").fill("ada")
    sign_in_form.get_by_label("Password").fill("not the password")
    sign_in_form.get_by_role("button", name="Sign in").click()
    expect(sign_in_form.get_by_role("alert")).not_to_be_empty()
    sign_in_form.get_by_label("Password").fill(PASSWORD)
    sign_in_form.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_contain_text("Ada Lovelace · operator · organisation org-a")
    expect(page.locator(".subtitle")).to_contain_text("pending")

    page.get_by_role("button", name="Cancel job").click()
    page.get_by_role("dialog", name="Are you sure?").get_by_role("button", name="Cancel job").click()
    signature = page.get_by_role("dialog", name="Electronic signature")
    expect(signature).to_be_visible()
    expect(signature.get_by_label("User id")).to_have_value("ada")
    signature.get_by_label("Password").fill("a wrong password")
    signature.get_by_label("Meaning").fill("approved")
    signature.get_by_role("button", name="Sign and continue").click()
    expect(signature.locator("#signature-error")).to_contain_text("signature refused")
    signature.get_by_label("Password").fill(PASSWORD)
    signature.get_by_role("button", name="Sign and continue").click()
    expect(page.locator(".subtitle .badge")).to_have_text("cancelled")
    expect(page.get_by_role("cell", name="approved", exact=True)).to_be_visible()  # the job's e-signatures


def test_an_operator_sees_the_alerts_and_deletes_a_finished_job(page: Page, served: Served) -> None:
    """Deleting a job is a critical operation by default: the page asks for the e-signature;
    the job is gone from the database, and the overview lists the organisation's alerts."""

    async def prepare(conveyor: Conveyor) -> UUID:
        await _user(conveyor)
        job = await conveyor.engine.enqueue("noop", {}, queue="parked", owner=Owner(user_id="alice", org_id=ORG))
        await conveyor.engine.cancel(job.id)
        return job.id

    job_id = served.engine(prepare)
    sign_in(page, served, "operator")
    expect(page.locator("#active-alerts")).to_contain_text("No active alert.")
    page.goto(f"{served.base_url}/dashboard/#/job/{job_id}")
    expect(page.locator(".subtitle .badge")).to_have_text("cancelled")
    page.get_by_role("button", name="Delete job").click()
    page.get_by_role("dialog", name="Are you sure?").get_by_role("button", name="Delete job").click()
    if _has_user_accounts():
        signature = page.get_by_role("dialog", name="Electronic signature")
        signature.get_by_label("User id").fill("ada")
        signature.get_by_label("Password").fill(PASSWORD)
        signature.get_by_label("Meaning").fill("approved")
        signature.get_by_role("button", name="Sign and continue").click()
    expect(page).to_have_url(re.compile(r"#/jobs$"))
    assert served.engine(lambda conveyor: conveyor.store.get_job(job_id)) is None


def test_a_job_page_lists_the_attempts_that_ended_in_an_error(page: Page, served: Served) -> None:
    async def timed_out(conveyor: Conveyor) -> UUID:
        owner = Owner(user_id="alice", org_id=ORG)
        job = await conveyor.engine.enqueue("sleep", {"seconds": 30}, owner=owner, timeout=timedelta(seconds=1))
        assert (await conveyor.engine.wait(job.id, 30)).status is Status.TIMEOUT
        return job.id

    job_id = served.engine(timed_out)
    sign_in(page, served, "viewer", f"#/job/{job_id}")
    expect(page.locator(".subtitle .badge")).to_have_text("timeout")
    row = page.locator("#attempt-errors tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Timeout: job exceeded its timeout of 1.0s")
    expect(row.locator("td").first).to_have_text("1")


def test_a_job_page_shows_its_data_and_masks_sensitive_data_from_a_viewer(page: Page, served: Served) -> None:
    """A sensitive job type's data (sealed at rest): the admin reads it on the job page; the
    viewer, whose role lacks jobs:read-sensitive, sees its fields with the values masked."""
    secret = "call Jane Roe on 555-0100"

    async def held(conveyor: Conveyor) -> UUID:
        owner = Owner(user_id="alice", org_id=ORG)
        data = {"texts": [secret]}
        job = await conveyor.engine.enqueue("sentiment_analysis_batch", data, queue="parked", owner=owner)
        await conveyor.engine.cancel(job.id)  # kept out of the pending counts other tests check
        return job.id

    job_id = served.engine(held)
    sign_in(page, served, "admin", f"#/job/{job_id}")
    data = page.locator("#job-data")
    expect(data.locator("pre")).to_contain_text(secret)
    expect(data.get_by_role("note")).to_have_count(0)
    snap(page, "job-data")

    page.get_by_role("button", name="Sign out").click()
    sign_in(page, served, "viewer", f"#/job/{job_id}")
    expect(data.get_by_role("note")).to_contain_text("your role may not read this job's data")
    expect(data.locator("pre")).to_contain_text('"texts": "[masked]"')
    expect(page.locator("main")).not_to_contain_text("Jane Roe")
    snap(page, "job-data-masked")


def test_a_job_page_lists_the_audit_records_naming_it_among_others(page: Page, served: Served) -> None:
    """A worker records its outcomes one record per batch of jobs (`after.jobIds`): the job's
    page shows that record beside the job's own."""

    async def completed(conveyor: Conveyor) -> UUID:
        job = await conveyor.engine.enqueue("noop", {}, owner=Owner(user_id="alice", org_id=ORG))
        assert (await conveyor.engine.wait(job.id, 30)).status is Status.COMPLETED
        return job.id

    job_id = served.engine(completed)
    sign_in(page, served, "admin", f"#/job/{job_id}")
    audit = page.locator("section").filter(has=page.get_by_role("heading", name="Audit records and signatures"))
    expect(audit.get_by_role("cell", name="job.completed", exact=True)).to_be_visible()
    expect(audit.get_by_role("cell", name="job.created", exact=True)).to_be_visible()
    snap(page, "job-audit")


def test_a_job_enqueued_over_the_api_appears_live_without_a_poll(page: Page, served: Served) -> None:
    """The overview and the jobs list follow the change feed (GET /api/v1/events): a job made
    over the API shows without a reload, with the polling interval set to an hour, and the
    page reads the API at most once a second."""
    page.add_init_script("sessionStorage.setItem('conveyor.pollMs', '3600000')")
    summaries: list[float] = []
    page.on("request", lambda r: summaries.append(time.monotonic()) if "/jobs/stats/summary" in r.url else None)
    headers = {"Authorization": f"Bearer {served.keys['admin']}"}
    queue = "live"  # served by no worker: the jobs stay pending

    def enqueue() -> str:
        made = httpx.post(
            f"{served.base_url}/api/v1/jobs", json={"type": "noop", "data": {}, "queue": queue}, headers=headers
        )
        assert made.status_code == 201, made.text
        return str(made.json()["data"]["jobId"])

    made: list[str] = []
    try:
        sign_in(page, served, "admin")
        expect(page.locator("#live")).to_have_text("live")
        row = page.get_by_role("row").filter(has=page.get_by_role("link", name=queue, exact=True))
        expect(row).to_have_count(0)
        made.append(enqueue())
        expect(row.locator("td").nth(2)).to_have_text("1")  # the queue's pending count, live
        snap(page, "overview-live")
        page.goto(f"{served.base_url}/dashboard/#/jobs?queue={queue}")
        expect(page.locator("#job-count")).to_have_text(f"Jobs 1{DASH}1 of 1")
        made.append(enqueue())
        expect(page.locator("#job-count")).to_have_text(f"Jobs 1{DASH}2 of 2")
        expect(page.locator("#job-list tbody tr")).to_have_count(2)
    finally:
        for job_id in made:
            httpx.post(f"{served.base_url}/api/v1/jobs/{job_id}/cancel", headers=headers)
    gaps = [b - a for a, b in itertools.pairwise(summaries)]
    assert all(gap > 0.8 for gap in gaps), gaps  # coalesced: once a second at most
