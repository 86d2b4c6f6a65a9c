"""conveyor against procrastinate and pgqueuer: one workload, one PostgreSQL, one run.

    python -m bench.engine [--json] [--n 10000] [--skip-peers] [--only postgres,sqlite,...]

(scripts/bench.sh makes the virtual environment with the peers and runs this.)

Subjects: conveyor on the local PostgreSQL (`postgres`) and on SQLite (`sqlite`), and the
peers procrastinate 3.10 and pgqueuer 1.6 on the same PostgreSQL. Every subject gets the same
workload (bench/harness.py), the bar of /work/shared/peers-bench: 2 worker processes each,
and N (default 10,000) no-op jobs.

- enqueue_per_s: N/10 jobs enqueued one call at a time from one process.
- bulk_enqueue_per_s: N jobs in the library's one bulk call; the median of 5 calls, each on a
  new database.
- drain_per_s: N jobs enqueued, then the workers started; from the last poll (every 25 ms)
  that sees no job completed to the first that sees all completed. Start-up is left out. The
  median of 3 drains, each on a new database.
- pickup_ms: p50, p95, p99 of 200 jobs enqueued one at a time 20 ms apart into idle workers;
  each is the job body's start minus the time just before its enqueue.
- worker_rss_mb: the larger peak RSS of the two worker processes over the drain.
- postgres/commit (in `ratios`; details in `single_enqueue_against_commit`): conveyor's single
  enqueue on PostgreSQL against one durable commit per call (a one-row INSERT into a two-column
  table, autocommit, same server), in 5 alternating rounds of N/10 calls each; the median of
  the rounds' ratios.

The subjects take turns: every subject's single enqueues, then round after round of one bulk
call (then one drain) per subject, each round starting with the next subject, then every
subject's pickup. The machine's speed drifts by a fifth over minutes; measured one subject after
another, a peer that met a quick spell and conveyor a slow one moved their ratio that much.

conveyor's workers run `--concurrency 100`; the peers' as the peers harness runs them
(procrastinate `--concurrency=10`, pgqueuer `batch_size=10`). Every worker logs at warning.

Each phase runs on a database created for it (dropped first, dropped after): conveyor_bench,
conveyor_bench_procrastinate, conveyor_bench_pgqueuer on the server of $CONVEYOR_DATABASE_URL
(default postgresql://conveyor:conveyor@127.0.0.1:5432/conveyor; its role needs CREATEDB),
and a SQLite file in a temporary directory.

`ratios` divides conveyor's figures by each peer's: above 1 conveyor is faster for the
per_s figures, and slower (or bigger) for pickup_ms and worker_rss_mb.

With --json, stdout gets one JSON object and nothing else; progress and the table go to
stderr, as does the output of the worker processes. The exit status is 1 when a subject
failed (its entry then holds only "error").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from bench import harness
from bench.conveyor_subject import ConveyorSubject
from bench.databases import (
    COMMIT_PROBE_INSERT,
    COMMIT_PROBE_TABLE,
    PostgresDatabase,
    SqliteDatabase,
    server_url,
    server_version,
)

CONVEYOR_SUBJECTS = ("postgres", "sqlite")
PEERS = ("procrastinate", "pgqueuer")
LIBRARIES = ("conveyor", "procrastinate", "pgqueuer", "sqlalchemy", "psycopg", "asyncpg", "aiosqlite")
ROWS = (  # the table's: a figure, its label, and how a subject's value of it is shown
    (("enqueue_per_s",), "enqueue, jobs/s", ",.0f"),
    (("bulk_enqueue_per_s",), "bulk enqueue, jobs/s", ",.0f"),
    (("drain_per_s",), "drain, jobs/s", ",.0f"),
    (("pickup_ms", "p50"), "pickup p50, ms", ".1f"),
    (("pickup_ms", "p95"), "pickup p95, ms", ".1f"),
    (("pickup_ms", "p99"), "pickup p99, ms", ".1f"),
    (("worker_rss_mb",), "worker peak RSS, MB", ".1f"),
)

log = logging.getLogger("bench")


def main() -> int:
    args = parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(name)s: %(message)s")
    log.setLevel(logging.INFO)
    try:
        report = asyncio.run(run(args.subjects, args.n, args.server_url))
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    table = render_table(report)
    if args.json:
        sys.stderr.write(table)
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        sys.stdout.write(table)
    failed = any("error" in report[name] for name in args.subjects)
    return 1 if failed else 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.engine", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object to stdout")
    parser.add_argument("--n", type=int, default=10_000, help="jobs for the bulk enqueue and the drain (default 10000)")
    parser.add_argument("--skip-peers", action="store_true", help="measure conveyor only")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(CONVEYOR_SUBJECTS + PEERS)}")
    args = parser.parse_args()
    if args.n < 10:
        parser.error("--n must be at least 10 (a tenth of it is enqueued one at a time)")
    subjects = [*CONVEYOR_SUBJECTS, *([] if args.skip_peers else PEERS)]
    if args.only:
        wanted = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = sorted(set(wanted) - set(CONVEYOR_SUBJECTS + PEERS))
        if unknown:
            parser.error(f"--only: unknown {', '.join(unknown)}")
        subjects = [s for s in subjects if s in wanted]
    if not subjects:
        parser.error("nothing to measure")
    args.subjects = subjects
    args.server_url = server_url(parser)
    return args


async def run(names: list[str], n: int, server_url: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as workdir:
        subjects = make_subjects(names, server_url, Path(workdir))
        uses_postgres = any(name != "sqlite" for name in names)
        env = await environment(subjects, n, server_url if uses_postgres else None)
        for subject in subjects:
            log.info("%s: %s", subject.name, subject.workers)
        # Every wait inside has its own limit; this one also bounds the enqueue phases.
        measured = await harness.measure_all(subjects, n, Path(workdir) / "pickup.log", phase_limit=120 + n / 20)
        report = {
            name: {"error": figures} if isinstance(figures, str) else rounded(dataclasses.asdict(figures))
            for name, figures in measured.items()
        }
    against_commit = None
    if "postgres" in names:
        against_commit = await single_enqueue_against_commits(server_url, n // 10)
        env["durable_commit_per_s"] = against_commit["durable_commit_per_s"]
    out = {**report, "ratios": ratios(report, against_commit), "environment": env}
    if against_commit:
        out["single_enqueue_against_commit"] = against_commit
    return out


COMMIT_ROUNDS = 5


async def single_enqueue_against_commits(server_url: str, count: int, rounds: int = COMMIT_ROUNDS) -> dict[str, Any]:
    """conveyor's single enqueue on PostgreSQL against its yardstick, one small row inserted and
    committed per call on the same server (no queue library involved), one call at a time: in
    `rounds` alternating rounds of `count` calls each, so that both see the same disk. A
    commit's time drifts by a fifth from one minute to the next here; the phase's own figure
    and a yardstick taken minutes later may be that far apart."""
    probe_db = PostgresDatabase(server_url, "conveyor_bench_commit")
    await probe_db.recreate()
    subject = ConveyorSubject("postgres", PostgresDatabase(server_url, "conveyor_bench"))
    enqueues: list[float] = []
    commits: list[float] = []
    try:
        async with (
            subject.session() as session,
            await psycopg.AsyncConnection.connect(probe_db.url, autocommit=True) as conn,
        ):
            await conn.execute(COMMIT_PROBE_TABLE)
            for _ in range(rounds):
                started = time.perf_counter()
                for _ in range(count):
                    await session.enqueue_noop()
                enqueues.append(count / (time.perf_counter() - started))
                started = time.perf_counter()
                for i in range(count):
                    await conn.execute(COMMIT_PROBE_INSERT, (Jsonb({"i": i}),))
                commits.append(count / (time.perf_counter() - started))
    finally:
        await probe_db.drop()
    each = sorted(e / c for e, c in zip(enqueues, commits, strict=True))
    log.info("postgres: single enqueue / one durable commit, %d rounds: %s", rounds, [round(r, 2) for r in each])
    return {
        "rounds": rounds,
        "calls_per_round": count,
        "enqueue_per_s": round(statistics.median(enqueues), 1),
        "durable_commit_per_s": round(statistics.median(commits), 1),
        "ratio_median": round(statistics.median(each), 3),
        "ratio_range": [round(each[0], 3), round(each[-1], 3)],
    }


def make_subjects(names: list[str], server_url: str, workdir: Path) -> list[harness.Subject]:
    try:
        return [make_subject(name, server_url, workdir) for name in names]
    except ModuleNotFoundError as exc:
        raise SystemExit(f"bench: {exc.name} is not installed: run scripts/bench.sh, or pass --skip-peers") from None


def make_subject(name: str, server_url: str, workdir: Path) -> harness.Subject:
    # The peers are imported only when asked for: they are not dependencies of conveyor.
    if name == "procrastinate":
        from bench.procrastinate_subject import ProcrastinateSubject

        return ProcrastinateSubject(server_url)
    if name == "pgqueuer":
        from bench.pgqueuer_subject import PgqueuerSubject

        return PgqueuerSubject(server_url)
    if name == "postgres":
        return ConveyorSubject(name, PostgresDatabase(server_url, "conveyor_bench"))
    return ConveyorSubject(name, SqliteDatabase(workdir / "conveyor_bench.db"))


def rounded(figures: dict[str, Any]) -> dict[str, Any]:
    return {k: rounded(v) if isinstance(v, dict) else round(v, 2 if v < 100 else 1) for k, v in figures.items()}


def ratios(report: dict[str, Any], against_commit: dict[str, Any] | None = None) -> dict[str, Any]:
    """{"postgres/procrastinate": {figure: conveyor's / the peer's, …}, …} for every pair measured,
    and conveyor's single enqueue against one durable commit per call (the median of the
    alternating rounds' ratios)."""
    measured = {name: figures for name, figures in report.items() if "error" not in figures}
    pairs = {
        f"{ours}/{peer}": _divide(measured[ours], measured[peer])
        for ours in CONVEYOR_SUBJECTS
        if ours in measured
        for peer in PEERS
        if peer in measured
    }
    if against_commit:
        pairs["postgres/commit"] = {"enqueue_per_s": against_commit["ratio_median"]}
    return pairs


