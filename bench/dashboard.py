"""The dashboard's pages with a million jobs stored on PostgreSQL, loaded in a real browser.

    python -m bench.dashboard [--json] [--jobs 1000000] [--repeats 7]

1. Makes its own database (conveyor_bench_dashboard) on the server of $CONVEYOR_DATABASE_URL
   and seeds `--jobs` jobs as bench.api does (created over the last 24 hours, 90 % completed),
   then drops the database at the end.
2. Starts `conveyor serve --no-worker` and opens the dashboard in Chromium (Debian's
   /usr/bin/chromium through Playwright), signed in with an admin API key.
3. Loads each page `--repeats` times (after one unmeasured load): the jobs list (newest first,
   oldest first, by priority, by finish time, filtered by status, by type and status, the
   second page by cursor), the overview and one job's page. For each load it records the page's own API requests:
   **server time** is the sum of their times to first byte (request sent to the first byte
   of the answer, over loopback: the server's work plus the database's), and **render** the
   time from navigation to the page's content being on screen (the browser's work included).

The issue's bound: the jobs list renders in at most 300 ms of server time with a million jobs
stored. Medians over the repeats are reported; the machine is shared, so compare runs made one
after the other. With --json, stdout gets one JSON object; progress and the table go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.api import Server, create_api_key, seed
from bench.databases import PostgresDatabase, server_url

DATABASE = "conveyor_bench_dashboard"
CHROMIUM = os.environ.get("CONVEYOR_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SERVER_BOUND_MS = 300.0
log = logging.getLogger("bench.dashboard")

# page name -> (hash route, a selector that is on screen once the page has rendered its data)
PAGES = {
    "jobs": ("#/jobs", "#job-count"),
    "jobs_oldest_first": ("#/jobs?sort=oldest", "#job-count"),
    "jobs_pending": ("#/jobs?status=pending", "#job-count"),
    "jobs_type_and_status": ("#/jobs?type=noop&status=completed", "#job-count"),
    "jobs_by_priority": ("#/jobs?sort=-priority", "#job-count"),
    "jobs_by_finish_time": ("#/jobs?sort=finished", "#job-count"),
    "overview": ("#/", "#status-counts .tile"),
}
# Sorted by a key the jobs table has no index for (conveyor/store/ordering.py says why): the
# database sorts the matching jobs, so these are measured and printed but held to no bound.
UNBOUNDED = {"jobs_by_priority", "jobs_by_finish_time"}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object to stdout")
    parser.add_argument("--jobs", type=int, default=1_000_000, help="jobs stored (default 1000000)")
    parser.add_argument("--repeats", type=int, default=7, help="measured loads per page (default 7)")
    args = parser.parse_args()
    if args.jobs < 1 or args.repeats < 1:
        parser.error("--jobs and --repeats must be at least 1")
    server = server_url(parser)
    if not Path(CHROMIUM).exists():
        parser.error(f"no Chromium at {CHROMIUM} (bash scripts/chromium-up.sh installs it)")
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(name)s: %(message)s")
    log.setLevel(logging.INFO)
    logging.getLogger("bench.api").setLevel(logging.INFO)
    report = asyncio.run(run(server, args.jobs, args.repeats))
    table = render(report)
    if args.json:
        sys.stderr.write(table)
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        sys.stdout.write(table)
    return 0


async def run(server_url: str, jobs: int, repeats: int) -> dict[str, Any]:
    started = time.monotonic()
    database = PostgresDatabase(server_url, DATABASE)
    await database.recreate()
    try:
        seeded = await seed(database.url, jobs)
        key = await create_api_key(database.url)
        with tempfile.TemporaryDirectory(prefix="conveyor-bench-dashboard-") as workdir:
            async with Server(database.url, Path(workdir) / "serve.log") as server:
                pages = await measure(f"http://127.0.0.1:{server.port}", key, repeats)
    finally:
        await database.drop()
    jobs_list = [pages[name]["server_ms_p50"] for name in PAGES if name.startswith("jobs") and name not in UNBOUNDED]
    return {
        "jobs_stored": jobs,
        "seeded": seeded,
        "repeats": repeats,
        "pages": pages,
        "jobs_list_server_ms_worst_p50": max(jobs_list),
        "target": f"jobs list server time <= {SERVER_BOUND_MS:g} ms",
        "meets_target": max(jobs_list) <= SERVER_BOUND_MS,
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "run_seconds": round(time.monotonic() - started, 1),
    }


async def measure(base_url: str, key: str, repeats: int) -> dict[str, dict[str, Any]]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = await (await browser.new_context(viewport={"width": 1280, "height": 900})).new_page()
        await page.goto(f"{base_url}/dashboard/")
        await page.get_by_role("textbox", name="API key").fill(key)
        await page.get_by_role("button", name="Sign in with the key").click()
        await page.locator("#who").wait_for()
        results: dict[str, dict[str, Any]] = {}
        for name, (route, ready) in PAGES.items():
            loads = [await load(page, base_url, route, ready) for _ in range(repeats + 1)][1:]
            results[name] = summary(route, loads)
            log.info("%s: server %.1f ms, render %.1f ms (medians)", name, results[name]["server_ms_p50"],
                     results[name]["render_ms_p50"])  # fmt: skip
        # The second page of the list, by the cursor the first page's answer gave.
        loads = []
        for _ in range(repeats + 1):
            await load(page, base_url, "#/jobs", "#job-count")
            loads.append(await load(page, base_url, None, "#job-count", click="Older →"))
        results["jobs_second_page"] = summary("#/jobs, then Older →", loads[1:])
        # One job's page (a completed job, its logs and signatures).
        await load(page, base_url, "#/jobs?status=completed", "#job-count")
        job_id = await page.locator("#job-list tbody tr").first.get_by_role("link").get_attribute("title")
        loads = [await load(page, base_url, f"#/job/{job_id}", ".subtitle .badge") for _ in range(repeats + 1)]
        results["job"] = summary("#/job/{id}", loads[1:])
        await browser.close()
    return results


async def load(page: Any, base_url: str, route: str | None, ready: str, click: str | None = None) -> dict[str, Any]:
    """Go to `route` (or click the button named `click`) and wait for `ready` to show fresh data;
    the API requests it made, with their times to first byte."""
    requests: list[Any] = []

    def finished(request: Any) -> None:
        requests.append(request)

    page.on("requestfinished", finished)
    try:
        before = await page.locator(ready).first.text_content() if await page.locator(ready).count() else None
        started = time.perf_counter()
        if click:
            await page.get_by_role("button", name=click).click()
        else:
            # A hash change re-renders the page; a reload of the same route would not, so hop away.
            await page.goto(f"{base_url}/dashboard/#/bench-blank")
            requests.clear()
            started = time.perf_counter()
            await page.goto(f"{base_url}/dashboard/{route}")
        await page.locator(ready).first.wait_for(state="visible")
        if click and before is not None:
            await page.wait_for_function(
                "([sel, old]) => { const e = document.querySelector(sel); return e && e.textContent !== old; }",
                arg=[ready, before],
            )
        render_ms = (time.perf_counter() - started) * 1000
    finally:
        page.remove_listener("requestfinished", finished)
    # Once per URL: a refresh timer of the page left behind may ask again while this one loads.
    api = list({r.url: r for r in reversed(requests) if "/api/v1/" in r.url}.values())[::-1]
    server = [max(0.0, r.timing["responseStart"] - r.timing["requestStart"]) for r in api]
    return {"render_ms": render_ms, "server_ms": sum(server), "requests": [r.url.split("/api/v1/")[1] for r in api]}


def summary(route: str, loads: list[dict[str, Any]]) -> dict[str, Any]:
    server = [x["server_ms"] for x in loads]
    render = [x["render_ms"] for x in loads]
    return {
        "route": route,
        "requests": loads[-1]["requests"],
        "server_ms_p50": round(statistics.median(server), 1),
        "server_ms_max": round(max(server), 1),
        "render_ms_p50": round(statistics.median(render), 1),
        "render_ms_max": round(max(render), 1),
    }


def render(report: dict[str, Any]) -> str:
    lines = [
        f"dashboard with {report['jobs_stored']:,} jobs stored (PostgreSQL), medians of {report['repeats']} loads",
        f"{'page':24} {'server ms':>10} {'(max)':>8} {'render ms':>10} {'(max)':>8}  API requests",
    ]
    for name, p in report["pages"].items():
        lines.append(
            f"{name:24} {p['server_ms_p50']:>10.1f} {p['server_ms_max']:>8.1f} {p['render_ms_p50']:>10.1f} "
            f"{p['render_ms_max']:>8.1f}  {', '.join(p['requests'])}"
        )
    verdict = "meets" if report["meets_target"] else "MISSES"
    lines.append(f"jobs list, worst median server time {report['jobs_list_server_ms_worst_p50']:.1f} ms: {verdict} "
                 f"the target ({report['target']})")  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
