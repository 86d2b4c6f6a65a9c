"""VA calibration (seed 003): seconds per calibration, and calibrations per minute with 2 workers.

    python -m bench.calibration [--json] [--repeats 3] [--batch 8] [--skip-batch] [--only neonate_prior,...]

Cases: the specification's reference cases (../shared/vacalibration/reference_2.1.json):
neonate InSilicoVA Mozambique `prior` (the package's 13.4 s warm, 67.5 s with Stan's compile)
and `fixed`, child InSilicoVA Mozambique `prior`, and the EAVA + InSilicoVA ensemble (three
fits), each at the job's defaults (2,000 warm-up + 10,000 kept draws).

- seconds_per_calibration[case]: the calibration job's function (`run`, as a worker's child
  process runs it), wall and process CPU seconds:
  - `warm`: median of --repeats runs in a process that has run the case once already;
  - `cold`: the first run in a fresh process (importing JAX included), with the compiled
    samplers on disk (JAX's compilation cache, as a restarted worker finds it);
  - `cold_empty_disk_cache`: the same with an empty compilation cache (a new machine).
- batch_per_min: --batch neonate `prior` calibrations (distinct seeds, so none is a cache
  hit) drained by 2 worker processes (`conveyor worker --concurrency 1`, one calibration at
  a time each), timed from the enqueue to the last completion, after a warm-up calibration
  per worker; `batch_cold_per_min` includes worker start-up and the warm-up.

The data directory is CONVEYOR_VACALIBRATION_DATA (default: ../shared/vacalibration/data
beside the repository). The workers use a database created for the run on the server of
$CONVEYOR_DATABASE_URL (default postgresql://conveyor:conveyor@127.0.0.1:5432/conveyor; its
role needs CREATEDB), dropped after. CPU figures are what matters on a shared machine: wall
time also counts the time other processes held the cores.

With --json, stdout gets one JSON object and nothing else; progress and the table go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.databases import DEFAULT_SERVER_URL, PostgresDatabase
from bench.harness import REPO, WORKERS, stop_process

DEFAULT_DATA = REPO.parent / "shared" / "vacalibration" / "data"
SETTING = "CONVEYOR_VACALIBRATION_DATA"
NEONATE = ("congenital_malformation", "pneumonia", "sepsis_meningitis_inf", "ipre", "other", "prematurity")
# The specification's ensemble example: deaths per neonatal broad cause, EAVA and InSilicoVA.
ENSEMBLE_COUNTS = {
    "eava": dict(zip(NEONATE, (40, 175, 265, 220, 30, 170), strict=True)),
    "insilicova": dict(zip(NEONATE, (5, 145, 370, 330, 60, 290), strict=True)),
}
CASES: dict[str, dict[str, Any]] = {
    "neonate_prior": {"va_data": {"insilicova": "use_example"}, "age_group": "neonate", "country": "Mozambique"},
    "neonate_fixed": {
        "va_data": {"insilicova": "use_example"},
        "age_group": "neonate",
        "country": "Mozambique",
        "mmat_type": "fixed",
    },
    "child_prior": {"va_data": {"insilicova": "use_example"}, "age_group": "child", "country": "Mozambique"},
    "ensemble": {"va_data": ENSEMBLE_COUNTS, "age_group": "neonate", "country": "Mozambique"},
}
PACKAGE_SECONDS = {"neonate_prior": {"warm": 13.4, "cold": 67.5}}  # the spec's R figures
BATCH_LIMIT_S = 1800.0

log = logging.getLogger("bench")


class _QuietContext:
    """What `run` calls on its Context, doing nothing: the calibration alone is timed."""

    def progress(self, **_: Any) -> None:
        pass

    def info(self, *_: Any, **__: Any) -> None:
        pass

    def warning(self, *_: Any, **__: Any) -> None:
        pass


def calibrate_once(case: str, seed: int = 1) -> dict[str, float]:
    """One calibration through the job's function; wall and CPU seconds."""
    from conveyor.packs.calibration.jobtype import CalibrationInput, run

    data = CalibrationInput(**CASES[case], seed=seed)
    wall, cpu = time.perf_counter(), time.process_time()
    run(_QuietContext(), data)  # type: ignore[arg-type]
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}


