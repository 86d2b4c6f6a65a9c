"""VA calibration (seed 003): vacalibration 2.1's Bayesian calibration of cause-specific
mortality fractions from verbal-autopsy algorithms, in Python (NumPyro's NUTS on JAX).

A pack: one job type, `calibration`, on the public job-type API only. Importing it is cheap:
numpy is needed to validate a request; JAX and NumPyro (`pip install 'conveyor[calibration]'`)
are imported when a job runs. The data (CHAMPS misclassification estimates, the example)
are read from the directory CONVEYOR_VACALIBRATION_DATA names.
"""

import importlib.util

from conveyor.packs.calibration import data
from conveyor.packs.calibration.data import (
    AGE_GROUPS,
    ALGORITHMS,
    CAUSES,
    COUNTRIES,
    SETTING,
    DataUnavailable,
)
from conveyor.packs.calibration.jobtype import KIND, CalibrationInput, cache_key, jobtypes


def unavailable() -> str | None:
    """Why calibration jobs could not run here (the optional extra, or the data, missing);
    None when they can."""
    if importlib.util.find_spec("numpyro") is None:
        return "calibration needs the optional dependencies: pip install 'conveyor[calibration]'"
    try:
        data.load()
    except DataUnavailable as exc:
        return str(exc)
    return None


__all__ = [
    "AGE_GROUPS",
    "ALGORITHMS",
    "CAUSES",
    "COUNTRIES",
    "KIND",
    "SETTING",
    "CalibrationInput",
    "DataUnavailable",
    "cache_key",
    "jobtypes",
    "unavailable",
]
