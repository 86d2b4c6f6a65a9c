"""calibrate(): vacalibration 2.1's `vacalibration()` for one request, step by step.

Per algorithm: counts → uncalibrated CSMF → causes left out and path correction
(preprocess) → NUTS draws of the CSMF (sampler) → calibrated CSMF per draw, with causes left
out kept at their uncalibrated fraction → posterior mean and 95% interval (R's quantile type
7, numpy's default). With two or more algorithms and `ensemble`, one more joint fit in which
they share one CSMF.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from conveyor.packs.calibration.data import CAUSES, COUNTRIES, CalibrationData
from conveyor.packs.calibration.preprocess import MmatType, Prepared, prepare

ENSEMBLE = "ensemble"
Log = Callable[[str, str], None]  # (level, message)


@dataclass
class Request:
    counts: dict[str, np.ndarray]  # algorithm -> deaths per broad cause
    age_group: str
    country: str
    mmat_type: MmatType = "prior"
    ensemble: bool | None = None  # None: True with two or more algorithms
    donotcalib: dict[str, list[str]] = field(default_factory=dict)  # default: ["other"] each


@dataclass
class Fit:
    p_uncalib: np.ndarray
    left_out: np.ndarray
    draws: np.ndarray | None  # calibrated CSMF per draw; None: not calibrated
    diagnostics: dict[str, Any] | None

    def summary(self) -> dict[str, list[float]]:
        if self.draws is None:
            same = self.p_uncalib.tolist()
            return {"mean": same, "lower_ci": same, "upper_ci": same}
        summary = {
            "mean": self.draws.mean(axis=0),
            "lower_ci": np.quantile(self.draws, 0.025, axis=0),
            "upper_ci": np.quantile(self.draws, 0.975, axis=0),
        }
        for values in summary.values():
            values[self.left_out] = self.p_uncalib[self.left_out]  # exactly, not a mean of copies
        return {name: values.tolist() for name, values in summary.items()}


def country_to_model(country: str) -> str:
    """The CHAMPS country whose estimates are used: exact match, else the pooled "other"."""
    return country if country in COUNTRIES else "other"


def post_process(raw: np.ndarray, p0: np.ndarray, left_out: np.ndarray) -> np.ndarray:
    """Per draw: calibrated causes share what the causes left out do not take (1 - Σ p0)."""
    out = np.tile(p0, (len(raw), 1))
    keep = ~left_out
    out[:, keep] = (1 - p0[left_out].sum()) * raw[:, keep] / raw[:, keep].sum(axis=1, keepdims=True)
    return out


def calibrated_deaths(counts: np.ndarray, fit: Fit) -> list[int]:
    """The package's calibrated death counts: rounded means on the calibrated causes, then
    adjusted by whole deaths (largest first) so the total is the observed one."""
    out = counts.copy()
    if fit.draws is None:
        return [int(x) for x in out]
    keep = ~fit.left_out
    share = 1 - fit.p_uncalib[fit.left_out].sum()
    out[keep] = np.round((counts[keep].sum() * fit.draws[:, keep] / share).mean(axis=0))
    excess = int(np.rint(out.sum() - counts.sum()))
    if excess:
        n_keep = int(keep.sum())
        adjust = np.zeros(len(out))
        adjust[keep] = abs(excess) // n_keep
        order = [i for i in np.argsort(-out, kind="stable") if keep[i]]
        for i in order[: abs(excess) % n_keep]:
            adjust[i] += 1
        out = out - adjust if excess > 0 else out + adjust
    return [int(x) for x in out]


def prepare_all(request: Request, data: CalibrationData) -> dict[str, Prepared]:
    causes = CAUSES[request.age_group]
    kind = "asDirich" if request.mmat_type == "prior" else "postmean"
    country = country_to_model(request.country)
    prepared = {}
    for algorithm, counts in request.counts.items():
        donotcalib = np.array([c in request.donotcalib.get(algorithm, ["other"]) for c in causes])
        matrix = data.matrix(request.age_group, algorithm, kind, country)
        prepared[algorithm] = prepare(counts, matrix, donotcalib, request.mmat_type)
    return prepared


def fit(
    prepared: list[Prepared],
    mmat_type: MmatType,
    sample: Callable[..., tuple[np.ndarray, Any]],
) -> Fit:
    """One fit: a single algorithm, or the ensemble of several sharing one CSMF."""
    counts = np.stack([p.counts for p in prepared])
    pooled = counts.sum(axis=0) / counts.sum()
    p0 = prepared[0].p_uncalib if len(prepared) == 1 else pooled
    left_out = np.logical_and.reduce([p.left_out for p in prepared])
    if int((~left_out).sum()) <= 1:
        return Fit(p0, left_out, None, None)
    keep = np.stack([~p.left_out if p.calibrated else np.zeros_like(p.left_out) for p in prepared]).astype(float)
    matrices = np.stack([p.matrix for p in prepared])
    # Only the causes calibrated for some algorithm (U) are sampled: the package's model with
    # the others integrated away (see sampler), and the calibrated CSMF uses p[U] alone.
    u = ~left_out
    raw_u, diagnostics = sample(counts[:, u], keep[:, u], matrices[:, u][:, :, u], sample_matrix=mmat_type == "prior")
    raw = np.zeros((len(raw_u), len(p0)))
    raw[:, u] = raw_u
    return Fit(p0, left_out, post_process(raw, p0, left_out), diagnostics.to_json())


def result(request: Request, prepared: dict[str, Prepared], fits: dict[str, Fit]) -> dict[str, Any]:
    """Seed 003's result, with what the package also reports (λ, causes left out, counts,
    the sampler's diagnostics)."""
    causes = list(CAUSES[request.age_group])
    return {
        "status": "success",
        "causes": causes,
        "uncalibrated": {name: f.p_uncalib.tolist() for name, f in fits.items()},
        "calibrated": {name: f.summary() for name, f in fits.items()},
        "calibrated_deaths": {name: calibrated_deaths(prepared[name].counts, fits[name]) for name in prepared},
        "deaths": {name: [int(x) for x in p.counts] for name, p in prepared.items()},
        "lambda_calibpath": {name: p.lambda_calibpath for name, p in prepared.items()},
        "causes_not_calibrated": {
            name: [c for c, out in zip(causes, f.left_out, strict=True) if out] for name, f in fits.items()
        },
        "diagnostics": {name: f.diagnostics for name, f in fits.items()},
        "age_group": request.age_group,
        "country": request.country,
        "country_estimates": country_to_model(request.country),
        "mmat_type": request.mmat_type,
        "ensemble": ENSEMBLE in fits,
    }
