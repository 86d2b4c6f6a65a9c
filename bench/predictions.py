"""Seed 004's bulk upload end to end: a generated CSV scored through the API by a worker process.

    python -m bench.predictions [--json] [--rows 1000000] [--chunk-rows 100000]

1. Generates a CSV of `--rows` annual statements (polars, in a temporary directory): every
   column of seed 004's upload, amounts varied per row, and one row in 100 with a market cap
   that is not a number (a per-row error).
2. Makes a database of its own, conveyor_bench_predictions, on the server of
   $CONVEYOR_DATABASE_URL (default postgresql://conveyor:conveyor@127.0.0.1:5432/conveyor; its
   role needs CREATEDB), dropped at the end, also when something failed.
3. Starts `conveyor serve --no-worker` and one `conveyor worker` process, both with the same
   CONVEYOR_DATA_DIR (in the temporary directory) and an upload limit that fits the file, and
   waits until the worker has registered (its start-up is not measured).
4. POSTs the file to /api/v1/predictions/annual/bulk-upload-async (streamed from disk), then
   polls GET /api/v1/predictions/jobs/{id}/status every 50 ms until the job finishes.

Figures:
- rows_per_s: rows / seconds from the upload's first byte to the poll that sees the job
  completed (upload, queueing, reading, checking, scoring and writing results all inside);
- job_rows_per_s: the job's own processed rows / processing_time_seconds (from its detail);
- first_progress_s: from the upload's answer to the first poll that shows rows processed;
- peak_rss_mb: the worker process's peak resident set size (the kernel's VmHWM);
- upload_s, upload_mb: the upload alone, and the file's size.

With --json, stdout gets one JSON object and nothing else; progress goes to stderr. Exit
status 1 when the job did not complete with every row accounted for.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.api import HOST, BenchError, Server, create_api_key
from bench.databases import PostgresDatabase, server_url, server_version

log = logging.getLogger("bench.predictions")

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "conveyor_bench_predictions"
POLL_S = 0.05
JOB_LIMIT_S = 900.0
STOP_GRACE_S = 30.0
ERROR_EVERY = 100  # one row in this many has a market cap that is not a number
TARGET_ROWS_PER_S = 50_000


def main() -> int:
    args = parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(name)s: %(message)s")
    log.setLevel(logging.INFO)
    try:
        report = asyncio.run(run(args))
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    except BenchError as exc:
        log.error("%s", exc)
        return 1
    summary = render(report)
    if args.json:
        sys.stderr.write(summary)
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        sys.stdout.write(summary)
    return 0 if report["ok"] else 1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.predictions", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object to stdout")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the generated CSV (default 1000000)")
    parser.add_argument("--chunk-rows", type=int, default=None, help="CONVEYOR_PREDICTIONS_CHUNK_ROWS for the job")
    args = parser.parse_args()
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    args.server_url = server_url(parser)
    return args


def generate_csv(path: Path, rows: int) -> int:
    """`rows` annual statements; returns how many carry a per-row error."""
    import polars as pl

    i = pl.int_range(0, rows, dtype=pl.Int64, eager=True).alias("i")
    frame = pl.DataFrame(i).select(
        pl.format("S{}", pl.col("i")).alias("company_symbol"),
        pl.format("Company {}", pl.col("i")).alias("company_name"),
        pl.when(pl.col("i") % 3 == 0).then(pl.lit("Manufacturing")).otherwise(pl.lit("Technology")).alias("sector"),
        (2015 + pl.col("i") % 10).alias("fiscal_year"),
        pl.when(pl.col("i") % ERROR_EVERY == ERROR_EVERY - 1)
        .then(pl.lit("n/a"))
        .otherwise((200_000 + (pl.col("i") * 7919) % 900_000).cast(pl.String))
        .alias("market_cap"),
        (1_000_000 + pl.col("i") % 50_000).alias("total_assets"),
        (300_000 + (pl.col("i") * 31) % 900_000).alias("total_liabilities"),
        (400_000 + pl.col("i") % 1000).alias("current_assets"),
        (100_000 + (pl.col("i") * 13) % 400_000).alias("current_liabilities"),
        ((pl.col("i") * 17) % 600_000 - 200_000).alias("retained_earnings"),
        ((pl.col("i") * 11) % 300_000 - 50_000).alias("ebit"),
        (500_000 + (pl.col("i") * 3) % 1_500_000).alias("revenue"),
        ((pl.col("i") * 19) % 200_000 - 60_000).alias("net_income"),
        ((pl.col("i") * 23) % 200_000 - 60_000).alias("net_income_prior"),
        ((pl.col("i") * 29) % 250_000 - 40_000).alias("funds_from_operations"),
    )
    frame.write_csv(path)
    return rows // ERROR_EVERY


class Worker:
    """One `conveyor worker` process (own process group); stopped on leaving the `with`."""

    def __init__(self, env: dict[str, str]) -> None:
        self._env = env
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Worker:
        argv = [sys.executable, "-m", "conveyor", "worker", "--log-level", "warning"]
        self.process = subprocess.Popen(
            argv, cwd=ROOT, env=self._env, stdin=subprocess.DEVNULL, stdout=sys.stderr, stderr=sys.stderr,
            start_new_session=True,
        )  # fmt: skip
        return self

    def __exit__(self, *exc: object) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def peak_rss_mb(self) -> float:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise BenchError("no VmHWM for the worker process")

    def check(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise BenchError(f"the worker process exited with code {self.process.returncode}")

    async def ready(self, database_url: str) -> None:
        """Wait until the worker has registered itself (it claims jobs from then on), so that
        its start-up is not counted as the job's."""
        deadline = time.monotonic() + 60
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                self.check()
                if (await (await conn.execute("SELECT count(*) FROM conveyor_workers")).fetchone())[0]:  # type: ignore[index]
                    return
                await asyncio.sleep(0.1)
        raise BenchError("the worker did not register within 60 s")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    database = PostgresDatabase(args.server_url, DATABASE)
    with tempfile.TemporaryDirectory(prefix="bench-predictions-") as scratch:
        root = Path(scratch)
        csv_path = root / f"annual_{args.rows}_rows.csv"
        started = time.perf_counter()
        expected_errors = await asyncio.to_thread(generate_csv, csv_path, args.rows)
        size = csv_path.stat().st_size
        log.info("generated %s rows, %.1f MB, in %.1f s", args.rows, size / 1e6, time.perf_counter() - started)
        await database.recreate()
        try:
            env = {
                "CONVEYOR_DATA_DIR": str(root / "data"),
                "CONVEYOR_MAX_UPLOAD_BYTES": str(size + 1024 * 1024),
                "CONVEYOR_DATABASE_URL": database.url,
            }
            if args.chunk_rows:
                env["CONVEYOR_PREDICTIONS_CHUNK_ROWS"] = str(args.chunk_rows)
            os.environ.update(env)  # Server and the API key command read the environment
            async with Server(database.url, root / "serve.log") as server:
                key = await create_api_key(database.url)
                with Worker({**os.environ}) as worker:
                    await worker.ready(database.url)
                    figures = await score(args, server.port, key, csv_path, worker)
        finally:
            await database.drop()
    ok = figures["status"] == "completed" and figures["failed_rows"] == expected_errors
    ok = ok and figures["successful_rows"] + figures["failed_rows"] == args.rows
    return {
        "benchmark": "predictions",
        "rows": args.rows,
        "expected_failed_rows": expected_errors,
        **figures,
        "upload_mb": round(size / 1e6, 1),
        "target_rows_per_s": TARGET_ROWS_PER_S,
        "meets_target": figures["rows_per_s"] >= TARGET_ROWS_PER_S,
        "ok": ok,
        "environment": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "postgres": await server_version(args.server_url),
            "polars": metadata.version("polars"),
        },
    }


