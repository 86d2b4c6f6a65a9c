"""Seed 002's four job types on generated data: time, items/s and memory of each, and the
accuracy of sentiment and PII masking.

    python -m bench.workloads [--json] [--texts 10000] [--csv-mb 1024] [--scan-mb 100]
                              [--export-rows 100000]

Each job runs in a fresh process of its own (`--child`), through the real engine and an
in-process worker on a SQLite file, so that its memory is its own. Memory, from the kernel's
counters of that process (/proc/self/status):
- `peak_mb`: the process's peak resident set (VmHWM);
- `job_mb`: that peak less the resident set just before the job started, in a worker that has
  started (the runtime and the pack imported, the store open) but run nothing yet. It counts
  everything the first job of its type pays in a process: the libraries it imports on first use
  (polars, VADER and its lexicon, phonenumbers, hyperscan), their caches, and the job's own
  data. It is the figure compared with seed 002's "memory per job", an upper bound for it;
- `repeat_job_mb` (not for the CSV parse): the same job run again in the same worker, its peak
  counted afresh (the peak is reset through /proc/self/clear_refs): what each later job of
  that type adds once the one-off imports are paid;
- `helper_peak_mb` and `helper_cpu_seconds`, where the job started processes of its own (the
  scan's prefilter compile runs in a helper process, once per data directory): their peak and
  CPU, which neither `peak_mb` nor the job's process's CPU would otherwise show.
Seconds are the job's own, from its start to its completion as the store recorded them;
`cpu_seconds` the CPU time of the process (all its threads) and of its helper processes while
the worker ran, which a busy machine inflates less than the wall clock. `estimate_mb` and
`estimate_s` are the job type's own `estimate_memory` and `estimate_time` for that input
(issue 6 item 7: they are calibrated from these figures).

The security scan runs twice in fresh processes: first in a data directory no scan has used
(the prefilter is compiled, in a helper process), then again with the compiled prefilter in
the data directory's cache (what every later worker does); `scan_100mb_s` is the first.

Inputs, generated in a temporary directory (CONVEYOR_DATA_DIR of every child):
- 10,000 texts from bench.pii_corpus (every one holds identifiers), masked and scored;
- a CSV of --csv-mb (id, date, review, rating, amount; one malformed line in 100,000), parsed
  with the default 256 MB chunk;
- a --scan-mb log-like text file with PII, secrets and a formula planted every 10,000 lines,
  scanned in full;
- a dataset of --export-rows rows (a CSV parsed first, not timed), exported as CSV, JSON, XLSX.

Accuracy, in this process: sentiment on the UCI labelled sentences the tests ship
(tests/data/uci_yelp_labelled.tsv, binary reading as the tests do), PII recall and precision
on bench.pii_corpus's 240 planted sentences (seed 20261101).

Targets (issue 6, on 2 cores): sentiment 10,000 texts <= 10 s; 1 GB CSV <= 60 s with peak <=
chunk + 300 MB; full scan <= 20 s per 100 MB; export of 100,000 <= 5 s (CSV, JSON), <= 20 s
(XLSX). Memory per job at or below seed 002's table (50 MB per 1,000 texts, 256 MB per chunk,
100 MB per scan, 50 MB per 10,000 records).

With --json, stdout gets one JSON object and nothing else; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

log = logging.getLogger("bench.workloads")

ROOT = Path(__file__).resolve().parent.parent
UCI = ROOT / "tests" / "data" / "uci_yelp_labelled.tsv"
MB = 1024 * 1024
JOB_LIMIT_S = 1800.0
CHILD_KEY = "A" * 43 + "="  # a fixed AES-256 key (base64 of 32 bytes): the texts are sensitive

REVIEWS = [
    "The food was great and the staff were lovely",
    "Terrible service, we waited an hour for a cold meal",
    "Average experience, nothing special but not bad either",
    "Absolutely wonderful, would come back with the whole family",
    "The room was dirty and the manager was rude to us",
    "Decent value for the price; parking was hard to find",
]


# --- inputs -------------------------------------------------------------------------------------


def write_csv(path: Path, megabytes: float, *, malformed_every: int = 100_000) -> int:
    """A CSV of about `megabytes`; returns its data rows (malformed ones included)."""
    target = int(megabytes * MB)
    rng = random.Random(20261123)
    rows = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("id,date,review,rating,amount\n")
        written = 0
        while written < target:
            lines = []
            for _ in range(10_000):
                rows += 1
                if rows % malformed_every == 0:
                    lines.append(f"{rows},2024-01-01,too,many,fields,here\n")
                    continue
                day = 1 + rows % 28
                lines.append(
                    f'{rows},2024-{1 + rows % 12:02d}-{day:02d},"{REVIEWS[rows % 6]}, visit {rows}",'
                    f"{1 + rows % 5},{rng.random() * 1000:.2f}\n"
                )
            block = "".join(lines)
            out.write(block)
            written += len(block)
    return rows


def write_scan_file(path: Path, megabytes: float) -> None:
    """Log-like lines with PII, secrets and a spreadsheet formula planted every 10,000 lines."""
    from bench.pii_corpus import corpus

    planted = [p.text for p in corpus(20, seed=7)] + [
        "aws_access_key_id=AKIAIOSFODNN7EXAMPLE",
        "-----BEGIN RSA PRIVATE KEY-----",
        '=HYPERLINK("http://example.invalid/x","click")',
    ]
    target = int(megabytes * MB)
    written = n = 0
    with path.open("w", encoding="utf-8") as out:
        while written < target:
            lines = []
            for _ in range(10_000):
                n += 1
                lines.append(f"2024-05-01T12:{n % 60:02d}:00Z INFO request {n} served in {n % 97} ms\n")
            lines.append(planted[(n // 10_000) % len(planted)] + "\n")
            block = "".join(lines)
            out.write(block)
            written += len(block)


def texts(n: int) -> list[str]:
    from bench.pii_corpus import corpus

    return [p.text for p in corpus(n, seed=20261123)]


# --- accuracy (in this process) --------------------------------------------------------------------


def sentiment_accuracy() -> dict[str, Any]:
    from conveyor.packs.workbench import sentiment

    lines = UCI.read_text(encoding="utf-8").splitlines()[1:]
    rows = [(text, int(label)) for text, label in (line.rsplit("\t", 1) for line in lines)]
    right = sum((sentiment.analyze(text).score >= 0) == (label == 1) for text, label in rows)
    return {"sentences": len(rows), "accuracy": round(right / len(rows), 4)}


def pii_figures() -> dict[str, Any]:
    from bench.pii_corpus import corpus, score
    from conveyor.packs.workbench import pii

    figures = score(corpus(240, seed=20_261_101), pii.find)
    return {
        "sentences": figures["sentences"],
        "identifiers": figures["identifiers"],
        "recall_structured": round(figures["recall_structured"], 4),
        "recall_names_addresses": round(figures["recall_names_addresses"], 4),
        "precision": round(figures["precision"], 4),
    }


# --- one job in a child process -----------------------------------------------------------------


def _rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def _reset_peak() -> bool:
    """VmHWM back to the current resident set (Linux 4.0+); False where the kernel refuses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _children() -> tuple[float, float]:
    """CPU seconds of the helper processes waited for so far, and the largest one's peak MB."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


async def _run_once(app: Any, kind: str, data: dict[str, Any]) -> dict[str, Any]:
    from conveyor import Status

    job = await app.engine.enqueue(kind, data)
    worker = app.worker(concurrency=1)
    baseline = _rss_mb()
    cpu = time.process_time()
    helper_cpu, helper_peak_before = _children()
    task = asyncio.create_task(worker.run())
    try:
        done = await app.engine.wait(job.id, timeout=JOB_LIMIT_S)
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=60)
    if done.status is not Status.COMPLETED:
        raise SystemExit(f"{kind}: job ended {done.status}: {done.error}")
    assert done.started_at is not None and done.completed_at is not None
    helper_cpu_after, helper_peak = _children()
    got = {
        "seconds": round((done.completed_at - done.started_at).total_seconds(), 3),
        # all threads of the process and its helpers while the worker ran: a shared machine's
        # wall clock waits for other processes too
        "cpu_seconds": round(time.process_time() - cpu + helper_cpu_after - helper_cpu, 3),
        "peak_mb": round(_rss_mb("VmHWM"), 1),
        "job_mb": round(_rss_mb("VmHWM") - baseline, 1),
        "result": done.result,
    }
    if helper_cpu_after - helper_cpu > 0.01:
        got["helper_cpu_seconds"] = round(helper_cpu_after - helper_cpu, 3)
        # RUSAGE_CHILDREN keeps only the largest child's peak, and the runtime's start may
        # have run a child already: a helper smaller than that one is not told apart
        got["helper_peak_mb"] = round(helper_peak, 1) if helper_peak > helper_peak_before else None
    return got


def _estimates(app: Any, kind: str, data: dict[str, Any]) -> dict[str, Any]:
    definition = app.engine.registry.get(kind)
    model = definition.input_model.model_validate(data)
    memory = definition.implementation.estimate_memory(model)
    duration = definition.implementation.estimate_time(model)
    return {
        "estimate_mb": round(memory / MB, 1) if memory is not None else None,
        "estimate_s": round(duration.total_seconds(), 1) if duration is not None else None,
    }


async def _child(kind: str, data: dict[str, Any], database: Path, data_dir: Path, *, repeat: bool) -> dict[str, Any]:
    from conveyor import Conveyor, Settings

    settings = Settings(
        database_url=f"sqlite:///{database}",
        data_dir=str(data_dir),
        encryption_keys={"bench": CHILD_KEY},
        packs="workbench",
    )
    app = Conveyor.from_settings(settings)
    await app.start()
    try:
        got = await _run_once(app, kind, data)
        got.update(_estimates(app, kind, data))
        if repeat and _reset_peak():
            again = await _run_once(app, kind, data)
            got["repeat_seconds"] = again["seconds"]
            got["repeat_job_mb"] = again["job_mb"]
        return got
    finally:
        await app.close()


def run_child(
    kind: str, data: dict[str, Any], workdir: Path, *, repeat: bool = False, data_dir: Path | None = None
) -> dict[str, Any]:
    """One job in a fresh process (a database file of its own, the shared data directory unless
    `data_dir` is given); with `repeat`, the same job a second time in the same worker."""
    database = workdir / f"{kind}-{uuid.uuid4().hex[:8]}.db"
    order = database.with_suffix(".json")  # a file: 10,000 texts are too long for a command line
    order.write_text(json.dumps({"kind": kind, "data": data, "repeat": repeat}))
    argv = [sys.executable, "-m", "bench.workloads", "--child", str(order)]
    argv += ["--database", str(database), "--data-dir", str(data_dir or workdir / "data")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CONVEYOR_DATABASE_URL", None)
    completed = subprocess.run(
        argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=JOB_LIMIT_S + 120, check=False
    )
    if completed.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{completed.stderr[-4000:]}")
    return dict(json.loads(completed.stdout.strip().splitlines()[-1]))


# --- the workloads -------------------------------------------------------------------------------

FIGURES = (
    "seconds", "cpu_seconds", "peak_mb", "job_mb", "repeat_seconds", "repeat_job_mb", "helper_cpu_seconds",
    "helper_peak_mb", "estimate_mb", "estimate_s",
)  # fmt: skip


def figures(got: dict[str, Any]) -> dict[str, Any]:
    return {key: got[key] for key in FIGURES if key in got}


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    data_dir = workdir / "data"
    data_dir.mkdir()
    out: dict[str, Any] = {}

    log.info("accuracy: sentiment on the UCI sentences, PII on the planted corpus")
    out["sentiment_accuracy_detail"] = sentiment_accuracy()
    out["sentiment_accuracy"] = out["sentiment_accuracy_detail"]["accuracy"]
    out["pii"] = pii_figures()
    out["pii_recall"] = out["pii"]["recall_structured"]
    out["pii_recall_names_addresses"] = out["pii"]["recall_names_addresses"]
    out["pii_precision"] = out["pii"]["precision"]

    log.info("sentiment: %d texts with masking", args.texts)
    batch = texts(args.texts)
    got = run_child("sentiment_analysis_batch", {"texts": batch, "enablePIIMasking": True}, workdir, repeat=True)
    summary = got["result"]["summary"]
    out["sentiment"] = {
        "texts": args.texts,
        **figures(got),
        "texts_per_s": round(args.texts / got["seconds"]),
        "successful": summary.get("successful"),
    }
    out["sentiment_10k_s"] = round(got["seconds"] * 10_000 / args.texts, 2)

    log.info("CSV: writing %.0f MB", args.csv_mb)
    big = data_dir / "big.csv"
    rows = write_csv(big, args.csv_mb)
    size_mb = big.stat().st_size / MB
    log.info("CSV: parsing %.0f MB (%d rows)", size_mb, rows)
    got = run_child("file_processing", {"filePath": "big.csv", "datasetId": str(uuid.uuid4())}, workdir)
    result = got["result"]
    out["csv"] = {
        "megabytes": round(size_mb, 1),
        "rows": rows,
        "rows_stored": result.get("rows"),
        "malformed": result.get("malformedRows", result.get("malformed")),
        **figures(got),
        "mb_per_s": round(size_mb / got["seconds"], 1),
        "rows_per_s": round(rows / got["seconds"]),
    }
    out["csv_1gb_s"] = round(got["seconds"] * 1024 / size_mb, 1)
    out["csv_peak_mb"] = got["peak_mb"]
    big.unlink()

    log.info("scan: writing and scanning %.0f MB in full", args.scan_mb)
    scanned = data_dir / "scan.log"
    write_scan_file(scanned, args.scan_mb)
    size_mb = scanned.stat().st_size / MB
    order = {"filePath": "scan.log", "datasetId": str(uuid.uuid4()), "scanType": "full"}
    got = run_child("security_scan", order, workdir, repeat=True)
    out["scan"] = {
        "megabytes": round(size_mb, 1),
        **figures(got),
        "mb_per_s": round(size_mb / got["seconds"], 1),
        "findings": len(got["result"].get("findings", [])),
    }
    out["scan_100mb_s"] = round(got["seconds"] * 100 / size_mb, 2)
    log.info("scan: again in a fresh worker, the prefilter compiled already (the data directory's cache)")
    cached = run_child("security_scan", order, workdir)
    out["scan"]["prefilter_cached"] = {**figures(cached), "mb_per_s": round(size_mb / cached["seconds"], 1)}
    scanned.unlink()

    log.info("export: a dataset of %d rows, as CSV, JSON and XLSX", args.export_rows)
    source = data_dir / "export.csv"
    write_csv(source, args.export_rows * 95 / MB, malformed_every=10**12)
    dataset = str(uuid.uuid4())
    parsed = run_child("file_processing", {"filePath": "export.csv", "datasetId": dataset}, workdir)
    stored = parsed["result"].get("rows")
    out["export"] = {"rows": stored}
    out["export_100k_s"] = {}
    for fmt in ("csv", "json", "xlsx"):
        got = run_child("data_export", {"datasetId": dataset, "format": fmt}, workdir, repeat=True)
        out["export"][fmt] = {
            **figures(got),
            "records_per_s": round(stored / got["seconds"]) if stored else None,
        }
        out["export_100k_s"][fmt] = round(got["seconds"] * 100_000 / stored, 2) if stored else None
    return out


def environment() -> dict[str, Any]:
    versions = {}
    for name in ("conveyor", "polars", "vadersentiment", "python-calamine", "xlsxwriter", "phonenumbers"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "versions": versions}


TABLE = [
    ("sentiment_10k_s", "sentiment, 10,000 texts with masking, s", "target <= 10"),
    ("sentiment_accuracy", "sentiment accuracy (UCI sentences)", "test floor 0.75"),
    ("pii_recall", "PII recall, structured kinds", "target >= 0.98"),
    ("pii_recall_names_addresses", "PII recall, names and addresses", "target >= 0.90"),
    ("pii_precision", "PII precision", "target >= 0.95"),
    ("csv_1gb_s", "CSV parse, s per GB", "target <= 60"),
    ("csv_peak_mb", "CSV parse, peak MB (chunk 256 MB)", "target <= 556"),
    ("scan_100mb_s", "full scan, s per 100 MB", "target <= 20"),
]


def memory_targets(out: dict[str, Any]) -> list[tuple[str, float, float]]:
    """(label, job MB, seed 002's memory per job): 50 MB per 1,000 texts, 256 MB per chunk,
    100 MB per scan, 50 MB per 10,000 records."""
    rows = [
        ("sentiment, job MB", out["sentiment"]["job_mb"], 50 * out["sentiment"]["texts"] / 1000),
        ("CSV parse, job MB (one 256 MB chunk)", out["csv"]["job_mb"], 256),
        ("full scan, job MB (first scan in a worker)", out["scan"]["job_mb"], 100),
    ]
    records = out["export"]["rows"] or 0
    rows += [
        (f"export, {fmt}, job MB", out["export"][fmt]["job_mb"], 50 * records / 10_000)
        for fmt in ("csv", "json", "xlsx")
    ]
    return rows


def table(out: dict[str, Any]) -> str:
    lines = [f"{label:45s} {out[key]!s:>10}   ({target})" for key, label, target in TABLE]
    for fmt, limit in (("csv", 5), ("json", 5), ("xlsx", 20)):
        label = f"export of 100,000 records, {fmt}, s"
        lines.append(f"{label:45s} {out['export_100k_s'][fmt]!s:>10}   (target <= {limit})")
    for label, got, limit in memory_targets(out):
        lines.append(f"{label:45s} {got!s:>10}   (seed 002 <= {limit:.0f})")
    lines += [f"{name:10s} {json.dumps(out[name])}" for name in ("sentiment", "csv", "scan", "export")]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--texts", type=int, default=10_000)
    parser.add_argument("--csv-mb", type=float, default=1024)
    parser.add_argument("--scan-mb", type=float, default=100)
    parser.add_argument("--export-rows", type=int, default=100_000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    if args.child:
        order = json.loads(Path(args.child).read_text())
        got = asyncio.run(
            _child(order["kind"], order["data"], Path(args.database), Path(args.data_dir), repeat=order["repeat"])
        )
        sys.stdout.write(json.dumps(got) + "\n")
        return
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="conveyor-workloads-") as tmp:
        out = measure(args, Path(tmp))
    out["environment"] = environment()
    out["wall_seconds"] = round(time.monotonic() - started, 1)
    sys.stdout.write(json.dumps(out) + "\n" if args.json else table(out))


if __name__ == "__main__":
    main()