def _divide(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    return {k: _divide(v, theirs[k]) if isinstance(v, dict) else _ratio(v, theirs[k]) for k, v in ours.items()}


def _ratio(ours: float, theirs: float) -> float | None:
    return round(ours / theirs, 3) if theirs else None


async def environment(subjects: list[harness.Subject], n: int, server_url: str | None) -> dict[str, Any]:
    """Taken before the first subject runs, so the load average is that of everything else."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        "postgresql": await _server_version(server_url) if server_url else None,
        "sqlite": sqlite3.sqlite_version,
        "libraries": {name: _version(name) for name in LIBRARIES},
        "workload": {
            "enqueue_jobs": n // 10,
            "bulk_enqueue_jobs": n,
            "bulk_enqueue_calls": harness.BULK_CALLS,
            "drains": harness.DRAINS,
            "drain_jobs": n,
            "pickup_jobs": harness.PICKUP_JOBS,
            "pickup_gap_ms": harness.PICKUP_GAP_S * 1000,
        },
        "workers": {subject.name: subject.workers for subject in subjects},
    }


async def _server_version(server_url: str) -> str:
    try:
        return await server_version(server_url)
    except psycopg.OperationalError as exc:
        raise SystemExit(f"bench: PostgreSQL is not reachable ({exc}); scripts/postgres-up.sh starts it") from None


def _version(distribution: str) -> str | None:
    with contextlib.suppress(metadata.PackageNotFoundError):
        return metadata.version(distribution)
    return None


def render_table(report: dict[str, Any]) -> str:
    """Subjects, then ratios, as columns; figures as rows."""
    subjects = {name: figures for name, figures in report.items() if name not in ("ratios", "environment")}
    columns = [(name, figures, None) for name, figures in subjects.items()]
    columns += [(pair, figures, ".2f") for pair, figures in report["ratios"].items()]
    widths = [max(len(name), 9) for name, _figures, _fmt in columns]

    def line(label: str, cells: list[str]) -> str:
        return "  ".join([f"{label:20}", *(f"{cell:>{w}}" for cell, w in zip(cells, widths, strict=True))])

    lines = [line("", [name for name, _figures, _fmt in columns])]
    for path, label, subject_fmt in ROWS:
        lines.append(line(label, [_cell(figures, path, fmt or subject_fmt) for _name, figures, fmt in columns]))
    if report["ratios"]:
        lines.append("ratios are conveyor's figure / the peer's: above 1 is better for jobs/s, below 1 for ms and MB")
    if against := report.get("single_enqueue_against_commit"):
        low, high = against["ratio_range"]
        lines.append(
            f"postgres/commit: conveyor's single enqueue against one durable commit per call (a one-row INSERT,"
            f" no queue), {against['rounds']} alternating rounds of {against['calls_per_round']:,} calls:"
            f" {against['enqueue_per_s']:,.0f}/s against {against['durable_commit_per_s']:,.0f}/s, median ratio"
            f" {against['ratio_median']:.2f} ({low:.2f}-{high:.2f})"
        )
    lines += [f"{name}: {figures['error']}" for name, figures in subjects.items() if "error" in figures]
    return "\n".join(lines) + "\n"


def _cell(figures: dict[str, Any], path: tuple[str, ...], fmt: str) -> str:
    if "error" in figures:
        return "failed"
    value: Any = figures
    for key in path:
        if key not in value:
            return ""  # e.g. postgres/commit, which compares the single enqueue only
        value = value[key]
    return "-" if value is None else format(value, fmt)


if __name__ == "__main__":
    sys.exit(main())
