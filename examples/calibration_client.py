"""Seed 003's Python client workflow with conveyor.client: create a VA calibration job, follow
its progress, fetch the result.

    export CONVEYOR_URL=http://127.0.0.1:8000 CONVEYOR_API_KEY=cvk_…
    python examples/calibration_client.py [--n-mcmc 10000] [--n-burn 2000]

It needs a running `conveyor serve` (or an API and workers) that can calibrate:
`pip install 'conveyor[calibration]'` and CONVEYOR_VACALIBRATION_DATA set where they run.
The key needs a role that may create jobs (`conveyor apikey create --role operator`).
"""

# ruff: noqa: T201 - an example prints

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from conveyor.client import AsyncClient, WaitTimeout

REQUEST = {  # seed 003's example request: the package's COMSA-Mozambique neonatal deaths
    "va_data": {"insilicova": "use_example"},
    "age_group": "neonate",
    "country": "Mozambique",
}


async def calibrate(base_url: str, api_key: str | None, n_mcmc: int, n_burn: int) -> int:
    async with AsyncClient(base_url, api_key=api_key) as client:
        # 1. Create the job (seed 003: POST /api/v1/calibrate/async); it answers at once.
        job = await client.submit(
            "calibration",
            {**REQUEST, "n_mcmc": n_mcmc, "n_burn": n_burn},
            labels={"age_group": REQUEST["age_group"], "country": REQUEST["country"]},
        )
        print(f"created {job.id}: {job.status}")

        # 2. Follow its progress: each wait returns the moment the job finishes, or raises
        #    WaitTimeout after 2 s with the job's status and percentage so far.
        while True:
            try:
                job = await client.wait(job.id, timeout=2)
                break
            except WaitTimeout as pending:
                step = (await client.get(job.id)).current_step
                name = f" - {step.name}" if step and step.name else ""
                print(f"{pending.current_status}: {pending.current_progress or 0:.0f}%{name}")

        # 3. The result (or why there is none), and the job's log.
        if job.status != "completed":
            print(f"calibration {job.status}: {job.error}", file=sys.stderr)
            return 1
        result = job.result
        print(f"{job.status} in {result['seconds']:.1f}s; not calibrated: {result['causes_not_calibrated']}")
        calibrated = result["calibrated"]["insilicova"]
        uncalibrated = result["uncalibrated"]["insilicova"]
        print(f"{'cause':24} {'uncalibrated':>12} {'calibrated':>10}  95% interval")
        for cause, before, mean, low, high in zip(
            result["causes"],
            uncalibrated,
            calibrated["mean"],
            calibrated["lower_ci"],
            calibrated["upper_ci"],
            strict=True,
        ):
            print(f"{cause:24} {before:12.3f} {mean:10.3f}  [{low:.3f}, {high:.3f}]")
        for line in (await client.logs(job.id, level="info")).entries:
            print(f"log: {line.message}")
        return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-mcmc", type=int, default=10_000, help="posterior draws kept (the package's 10,000)")
    parser.add_argument("--n-burn", type=int, default=2_000, help="warm-up iterations")
    args = parser.parse_args()
    base_url = os.environ.get("CONVEYOR_URL", "http://127.0.0.1:8000")
    return asyncio.run(calibrate(base_url, os.environ.get("CONVEYOR_API_KEY"), args.n_mcmc, args.n_burn))


if __name__ == "__main__":
    sys.exit(main())