async def score(args: argparse.Namespace, port: int, key: str, csv_path: Path, worker: Worker) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}", headers=headers, timeout=600) as client:
        started = time.perf_counter()
        with csv_path.open("rb") as f:
            response = await client.post(
                "/api/v1/predictions/annual/bulk-upload-async", files={"file": (csv_path.name, f, "text/csv")}
            )
        uploaded = time.perf_counter()
        if response.status_code != 202:
            raise BenchError(f"upload answered {response.status_code}: {response.text[:500]}")
        job_id = response.json()["job_id"]
        log.info("uploaded in %.2f s; job %s", uploaded - started, job_id)
        first_progress: float | None = None
        while True:
            worker.check()
            status = (await client.get(f"/api/v1/predictions/jobs/{job_id}/status")).json()
            now = time.perf_counter()
            if first_progress is None and status.get("processed_rows", 0) > 0:
                first_progress = now - uploaded
                log.info("first progress after %.2f s", first_progress)
            if status["status"] in ("completed", "failed"):
                break
            if now - started > JOB_LIMIT_S:
                raise BenchError(f"the job did not finish in {JOB_LIMIT_S:.0f} s: {status}")
            await asyncio.sleep(POLL_S)
        job = (await client.get(f"/api/v1/predictions/jobs/{job_id}")).json()["job"]
    seconds = now - started
    performance = job["performance"]
    log.info("%s in %.2f s: %.0f rows/s end to end", status["status"], seconds, args.rows / seconds)
    return {
        "status": status["status"],
        "error_message": status["error_message"],
        "rows_per_s": round(args.rows / seconds),
        "seconds": round(seconds, 2),
        "upload_s": round(uploaded - started, 2),
        "job_seconds": performance["processing_time_seconds"],
        "job_rows_per_s": round(performance["rows_per_second"] or 0),
        "first_progress_s": round(first_progress, 2) if first_progress is not None else None,
        "peak_rss_mb": round(worker.peak_rss_mb(), 1),
        "successful_rows": status["successful_rows"],
        "failed_rows": status["failed_rows"],
    }


def render(report: dict[str, Any]) -> str:
    lines = [
        f"bench.predictions: {report['rows']:,} rows, {report['upload_mb']} MB CSV ({report['status']})",
        f"  end to end    {report['rows_per_s']:>10,} rows/s  ({report['seconds']} s; target "
        f">= {report['target_rows_per_s']:,}: {'met' if report['meets_target'] else 'NOT met'})",
        f"  the job alone {report['job_rows_per_s']:>10,} rows/s  ({report['job_seconds']} s)",
        f"  upload        {report['upload_s']:>10} s",
        f"  first progress{report['first_progress_s']!s:>10} s after the upload's answer",
        f"  worker peak RSS {report['peak_rss_mb']:>8} MB",
        f"  rows: {report['successful_rows']:,} scored, {report['failed_rows']:,} failed "
        f"(expected {report['expected_failed_rows']:,})",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
