"""How long `conveyor --help` takes, start to exit (target: under 300 ms).

    python -m bench.cli_startup [--json] [--runs 20]

Runs the installed `conveyor` script (the one beside this interpreter) `--runs` times after one
warm-up run, and prints the median and the fastest wall-clock time. The command imports the
engine, the store and pydantic only inside the commands that need them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    command = [str(Path(sys.executable).with_name("conveyor")), "--help"]
    subprocess.run(command, check=True, capture_output=True)  # warm the file cache
    times = []
    for _ in range(args.runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append((time.perf_counter() - started) * 1000)
    figures = {
        "help_median_ms": round(statistics.median(times), 1),
        "help_min_ms": round(min(times), 1),
        "runs": args.runs,
    }
    median, fastest = figures["help_median_ms"], figures["help_min_ms"]
    text = json.dumps(figures) if args.json else f"conveyor --help: median {median} ms, fastest {fastest} ms"
    sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
