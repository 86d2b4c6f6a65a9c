"""The package's data, read from the directory CONVEYOR_VACALIBRATION_DATA names (the setting
`vacalibration_data`, conveyor/settings.py).

The CHAMPS misclassification estimates and the COMSA-Mozambique example data come from the R
package vacalibration (Pramanik et al. 2025, doi:10.1214/24-AOAS2006; data © Sandipan
Pramanik, GPL-2 in 2.1, MIT in 2.2) and are not shipped with conveyor. The layout expected is
the one the README's "VA calibration" section describes (`ccva_missmat_prior.json`,
`cause_map_specific_to_broad.csv`, the example CSVs).
"""

from __future__ import annotations

import csv
import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from conveyor.packs.calibration.causemap import PACKAGE_MAP

if TYPE_CHECKING:
    import numpy as np

SETTING = "CONVEYOR_VACALIBRATION_DATA"  # Settings.vacalibration_data
AgeGroup = Literal["neonate", "child"]
ALGORITHMS = ("eava", "insilicova", "interva")
AGE_GROUPS: tuple[AgeGroup, ...] = ("neonate", "child")
COUNTRIES = ("Bangladesh", "Ethiopia", "Kenya", "Mali", "Mozambique", "Sierra Leone", "South Africa")
# The broad causes, in the package's order (every vector and matrix uses it).
CAUSES: dict[str, tuple[str, ...]] = {
    "neonate": ("congenital_malformation", "pneumonia", "sepsis_meningitis_inf", "ipre", "other", "prematurity"),
    "child": (
        "malaria", "pneumonia", "diarrhea", "severe_malnutrition", "hiv", "injury", "other", "other_infections",
        "nn_causes",
    ),
}  # fmt: skip
PRIOR_FILE = "ccva_missmat_prior.json"
CAUSE_MAP_FILE = "cause_map_specific_to_broad.csv"
# `use_example`: the package's COMSA-Mozambique example data (InSilicoVA's specific causes for
# children, the published broad-cause table for neonates), as vacalibration 2.1 ships them.
EXAMPLE_FILES: dict[tuple[str, str], str] = {
    ("neonate", "insilicova"): "comsamoz_public_broad_neonate_insilicova.csv",
    ("child", "insilicova"): "comsamoz_CCVAoutput_child_insilicova.csv",
    ("neonate", "eava"): "comsamoz_CCVAoutput_neonate_eava.csv",
    ("neonate", "interva"): "comsamoz_CCVAoutput_neonate_interva.csv",
    ("child", "eava"): "comsamoz_CCVAoutput_child_eava.csv",
    ("child", "interva"): "comsamoz_CCVAoutput_child_interva.csv",
}


class DataUnavailable(Exception):
    """The data directory is not set, missing, or not in the expected layout."""


@dataclass(frozen=True)
class CalibrationData:
    """The misclassification estimates, the cause map and where the examples are."""

    directory: Path
    version: str
    # matrices[(age, algorithm, "asDirich" | "postmean", country)] -> CxC, rows true causes
    matrices: dict[tuple[str, str, str, str], np.ndarray]
    cause_map: dict[str, dict[str, str]]  # age -> specific cause (lower case) -> broad cause

    def matrix(self, age_group: str, algorithm: str, kind: str, country: str) -> np.ndarray:
        return self.matrices[(age_group, algorithm, kind, country)]

    def example_path(self, age_group: str, algorithm: str) -> Path:
        return self.directory / EXAMPLE_FILES[(age_group, algorithm)]


def configured_directory(path: str | os.PathLike[str] | None = None) -> Path:
    """The data directory: `path`, else the setting; DataUnavailable naming the setting if unset."""
    raw = path if path is not None else _setting(os.environ.get(SETTING))
    if not str(raw).strip():
        raise DataUnavailable(
            f"VA calibration data are not configured: set {SETTING} to the directory holding the "
            "vacalibration data (see the README, 'VA calibration')"
        )
    return Path(raw).expanduser()


@functools.cache
def _setting(_environment_value: str | None) -> str:
    """Settings.vacalibration_data, read again only when the variable changes (reading all the
    settings takes milliseconds, and every request's validation asks)."""
    from conveyor.settings import Settings

    return Settings().vacalibration_data


def load(path: str | os.PathLike[str] | None = None) -> CalibrationData:
    """The data in `path` (default: the setting), read once per process and directory."""
    return _load(configured_directory(path).resolve())


@functools.cache
def _load(directory: Path) -> CalibrationData:
    where = f"{SETTING}={directory}"
    if not directory.is_dir():
        raise DataUnavailable(f"VA calibration data directory not found ({where})")
    try:
        prior = json.loads((directory / PRIOR_FILE).read_text())
        matrices = _matrices(prior)
        cause_map = _cause_map(directory / CAUSE_MAP_FILE)
    except FileNotFoundError as exc:
        raise DataUnavailable(
            f"VA calibration data incomplete: {Path(exc.filename).name} is missing ({where})"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise DataUnavailable(f"VA calibration data malformed: {exc} ({where})") from None
    missing = [name for name in EXAMPLE_FILES.values() if not (directory / name).is_file()]
    if missing:
        raise DataUnavailable(f"VA calibration data incomplete: {', '.join(missing)} missing ({where})")
    return CalibrationData(directory, str(prior.get("version", "")), matrices, cause_map)


def _matrices(prior: dict[str, Any]) -> dict[tuple[str, str, str, str], np.ndarray]:
    # NumPy is imported where the data are read, not with the pack: every worker loads the
    # installed packs, and NumPy would add ~10 MB to processes that never calibrate.
    import numpy as np

    out: dict[tuple[str, str, str, str], np.ndarray] = {}
    for age in AGE_GROUPS:
        causes = list(CAUSES[age])
        for algorithm in ALGORITHMS:
            for kind in ("asDirich", "postmean"):
                for country in (*COUNTRIES, "other"):
                    entry = prior["matrices"][age][algorithm][kind][country]
                    if entry["rows_true_champs_cause"] != causes or entry["cols_va_cause"] != causes:
                        raise ValueError(f"{PRIOR_FILE}: {age}/{algorithm}/{kind}/{country} is not in the cause order")
                    values = np.asarray(entry["values"], dtype=float)
                    if values.shape != (len(causes), len(causes)) or not np.all(values > 0):
                        raise ValueError(
                            f"{PRIOR_FILE}: {age}/{algorithm}/{kind}/{country} is not a positive CxC matrix"
                        )
                    out[(age, algorithm, kind, country)] = values
    return out


def _cause_map(path: Path) -> dict[str, dict[str, str]]:
    """The package's map (causemap.py) with the CSV's rows added."""
    mapping = {age: dict(PACKAGE_MAP[age]) for age in AGE_GROUPS}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            age, broad = row["age_group"], row["broad_cause"]
            if age not in mapping or broad not in CAUSES[age]:
                raise ValueError(f"{CAUSE_MAP_FILE}: unknown age group or broad cause in {row}")
            specific = row["specific_cause_lowercase"].strip().lower()
            if mapping[age].get(specific, broad) != broad:
                raise ValueError(
                    f"{CAUSE_MAP_FILE}: {specific!r} ({age}) maps to {broad}, the package maps it to "
                    f"{mapping[age][specific]}"
                )
            mapping[age][specific] = broad
    return mapping
