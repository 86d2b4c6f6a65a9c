"""The deterministic part of vacalibration 2.1: which causes are calibrated, and the path
correction that shrinks the misclassification matrix towards the identity.

Reproduced to floating-point agreement with the package (λ, the causes left out and the
matrix handed to the sampler), including its λ grid walked by repeated subtraction of 0.01.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

MmatType = Literal["prior", "fixed"]
NOCALIB_THRESHOLD = 0.1
LAMBDA_STEP = 0.01
ALL_EQUAL_TOLERANCE = 1.5e-8  # R's all.equal


@dataclass(frozen=True)
class Prepared:
    """One algorithm, ready for the sampler."""

    counts: np.ndarray  # deaths per broad cause (C)
    p_uncalib: np.ndarray  # counts / total
    left_out: np.ndarray  # bool (C): causes not calibrated
    lambda_calibpath: float | None  # None when nothing is calibrated
    matrix: np.ndarray  # CxC: Dirichlet parameters (prior) or misclassification rates (fixed)

    @property
    def calibrated(self) -> bool:
        return int((~self.left_out).sum()) > 1


def pinv(matrix: np.ndarray) -> np.ndarray:
    """MASS::ginv: singular values below √ε times the largest are treated as zero."""
    return np.linalg.pinv(matrix, rcond=np.sqrt(np.finfo(float).eps))


def causes_left_out(matrix: np.ndarray, donotcalib: np.ndarray, threshold: float = NOCALIB_THRESHOLD) -> np.ndarray:
    """The user's donotcalib, plus the VA causes whose column of the row-normalised matrix
    barely varies across true causes (max - min ≤ threshold): calibrating them changes nothing."""
    rates = matrix / matrix.sum(axis=1, keepdims=True)
    flat = (rates.max(axis=0) - rates.min(axis=0)) <= threshold
    return donotcalib | flat


def _outside_simplex(rates: np.ndarray, q: np.ndarray, lam: float) -> bool:
    shrunk = lam * np.eye(len(q)) + (1 - lam) * rates
    x = pinv(shrunk.T) @ q
    return bool(np.any(x < 0) or np.any(x > 1))


def calibration_path(rates: np.ndarray, q: np.ndarray, *, start: float, cap: float | None) -> float:
    """The smallest λ on the package's grid (start, start - 0.01, …) at which the calibration
    equation (λI + (1-λ)M)ᵀ x = q still has a solution inside [0, 1]."""
    lam = start
    while True:
        outside = _outside_simplex(rates, q, lam)
        if outside or abs(lam) < ALL_EQUAL_TOLERANCE:
            break
        lam = lam - LAMBDA_STEP
    if outside:
        lam = lam + LAMBDA_STEP
        if cap is not None:
            lam = min(lam, cap)
    return lam


def prepare(counts: np.ndarray, matrix: np.ndarray, donotcalib: np.ndarray, mmat_type: MmatType) -> Prepared:
    """Causes left out, λ and the path-corrected matrix for one algorithm (path_correction=TRUE).

    `matrix` is the CHAMPS `asDirich` matrix in prior mode, the `postmean` one in fixed mode.
    """
    p0 = counts / counts.sum()
    left_out = causes_left_out(matrix, donotcalib)
    keep = ~left_out
    if keep.sum() <= 1:
        return Prepared(counts, p0, left_out, None, matrix.copy())
    block = matrix[np.ix_(keep, keep)]
    shape = block.sum(axis=1, keepdims=True)
    rates = block / shape
    q = p0[keep] / p0[keep].sum()
    if mmat_type == "prior":
        lam = calibration_path(rates, q, start=0.99, cap=0.99)
    else:
        lam = calibration_path(rates, q, start=1.0, cap=None)
    shrunk = lam * np.eye(int(keep.sum())) + (1 - lam) * rates
    corrected = matrix.copy()
    corrected[np.ix_(keep, keep)] = shape * shrunk if mmat_type == "prior" else shrunk
    return Prepared(counts, p0, left_out, lam, corrected)