def child_main(cases: list[str], repeats: int) -> None:
    """In a fresh process: each case's first (cold for the first case) and warm runs, as JSON."""
    out: dict[str, Any] = {}
    for case in cases:
        first = calibrate_once(case)
        warm = [calibrate_once(case) for _ in range(repeats)]
        out[case] = {"first": first, "warm": warm}
    sys.stdout.write(json.dumps(out) + "\n")


def in_fresh_process(cases: list[str], repeats: int, cache_dir: Path) -> dict[str, Any]:
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(cache_dir)}
    argv = [sys.executable, "-m", "bench.calibration", "--child", ",".join(cases), "--repeats", str(repeats)]
    done = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"calibration child failed: {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(r[key] for r in runs), 2) for key in ("wall", "cpu")}


def seconds_per_calibration(cases: list[str], repeats: int) -> dict[str, Any]:
    """Per case: cold with an empty disk cache, cold with a filled one, and warm (median)."""
    out: dict[str, Any] = {case: {} for case in cases}
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-jax-") as cache:
        for case in cases:
            # Each case starts a process of its own, so that its first calibration is cold.
            log.info("%s: a fresh process, empty compilation cache", case)
            empty = in_fresh_process([case], 0, Path(cache) / case)
            log.info("%s: a fresh process, compilation cache filled; then %d warm runs", case, repeats)
            filled = in_fresh_process([case], repeats, Path(cache) / case)
            out[case] = {
                "cold_empty_disk_cache": {k: round(v, 2) for k, v in empty[case]["first"].items()},
                "cold": {k: round(v, 2) for k, v in filled[case]["first"].items()},
                "warm": median(filled[case]["warm"]),
                "warm_runs": [{k: round(v, 2) for k, v in r.items()} for r in filled[case]["warm"]],
            }
            log.info("%s: %s", case, json.dumps(out[case]))
    return out


