"""Backups of a database holding many jobs: how long each step takes, the file's size, the
restore's time, and the process's peak RSS before and after (the dump is streamed through
the cipher a chunk at a time, so the peak should not grow with the database).

    .venv/bin/python -m bench.backup [--jobs 100000] [--dialect sqlite|postgresql|both] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.databases import DEFAULT_SERVER_URL, PostgresDatabase
from conveyor import Conveyor, Settings
from conveyor.engine import JobRequest
from conveyor.store.migrate import upgrade

SERVER = os.environ.get("CONVEYOR_BENCH_DATABASE_URL", DEFAULT_SERVER_URL)
KEY = {"bench": base64.b64encode(os.urandom(32)).decode()}


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


async def measure(url: str, restore_url: str, work: Path, jobs: int) -> dict[str, Any]:
    settings = Settings(
        database_url=url, auto_migrate=False, encryption_keys=KEY, backup_root=str(work / "backups"), packs="none"
    )
    async with Conveyor.from_settings(settings) as app:
        payload = {"note": "x" * 200}
        for start in range(0, jobs, 5000):
            await app.engine.enqueue_many([JobRequest("noop", payload) for _ in range(min(5000, jobs - start))])
        rss_before = peak_rss_mb()
        marks: list[tuple[str, float]] = []
        started = time.perf_counter()
        result = await app.backups.take(
            app.backups.directory("."), on_step=lambda _n, name: marks.append((name, time.perf_counter()))
        )
        ended = time.perf_counter()
        rss_after = peak_rss_mb()
        steps = {}
        for (name, at), (_next, until) in zip(marks, [*marks[1:], ("end", ended)], strict=True):
            steps[f"{name}_s"] = round(until - at, 2)
        restore_started = time.perf_counter()
        await app.backups.restore(result.file, restore_url)
        restore_s = round(time.perf_counter() - restore_started, 2)
    return {
        "jobs": jobs,
        "rows": sum(result.manifest["tables"].values()),
        "dump_mb": round(result.manifest["dump_bytes"] / 1e6, 1),
        "file_mb": round(result.file_bytes / 1e6, 1),
        "backup_s": round(ended - started, 2),
        **steps,
        "restore_and_check_s": restore_s,
        "peak_rss_mb_before": rss_before,
        "peak_rss_mb_after": rss_after,
    }


async def run_sqlite(jobs: int, work: Path) -> dict[str, Any]:
    url = f"sqlite:///{work / 'source.db'}"
    await asyncio.to_thread(upgrade, url)
    return await measure(url, f"sqlite:///{work / 'restored.db'}", work, jobs)


async def run_postgres(jobs: int, work: Path) -> dict[str, Any]:
    source = PostgresDatabase(SERVER, f"conveyor_bench_backup_{os.getpid()}")
    target = PostgresDatabase(SERVER, f"conveyor_bench_restore_{os.getpid()}")
    await source.recreate()
    await target.recreate()
    try:
        await asyncio.to_thread(upgrade, source.url)
        return await measure(source.url, target.url, work, jobs)
    finally:
        await source.drop()
        await target.drop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--dialect", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report: dict[str, Any] = {}
    for dialect, run in (("sqlite", run_sqlite), ("postgresql", run_postgres)):
        if args.dialect in (dialect, "both"):
            with tempfile.TemporaryDirectory() as work:
                report[dialect] = await run(args.jobs, Path(work))
    if args.json:
        print(json.dumps(report))  # noqa: T201
        return
    for dialect, figures in report.items():
        print(f"{dialect}: " + ", ".join(f"{k} {v}" for k, v in figures.items()))  # noqa: T201


if __name__ == "__main__":
    asyncio.run(main())
