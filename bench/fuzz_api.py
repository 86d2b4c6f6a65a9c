"""The API against its own OpenAPI schema, with requests schemathesis generates.

    python -m bench.fuzz_api [--max-examples 250] [--seed N] [--postgres] [--json]

Starts `conveyor serve --no-worker` on a SQLite file in a temporary directory (`--postgres`: on
a database of its own, `conveyor_fuzz`, on the server of $CONVEYOR_DATABASE_URL, made for the
run and dropped after; PostgreSQL refuses text longer than its columns where SQLite stores it,
so a missing bound shows only there) (creation limits
off, an encryption key for the sensitive job types, a JWT key for sign-in, cheap argon2id, the
admin key the first start prints; critical operations need e-signatures, as by default, so
the generated requests get 428 there),
runs `schemathesis run` over every operation of /openapi.json — examples, coverage, fuzzing
and stateful phases — with two checks: no response is a server error (5xx), and every
response matches the schema documented for it; a case the tool cannot complete (a network
error) fails the run too. Where the VA calibration data are not configured, creating
calibrations answers 503 by design, and those two operations are left out; so is the job event
stream (UNFUZZABLE). Prints the cases generated and passed, and the failures; exits 1 if there
is any. `--max-examples 250` generated 15,824 requests in 508 s here (the long run), and
25,934 once medication, notifications, schedules run and purge were added (0 failed, 0 errored,
1,746 s beside the test suite; 24,068 in 982 s with the calibration data configured); the test
suite runs it with 2 (tests/test_api_fuzz.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.api import free_port
from bench.databases import DEFAULT_SERVER_URL, PostgresDatabase
from conveyor.api.routes.canonical import WAIT_MAX_MS
from conveyor.packs.calibration import unavailable

CHECKS = "not_a_server_error,response_schema_conformance"
KEY = re.compile(r"cvk_[A-Za-z0-9_.-]+")
COUNTS = re.compile(r"(\d+) generated, (\d+) passed(?:, (\d+) failed)?(?:, (\d+) errored)?")
# The longest a request may take by design: POST /jobs/{id}/wait holds up to its documented
# maximum (300 s) for a job that does not finish (none do: the server runs no worker). The
# tool's default (10 s) counted such a wait as a network error.
REQUEST_TIMEOUT_S = WAIT_MAX_MS / 1000 + 30
# GET /jobs/{id}/events follows a job until it finishes, which no job does here: a stream of a
# job the run created never closes (the tool would wait it out, then call it a network error),
# and its 200 body is a text/event-stream string the schema says nothing more of. Left out;
# tests/test_api_events.py covers it against a real server and worker.
UNFUZZABLE = "/api/v1/jobs/{job_id}/events"


def run(max_examples: int, seed: int | None = None, *, postgres: bool = False) -> dict[str, object]:
    if not postgres:
        return _run(max_examples, seed, None)
    database = PostgresDatabase(os.environ.get("CONVEYOR_DATABASE_URL") or DEFAULT_SERVER_URL, "conveyor_fuzz")
    asyncio.run(database.recreate())
    try:
        return _run(max_examples, seed, database.url)
    finally:
        asyncio.run(database.drop())


def _run(max_examples: int, seed: int | None, database_url: str | None) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="conveyor-fuzz-") as tmp:
        root = Path(tmp)
        port = free_port()
        env = {
            **os.environ,
            "CONVEYOR_DATABASE_URL": database_url or f"sqlite:///{root / 'fuzz.db'}",
            "CONVEYOR_DATA_DIR": str(root / "data"),
            "CONVEYOR_JOBS_PER_MINUTE": "0",
            "CONVEYOR_JOBS_PER_HOUR": "0",
            "CONVEYOR_MAX_QUEUE_SIZE": "0",
            "CONVEYOR_ENCRYPTION_KEYS": json.dumps({"fuzz": "ZnV6ei1rZXktZm9yLWEtdGhyb3dhd2F5LWRiLTAwMDE="}),
            # Sign-in needs a JWT key (else 503 by design); argon2id hashes cheaply here, so that
            # the generated sign-ins and user creations do not spend the run hashing.
            "CONVEYOR_JWT_SECRET": "fuzz-only-secret-of-a-throwaway-database-0001",
            "CONVEYOR_PASSWORD_HASH_TIME_COST": "1",
            "CONVEYOR_PASSWORD_HASH_MEMORY_KIB": "8192",
            "CONVEYOR_PASSWORD_HASH_PARALLELISM": "1",
        }
        conveyor = str(Path(sys.executable).with_name("conveyor"))
        log = (root / "serve.log").open("w+")
        server = subprocess.Popen(
            [conveyor, "serve", "--no-worker", "--port", str(port), "--log-level", "warning"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            key = _wait_for_server(port, root / "serve.log", server)
            command = [
                str(Path(sys.executable).with_name("schemathesis")),
                "run",
                f"http://127.0.0.1:{port}/openapi.json",
            ]
            command += ["-H", f"Authorization: Bearer {key}", "--max-examples", str(max_examples), "--checks", CHECKS]
            command += ["--request-timeout", str(REQUEST_TIMEOUT_S), "--exclude-path", UNFUZZABLE]
            command += ["--no-color"] + (["--seed", str(seed)] if seed is not None else [])
            # The change feed stays open (an hour by default) by design: a generated call would
            # only time out. tests/test_api_events.py reads it from a real server.
            command += ["--exclude-path", "/api/v1/events"]
            # A wait for one of the run's own jobs (the stateful phase finds them; no worker runs
            # them here) answers after its default 30 s, beyond schemathesis's 10 s default.
            command += ["--request-timeout", "45"]
            if unavailable():  # creating one answers 503 by design (data not configured)
                command += ["--exclude-path-regex", "^/api/v1/calibrate/(async|batch)$"]
            started = time.monotonic()
            # In the temporary directory: schemathesis keeps a cache of crashes in its working directory.
            done = subprocess.run(
                command, capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"}, cwd=root
            )
            seconds = time.monotonic() - started
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()
    found = COUNTS.search(done.stdout)
    generated, passed, failed, errored = (int(found.group(i) or 0) for i in (1, 2, 3, 4)) if found else (0, 0, 0, 0)
    return {
        "database": "postgresql" if database_url else "sqlite",
        "max_examples": max_examples,
        "generated": generated,
        "passed": passed,
        "failed": failed,
        "errored": errored,  # the tool could not complete the request (a network error)
        "seconds": round(seconds, 1),
        "ok": done.returncode == 0 and found is not None and failed == 0 and errored == 0,
        "output": done.stdout,  # whole: a long run's failures are spread through it
    }


def _wait_for_server(port: int, log_path: Path, server: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"conveyor serve stopped:\n{log_path.read_text()}")
        key = KEY.search(log_path.read_text())
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/jobs/health", timeout=2):
                if key:
                    return key.group(0)
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"conveyor serve did not answer within 60 s:\n{log_path.read_text()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=250, help="schemathesis examples per operation and phase")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--postgres", action="store_true", help="serve from PostgreSQL instead of SQLite")
    parser.add_argument("--json", action="store_true", help="print one JSON object (without the tool's output)")
    args = parser.parse_args()
    result = run(args.max_examples, args.seed, postgres=args.postgres)
    if args.json:
        sys.stdout.write(json.dumps({k: v for k, v in result.items() if k != "output"}) + "\n")
    else:
        counts = f"{result['generated']} generated, {result['passed']} passed, {result['failed']} failed"
        counts += f", {result['errored']} errored"
        sys.stdout.write(f"{result['output']}\n{counts} in {result['seconds']} s\n")
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
