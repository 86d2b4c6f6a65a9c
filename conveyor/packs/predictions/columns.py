"""The columns of a bulk upload: which are required, which optional, and how headers match.

Header names match case-insensitively, ignoring spaces and underscores ("Market Cap",
"MARKET_CAP" and "marketcap" all name `market_cap`). Columns the job does not know are
ignored; of two headers naming the same column, the first is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Period = Literal["annual", "quarterly"]

REQUIRED = (
    "company_symbol",
    "sector",
    "market_cap",
    "total_assets",
    "total_liabilities",
    "current_assets",
    "current_liabilities",
    "retained_earnings",
    "ebit",
    "revenue",
    "net_income",
)
# The period column: the fiscal year of an annual statement, the quarter (2024Q3) of a quarterly one.
PERIOD_COLUMN: dict[Period, str] = {"annual": "fiscal_year", "quarterly": "fiscal_quarter"}
OPTIONAL_COMMON = ("company_name", "net_income_prior", "funds_from_operations")

TEXT_COLUMNS = frozenset({"company_symbol", "sector", "company_name", "fiscal_year", "fiscal_quarter"})
NUMERIC_REQUIRED = tuple(c for c in REQUIRED if c not in TEXT_COLUMNS)
NUMERIC_OPTIONAL = ("net_income_prior", "funds_from_operations")


def optional_columns(period: Period) -> tuple[str, ...]:
    return ("company_name", PERIOD_COLUMN[period], "net_income_prior", "funds_from_operations")


def normalise(header: object) -> str:
    """The key a header is matched by: lower case, no spaces, underscores or byte-order mark."""
    text = "" if header is None else str(header)
    return "".join(ch for ch in text.lstrip("\ufeff").lower() if ch not in " _\t")


@dataclass(frozen=True, slots=True)
class ColumnMap:
    """Where each known column is in the file: column name -> position in the header."""

    positions: dict[str, int]

    def __contains__(self, column: str) -> bool:
        return column in self.positions


class MissingColumns(ValueError):
    def __init__(self, missing: Sequence[str]) -> None:
        super().__init__(f"Missing required columns: {', '.join(missing)}")
        self.missing = list(missing)


def map_columns(header: Sequence[object], period: Period) -> ColumnMap:
    """The positions of the known columns in `header`; MissingColumns names every required
    column the header lacks."""
    by_key: dict[str, int] = {}
    for position, name in enumerate(header):
        by_key.setdefault(normalise(name), position)
    positions = {}
    for column in (*REQUIRED, *optional_columns(period)):
        key = normalise(column)
        if key in by_key:
            positions[column] = by_key[key]
    missing = [c for c in REQUIRED if c not in positions]
    if missing:
        raise MissingColumns(missing)
    return ColumnMap(positions)