async def batch(server_url: str, n: int, data_dir: Path) -> dict[str, float]:
    """n neonate calibrations drained by WORKERS worker processes (one calibration at a time each)."""
    from conveyor import Conveyor, JobRequest, Settings

    database = PostgresDatabase(server_url, "conveyor_bench_calibration")
    await database.recreate()
    app = Conveyor.from_settings(Settings(database_url=database.url, packs="calibration"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        await app.start()
        env = {
            **os.environ,
            "CONVEYOR_DATABASE_URL": database.url,
            "CONVEYOR_QUEUES": "default",
            "CONVEYOR_PACKS": "calibration",
            SETTING: str(data_dir),
        }
        argv = [sys.executable, "-m", "conveyor.cli", "worker", "--concurrency", "1", "--log-level", "warning"]
        started = time.perf_counter()
        procs.extend(_start_workers(argv, env))
        # Warm-up: one calibration per worker (its child process imports JAX and compiles).
        await app.engine.enqueue_many(
            [JobRequest("calibration", {**CASES["neonate_prior"], "seed": 1000 + i}) for i in range(WORKERS)]
        )
        await _wait_completed(app, WORKERS, procs, started)
        warm_up = time.perf_counter() - started
        enqueued = time.perf_counter()
        await app.engine.enqueue_many(
            [JobRequest("calibration", {**CASES["neonate_prior"], "seed": 1 + i}) for i in range(n)]
        )
        await _wait_completed(app, WORKERS + n, procs, enqueued)
        drained = time.perf_counter() - enqueued
    finally:
        for proc in procs:
            stop_process(proc)
        await app.close()
        await database.drop()
    return {
        "batch_per_min": round(60 * n / drained, 2),
        "batch_seconds": round(drained, 1),
        "batch_cold_per_min": round(60 * (n + WORKERS) / (warm_up + drained), 2),
        "warm_up_seconds": round(warm_up, 1),
    }


def _start_workers(argv: list[str], env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen(argv, env=env, cwd=REPO, start_new_session=True) for _ in range(WORKERS)]


async def _wait_completed(app: Any, count: int, procs: list[subprocess.Popen[bytes]], since: float) -> None:
    while True:
        counts = await app.engine.counts()
        if counts.get("failed") or counts.get("timeout") or counts.get("cancelled"):
            raise RuntimeError(f"calibration jobs failed: {counts}")
        if counts.get("completed", 0) >= count:
            return
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a worker exited")
        if time.perf_counter() - since > BATCH_LIMIT_S:
            raise RuntimeError(f"batch not drained in {BATCH_LIMIT_S:.0f}s: {counts}")
        await asyncio.sleep(0.2)


def render_table(report: dict[str, Any]) -> str:
    lines = ["case             warm wall/cpu s   cold wall/cpu s   cold, empty disk cache"]
    for case, figures in report["seconds_per_calibration"].items():
        w, c, e = figures["warm"], figures["cold"], figures["cold_empty_disk_cache"]
        lines.append(
            f"{case:16} {w['wall']:7.2f} / {w['cpu']:5.2f}   {c['wall']:7.2f} / {c['cpu']:5.2f}"
            f"   {e['wall']:7.2f} / {e['cpu']:5.2f}"
        )
    if "batch" in report:
        b = report["batch"]
        lines.append(
            f"batch ({WORKERS} workers): {b['batch_per_min']:.2f} calibrations/min warm, "
            f"{b['batch_cold_per_min']:.2f}/min with start-up and warm-up"
        )
    env = report["environment"]
    lines.append(f"machine: {env['cpus']} CPUs, load average {env['load_before']} before, {env['load_after']} after")
    return "\n".join(lines) + "\n"


def environment() -> dict[str, Any]:
    from importlib import metadata

    return {
        "cpus": os.cpu_count(),
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
        "jax": metadata.version("jax"),
        "numpyro": metadata.version("numpyro"),
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.calibration", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object to stdout")
    parser.add_argument("--repeats", type=int, default=3, help="warm runs per case (default 3; the median is kept)")
    parser.add_argument("--batch", type=int, default=8, help="calibrations in the batch (default 8)")
    parser.add_argument("--skip-batch", action="store_true", help="no batch with workers (no database needed)")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(CASES)}")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.cases = list(CASES)
    if args.only:
        args.cases = [c.strip() for c in args.only.split(",") if c.strip()]
        unknown = sorted(set(args.cases) - set(CASES))
        if unknown:
            parser.error(f"--only: unknown {', '.join(unknown)}")
    if args.repeats < 1 and not args.child:
        parser.error("--repeats must be at least 1")
    args.server_url = os.environ.get("CONVEYOR_DATABASE_URL") or DEFAULT_SERVER_URL
    if not args.skip_batch and not args.server_url.startswith("postgresql"):
        parser.error(f"CONVEYOR_DATABASE_URL must name the PostgreSQL server to use, not {args.server_url!r}")
    return args


def main() -> int:
    args = parse_args()
    os.environ.setdefault(SETTING, str(DEFAULT_DATA))
    if args.child:
        child_main(args.child.split(","), args.repeats)
        return 0
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(name)s: %(message)s")
    log.setLevel(logging.INFO)
    from conveyor.packs.calibration import unavailable

    missing = unavailable()
    if missing:
        log.error("%s", missing)
        return 1
    report: dict[str, Any] = {"environment": environment()}
    try:
        report["seconds_per_calibration"] = seconds_per_calibration(args.cases, args.repeats)
        if not args.skip_batch:
            log.info("batch: %d calibrations, %d workers", args.batch, WORKERS)
            report["batch"] = asyncio.run(batch(args.server_url, args.batch, Path(os.environ[SETTING])))
            report["batch_per_min"] = report["batch"]["batch_per_min"]
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    report["environment"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
    report["package_seconds"] = PACKAGE_SECONDS
    table = render_table(report)
    if args.json:
        sys.stderr.write(table)
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
