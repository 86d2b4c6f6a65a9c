"""The `calibration` job type: seed 003's asynchronous VA calibration.

Steps, named in the job's progress: validating the input, preparing the data (counts and the
path correction), one sampling step per fit (each algorithm, then the ensemble), and the
summary. Sampling reports its iterations as the job's items, so the worker derives speed and
the estimated completion, and stops at the next chunk of iterations once the job is cancelled
or timed out. It runs in a pooled child process: the work is CPU-bound, a hard stop can kill
it, and the child keeps JAX's compiled sampler warm for the next calibration.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from conveyor import Context, JobType, PermanentError, Registry
from conveyor.packs.calibration import data as vadata_files
from conveyor.packs.calibration.data import ALGORITHMS, DataUnavailable

KIND = "calibration"
COMPONENT = "calibration"


class CalibrationInput(BaseModel):
    """A calibration request (seed 003's fields; the sampler's settings default to the package's)."""

    model_config = ConfigDict(extra="forbid")

    va_data: dict[str, Any] = Field(
        description='per algorithm (eava, insilicova, interva): "use_example", counts per broad cause, '
        "a list of deaths with their specific cause, or a one-hot broad-cause table"
    )
    age_group: Literal["neonate", "child"]
    country: str = Field(
        min_length=1, max_length=100, description="CHAMPS country, or any other for the pooled estimate"
    )
    mmat_type: Literal["prior", "fixed"] = "prior"
    ensemble: bool | None = Field(
        None, description="joint calibration of several algorithms (default: when two or more)"
    )
    seed: int = Field(1, ge=0, le=2**31 - 1, description="the sampler's seed: same seed and data, same result")
    n_mcmc: int = Field(10_000, ge=100, le=100_000, description="posterior draws kept")
    n_burn: int = Field(2_000, ge=100, le=100_000, description="warm-up iterations (the package: 10,000)")

    @field_validator("va_data")
    @classmethod
    def _algorithms(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            raise ValueError(f"give VA data for at least one algorithm ({', '.join(ALGORITHMS)})")
        unknown = [k for k in value if k not in ALGORITHMS]
        if unknown:
            raise ValueError(f"unknown algorithm {', '.join(map(repr, unknown))} (known: {', '.join(ALGORITHMS)})")
        return value

    @model_validator(mode="after")
    def _readable(self) -> CalibrationInput:
        # Checked at enqueue, so bad data or a missing data directory refuse the request.
        counts_for(self)
        return self


def counts_for(data: CalibrationInput) -> tuple[dict[str, Any], list[str]]:
    """(counts per algorithm, notes) of a request; ValueError naming every problem."""
    from conveyor.packs.calibration.vadata import BadVAData, to_counts  # NumPy: only when asked

    try:
        files = vadata_files.load()
    except DataUnavailable as exc:
        raise ValueError(str(exc)) from None
    counts, notes, problems = {}, [], []
    for algorithm, value in data.va_data.items():
        try:
            counts[algorithm], more = to_counts(value, algorithm, data.age_group, files)
            notes.extend(more)
        except BadVAData as exc:
            problems.append(str(exc))
    if problems:
        raise ValueError(" | ".join(problems))
    return counts, notes


def cache_key(data: CalibrationInput) -> str:
    """Same deaths per broad cause (in whatever form given), age group, country and settings."""
    counts, _ = counts_for(data)
    material = {
        "counts": {k: [int(x) for x in v] for k, v in sorted(counts.items())},
        "age_group": data.age_group,
        "country": data.country,
        **data.model_dump(include={"mmat_type", "ensemble", "seed", "n_mcmc", "n_burn"}),
    }
    return "calibration:" + hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def run(ctx: Context, data: CalibrationInput) -> dict[str, Any]:
    from conveyor.packs.calibration import model
    from conveyor.packs.calibration.sampler import SamplerSettings, sample

    started = time.monotonic()
    k = len(data.va_data)
    ensemble = data.ensemble if data.ensemble is not None else k >= 2
    fits_planned = k + (1 if ensemble and k >= 2 else 0)
    total_steps = 3 + fits_planned
    iterations = data.n_mcmc + data.n_burn
    ctx.progress(
        step=1, total_steps=total_steps, step_name="Validating input", processed=0, total=fits_planned * iterations
    )
    counts, notes = counts_for(data)
    for note in notes:
        ctx.info(note, component=COMPONENT)
    if ensemble and k == 1:
        ctx.warning("ensemble needs two or more algorithms: calibrating the one given without it", component=COMPONENT)
        ensemble = False
    country = model.country_to_model(data.country)
    if country != data.country:
        ctx.info(f"no CHAMPS estimates for {data.country!r}: using the pooled estimates ('other')", component=COMPONENT)

    ctx.progress(step=2, step_name="Preparing data and calibration path")
    request = model.Request(counts, data.age_group, data.country, data.mmat_type, ensemble)
    prepared = model.prepare_all(request, vadata_files.load())
    for name, p in prepared.items():
        left = [c for c, out in zip(vadata_files.CAUSES[data.age_group], p.left_out, strict=True) if out]
        ctx.info(f"{name}: {int(p.counts.sum())} deaths; not calibrated: {', '.join(left) or 'none'}; "
                 f"lambda {p.lambda_calibpath}", component=COMPONENT)  # fmt: skip

    settings = SamplerSettings(n_warmup=data.n_burn, n_samples=data.n_mcmc, seed=data.seed)
    fits: dict[str, model.Fit] = {}
    joint = _JointFit(prepared, data.mmat_type, settings) if ensemble else None
    try:
        for number, name in enumerate(prepared):
            ctx.progress(step=3 + number, step_name=f"Sampling the posterior ({name}, {data.mmat_type} matrix)")
            base = number * iterations

            def report(done: int, _total: int, base: int = base) -> None:
                # a checkpoint: raises once the job is stopped
                ctx.progress(processed=base + done + (joint.done if joint else 0))

            fit_started = time.monotonic()
            fits[name] = model.fit([prepared[name]], data.mmat_type,
                                   lambda *a, **kw: sample(*a, settings=settings, on_chunk=report, **kw))  # fmt: skip
            _log_fit(ctx, name, fits[name], time.monotonic() - fit_started)
        if joint is not None:
            label = model.ENSEMBLE
            ctx.progress(step=3 + len(prepared), step_name=f"Sampling the posterior ({label}, {data.mmat_type} matrix)")
            base = len(prepared) * iterations
            while not joint.finished(timeout=0.25):
                ctx.progress(processed=base + joint.done)
            fits[label] = joint.result()
            _log_fit(ctx, label, fits[label], joint.seconds)
    finally:
        if joint is not None:
            joint.stop()
    ctx.progress(processed=fits_planned * iterations)

    ctx.progress(step=total_steps, step_name="Summarising results")
    out = model.result(request, prepared, fits)
    out["sampler"] = {"n_mcmc": data.n_mcmc, "n_burn": data.n_burn, "seed": data.seed, "sampler": "NUTS (NumPyro)"}
    out["seconds"] = round(time.monotonic() - started, 3)
    ctx.info(f"calibration done in {out['seconds']:.1f}s", component=COMPONENT)
    return out


class _Stopped(Exception):
    """The job stopped while the joint fit was sampling: its thread ends at its next chunk."""


class _JointFit:
    """The ensemble's joint fit, sampled in a thread of its own while the algorithms are
    calibrated one by one in the job's thread: it needs none of their results, and a worker's
    second core halves an ensemble's time. Only the job's thread talks to the job's context
    (progress and its cancellation checkpoint); the joint fit's thread counts its iterations
    and stops at its next chunk once told to."""

    def __init__(self, prepared: dict[str, Any], mmat_type: str, settings: Any) -> None:
        from conveyor.packs.calibration import model
        from conveyor.packs.calibration.sampler import sample

        self.done = 0
        self.seconds = 0.0
        self._stop = threading.Event()

        def on_chunk(done: int, _total: int) -> None:
            self.done = done
            if self._stop.is_set():
                raise _Stopped

        def fit() -> Any:
            started = time.monotonic()
            try:
                return model.fit(list(prepared.values()), mmat_type,
                                 lambda *a, **kw: sample(*a, settings=settings, on_chunk=on_chunk, **kw))  # fmt: skip
            finally:
                self.seconds = time.monotonic() - started

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="calibration-ensemble")
        self._future = self._pool.submit(fit)

    def finished(self, timeout: float) -> bool:
        try:
            self._future.exception(timeout=timeout)
        except FutureTimeout:
            return False
        return True

    def result(self) -> Any:
        return self._future.result()

    def stop(self) -> None:
        """Stop the thread at its next chunk (if still sampling) and wait for it."""
        self._stop.set()
        self._pool.shutdown(wait=True)


def _log_fit(ctx: Context, label: str, fit: Any, seconds: float) -> None:
    if fit.diagnostics is None:
        ctx.info(f"{label}: at most one cause to calibrate: the uncalibrated CSMF is the result", component=COMPONENT)
        return
    d = fit.diagnostics
    ctx.info(
        f"{label}: sampled in {seconds:.1f}s; R-hat {d['max_rhat']:.4f}, bulk ESS {d['min_ess_bulk_ratio']:.0%}, "
        f"{d['divergences']} divergences",
        component=COMPONENT,
    )
    from conveyor.packs.calibration.sampler import Diagnostics

    problems = Diagnostics(**d).problems()
    if problems:
        ctx.warning(f"{label}: poor sampler diagnostics: {'; '.join(problems)}", component=COMPONENT)


jobtypes = Registry()


@jobtypes.add
class Calibration(JobType):
    """Calibrates VA cause-specific mortality fractions (vacalibration 2.1's model)."""

    kind = KIND
    queue = "default"
    runs_in = "process"
    description = "VA calibration of cause-specific mortality fractions (seed 003)"

    def execute(self, ctx: Context, data: CalibrationInput) -> dict[str, Any]:
        try:
            return run(ctx, data)
        except ImportError as exc:
            raise PermanentError(
                f"calibration needs the optional dependencies: pip install 'conveyor[calibration]' ({exc})"
            ) from None

    def cache_key(self, data: CalibrationInput) -> str | None:
        return cache_key(data)
