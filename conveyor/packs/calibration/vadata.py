"""VA data in any of the forms seed 003 accepts, reduced to death counts per broad cause.

Per algorithm, `va_data` is one of:
- `"use_example"`: the package's COMSA-Mozambique example (InSilicoVA; neonate and child);
- a list of deaths with their specific cause, `[{"ID": "d1", "cause": "Birth asphyxia"}, …]`
  (`cause1` is read as `cause`, as the package does), mapped to broad causes with the cause
  map of the data directory, matched in lower case; deaths whose cause is `Unspecified` are
  left out, as the package does;
- a one-hot table, `[{"ID": "d1", "pneumonia": 1, "sepsis_meningitis_inf": 0, …}, …]`, one
  broad cause per death;
- counts per broad cause, `{"pneumonia": 148, …}` (causes not named count 0).
Every bad entry is named in the error.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from conveyor.packs.calibration.data import CAUSES, CalibrationData

EXAMPLE = "use_example"
EXAMPLE_COUNTS_FILE = "example_counts.json"
MAX_ERRORS_NAMED = 20


class BadVAData(ValueError):
    """One algorithm's VA data could not be read; `problems` names every bad entry."""

    def __init__(self, algorithm: str, problems: list[str]) -> None:
        shown = problems[:MAX_ERRORS_NAMED]
        more = f"; and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        super().__init__(f"va_data.{algorithm}: " + "; ".join(shown) + more)
        self.algorithm = algorithm
        self.problems = problems


def example_counts(data: CalibrationData, age_group: str, algorithm: str) -> np.ndarray:
    """The example's broad-cause counts as the package computes them (example_counts.json)."""
    path = data.directory / EXAMPLE_COUNTS_FILE
    try:
        counts = json.loads(path.read_text())["counts"][age_group][algorithm]
    except FileNotFoundError:
        raise BadVAData(algorithm, [f"use_example needs {EXAMPLE_COUNTS_FILE} in the data directory"]) from None
    except KeyError:
        raise BadVAData(
            algorithm, [f"use_example: the example data hold no {age_group} deaths for {algorithm} (use insilicova)"]
        ) from None
    return np.array([int(counts[c]) for c in CAUSES[age_group]], dtype=float)


def to_counts(value: Any, algorithm: str, age_group: str, data: CalibrationData) -> tuple[np.ndarray, list[str]]:
    """(counts per broad cause, notes for the job's log) of one algorithm's VA data."""
    causes = CAUSES[age_group]
    if value == EXAMPLE:
        return example_counts(data, age_group, algorithm), [f"{algorithm}: the COMSA-Mozambique example data"]
    if isinstance(value, dict):
        return _from_count_map(value, algorithm, causes), []
    if isinstance(value, list) and value:
        if any(isinstance(r, dict) and ("cause" in r or "cause1" in r) for r in value):
            return _from_specific(value, algorithm, age_group, data)
        return _from_one_hot(value, algorithm, causes), []
    raise BadVAData(
        algorithm,
        ['expected "use_example", counts per broad cause, a list of deaths with causes, or a one-hot table'],
    )


def _from_count_map(value: dict[str, Any], algorithm: str, causes: tuple[str, ...]) -> np.ndarray:
    problems = [f"{k!r} is not a broad cause ({', '.join(causes)})" for k in value if k not in causes]
    for k, v in value.items():
        if k in causes and (isinstance(v, bool) or not isinstance(v, int | float) or v < 0 or v != int(v)):
            problems.append(f"{k}: {v!r} is not a count (a whole number ≥ 0)")
    if problems:
        raise BadVAData(algorithm, problems)
    counts = np.array([float(value.get(c, 0)) for c in causes])
    if counts.sum() <= 0:
        raise BadVAData(algorithm, ["no deaths: every count is 0"])
    return counts


def _from_specific(
    rows: list[dict[str, Any]], algorithm: str, age_group: str, data: CalibrationData
) -> tuple[np.ndarray, list[str]]:
    causes = CAUSES[age_group]
    mapping = data.cause_map[age_group]
    counts = np.zeros(len(causes))
    problems: list[str] = []
    seen: set[str] = set()
    unspecified = 0
    for n, row in enumerate(rows):
        if not isinstance(row, dict):
            problems.append(f"death {n}: expected an object with ID and cause")
            continue
        cause = row.get("cause", row.get("cause1"))
        death_id = row.get("ID", row.get("id"))
        label = f"death {n}" + (f" (ID {death_id})" if death_id is not None else "")
        if death_id is not None:
            if str(death_id) in seen:
                problems.append(f"{label}: ID repeated")
                continue
            seen.add(str(death_id))
        if not isinstance(cause, str) or not cause.strip():
            problems.append(f"{label}: cause is missing")
            continue
        if cause == "Unspecified":  # the package leaves these deaths out
            unspecified += 1
            continue
        broad = mapping.get(cause.strip().lower())
        if broad is None:
            problems.append(f"{label}: unknown cause {cause!r} for {age_group} deaths")
            continue
        counts[causes.index(broad)] += 1
    if problems:
        raise BadVAData(algorithm, problems)
    if counts.sum() <= 0:
        raise BadVAData(algorithm, ["no deaths with a specified cause"])
    notes = [f"{algorithm}: {int(counts.sum())} deaths mapped to broad causes"]
    if unspecified:
        notes.append(f"{algorithm}: {unspecified} deaths with cause 'Unspecified' left out")
    return counts, notes


def _from_one_hot(rows: list[Any], algorithm: str, causes: tuple[str, ...]) -> np.ndarray:
    counts = np.zeros(len(causes))
    problems: list[str] = []
    for n, row in enumerate(rows):
        if not isinstance(row, dict):
            problems.append(f"death {n}: expected an object of broad causes (0 or 1 each)")
            continue
        unknown = [k for k in row if k not in causes and k.lower() != "id"]
        if unknown:
            problems.append(f"death {n}: {', '.join(map(repr, unknown))} not broad causes ({', '.join(causes)})")
            continue
        values = [row.get(c, 0) for c in causes]
        if any(v not in (0, 1) or (isinstance(v, float) and not v.is_integer()) for v in values) or sum(values) != 1:
            problems.append(f"death {n}: needs exactly one broad cause set to 1, the others 0")
            continue
        counts += np.array(values, dtype=float)
    if problems:
        raise BadVAData(algorithm, problems)
    return counts
