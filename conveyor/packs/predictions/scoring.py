"""Row checks and the published default-risk models, as polars expressions over whole chunks.

The models, with their published coefficients:

- Altman, E. I. (1968). "Financial Ratios, Discriminant Analysis and the Prediction of
  Corporate Bankruptcy." Journal of Finance 23(4), 589-609. The Z-score of public
  manufacturers: Z = 1.2 X1 + 1.4 X2 + 3.3 X3 + 0.6 X4 + 1.0 X5, with X1 = working capital /
  total assets, X2 = retained earnings / TA, X3 = EBIT / TA, X4 = market value of equity /
  total liabilities, X5 = sales / TA. Zones: Z > 2.99 safe, 1.81-2.99 grey, < 1.81 distress.
- Altman, E. I., Hartzell, J., Peck, M. (1995). "Emerging Markets Corporate Bonds: A Scoring
  System." Salomon Brothers; restated in Altman (2000), "Predicting Financial Distress of
  Companies: Revisiting the Z-score and ZETA Models", NYU Stern working paper. The Z''-score of
  non-manufacturers: Z'' = 6.56 X1 + 3.26 X2 + 6.72 X3 + 1.05 X4, X4 = book value of equity /
  total liabilities (no sales term). Zones: Z'' > 2.60 safe, 1.10-2.60 grey, < 1.10 distress.
- Ohlson, J. A. (1980). "Financial Ratios and the Probabilistic Prediction of Bankruptcy."
  Journal of Accounting Research 18(1), 109-131; model 1 (failure within one year):
  O = -1.32 - 0.407 SIZE + 6.03 TLTA - 1.43 WCTA + 0.0757 CLCA - 1.72 OENEG - 2.37 NITA
      - 1.83 FUTL + 0.285 INTWO - 0.521 CHIN, and P(failure) = exp(O) / (1 + exp(O)).
- Zmijewski, M. E. (1984). "Methodological Issues Related to the Estimation of Financial
  Distress Prediction Models." Journal of Accounting Research 22 (Supplement), 59-82 (probit):
  X = -4.336 - 4.513 NI/TA + 5.679 TL/TA + 0.004 CA/CL, and P(distress) = Phi(X).

Choices the papers leave open, fixed here (and in the README):
- Ohlson's SIZE = ln(total assets in dollars / (price-level index / 100)), the index with
  1968 = 100 (the job's `price_level_index`, default 100: amounts taken as they are).
- Funds from operations, when a row has none, is taken as net income (no depreciation is
  uploaded); INTWO and CHIN are 0 when `net_income_prior` is missing.
- Quarterly rows use the same ratios with the quarter's flows as reported (not annualised),
  and `net_income_prior` is the previous quarter's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from conveyor.packs.predictions.columns import (
    NUMERIC_OPTIONAL,
    NUMERIC_REQUIRED,
    REQUIRED,
    TEXT_COLUMNS,
    Period,
    optional_columns,
)

if TYPE_CHECKING:
    import polars as pl

# Sectors scored with the 1968 Z-score (manufacturers); every other sector gets Z''.
MANUFACTURING_SECTORS = frozenset(
    {
        "manufacturing",
        "industrials",
        "industrial",
        "materials",
        "basic materials",
        "chemicals",
        "automotive",
        "auto manufacturers",
        "aerospace & defense",
        "aerospace and defense",
        "machinery",
        "steel",
        "metals & mining",
        "paper & forest products",
        "textiles",
    }
)

AMOUNT_UNITS = {"units": 1.0, "thousands": 1e3, "millions": 1e6, "billions": 1e9}

# Risk levels, lowest first. A model "predicts failure" when Altman's score is in its distress
# zone, or Ohlson's or Zmijewski's probability is at least 0.5 (their own cut-offs).
RISK_LEVELS = ("low", "medium", "high", "critical")
OHLSON_MEDIUM = 0.05  # Ohlson probability from which a row is at least medium risk
OHLSON_HIGH = 0.20  # ... at least high risk
FAILURE_PROBABILITY = 0.5

# Rules a numeric column's value must meet (besides being a finite number).
POSITIVE = frozenset({"total_assets", "total_liabilities", "current_assets", "current_liabilities"})
NOT_NEGATIVE = frozenset({"market_cap", "revenue"})

QUARTER_FIRST_YEAR = r"^(\d{4})\s*[-_/ ]?\s*[Qq]([1-4])$"  # 2024Q3, 2024-Q3, 2024 q3
QUARTER_FIRST_Q = r"^[Qq]([1-4])\s*[-_/ ]?\s*(\d{4})$"  # Q3 2024, Q3-2024
FIRST_YEAR, LAST_YEAR = 1800, 2200


@dataclass(frozen=True, slots=True)
class ScoringOptions:
    amounts_in: str = "units"  # the unit of the uploaded amounts (for Ohlson's SIZE)
    price_level_index: float = 100.0  # GNP price-level index, 1968 = 100 (for Ohlson's SIZE)


def label(column: str) -> str:
    return column.replace("_", " ")


def num(column: str) -> str:
    """The name of a column's parsed number."""
    return f"{column}__n"


# --- the checks ----------------------------------------------------------------------------------


def _number_ok(column: str) -> pl.Expr:
    import polars as pl

    value = pl.col(num(column))
    ok = value.is_not_null() & value.is_finite()
    if column in POSITIVE:
        ok &= value > 0
    elif column in NOT_NEGATIVE:
        ok &= value >= 0
    return ok


def _absent(column: str) -> pl.Expr:
    """The cell is empty (or blanks only)."""
    import polars as pl

    raw = pl.col(column)
    if column in TEXT_COLUMNS and column != "fiscal_year":
        return raw.is_null()  # text columns are trimmed already, blanks made null
    return raw.is_null() | raw.str.contains(r"^\s*$")


def _checks(period: Period) -> list[tuple[pl.Expr, str]]:
    """What can be wrong with a row, in the order reported, in seed 004's words."""
    import polars as pl

    checks = [(_absent(c), f"Missing required field: {c}") for c in REQUIRED]
    checks += [(~_number_ok(c), f"Invalid {label(c)} value") for c in NUMERIC_REQUIRED]
    for column in NUMERIC_OPTIONAL:
        parsed = pl.col(num(column))
        unreadable = ~_absent(column) & ~(parsed.is_not_null() & parsed.is_finite())
        checks.append((unreadable, f"Invalid {label(column)} value"))
    if period == "annual":
        year = pl.col(num("fiscal_year"))
        good_year = ((year == year.floor()) & (year >= FIRST_YEAR) & (year <= LAST_YEAR)).fill_null(False)
        checks.append((~_absent("fiscal_year") & ~good_year, "Invalid fiscal year value"))
    else:
        quarter = pl.col("fiscal_quarter")
        good = quarter.str.contains(QUARTER_FIRST_YEAR) | quarter.str.contains(QUARTER_FIRST_Q)
        checks.append((quarter.is_not_null() & ~good, "Invalid fiscal quarter value"))
    return checks


def _row_error(period: Period) -> pl.Expr:
    """The first thing wrong with a row; null for a good row. Decided as a small integer per
    row and only then turned into text, so that no check costs a column of strings."""
    import polars as pl

    checks = _checks(period)
    (first, _), rest = checks[0], checks[1:]
    chain = pl.when(first).then(pl.lit(0, dtype=pl.UInt8))
    for number, (failed, _) in enumerate(rest, start=1):
        chain = chain.when(failed).then(pl.lit(number, dtype=pl.UInt8))
    messages = [message for _, message in checks]
    return chain.otherwise(None).replace_strict(
        list(range(len(messages))), messages, default=None, return_dtype=pl.String
    )


def prepare(frame: pl.DataFrame, period: Period) -> pl.DataFrame:
    """Blank rows dropped, text trimmed (empty cells are missing), numbers parsed, and `error`."""
    import polars as pl

    known = (*REQUIRED, *optional_columns(period))
    present = [c for c in known if c in frame.columns]
    frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(c) for c in known if c not in frame.columns)
    frame = frame.filter(pl.any_horizontal([pl.col(c).is_not_null() for c in present]))
    text = [c for c in known if c in TEXT_COLUMNS and c != "fiscal_year"]
    numeric = [*NUMERIC_REQUIRED, *NUMERIC_OPTIONAL, *(["fiscal_year"] if period == "annual" else [])]
    trimmed = {c: pl.col(c).str.strip_chars() for c in text}
    frame = frame.with_columns(
        [pl.when(t == "").then(None).otherwise(t).alias(c) for c, t in trimmed.items()]
        + [pl.col(c).str.strip_chars().cast(pl.Float64, strict=False).alias(num(c)) for c in numeric]
    )
    frame = frame.with_columns(_row_error(period).alias("error"))
    return frame.drop(numeric)


def split(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(the rows to score, the per-row errors: row, company_symbol, error)."""
    import polars as pl

    errors = frame.filter(pl.col("error").is_not_null()).select("row", "company_symbol", "error")
    return frame.filter(pl.col("error").is_null()), errors


# --- the models ------------------------------------------------------------------------------------


def _ratios() -> dict[str, pl.Expr]:
    import polars as pl

    ta, tl = pl.col(num("total_assets")), pl.col(num("total_liabilities"))
    ca, cl = pl.col(num("current_assets")), pl.col(num("current_liabilities"))
    return {
        "x1": (ca - cl) / ta,  # working capital / total assets
        "x2": pl.col(num("retained_earnings")) / ta,
        "x3": pl.col(num("ebit")) / ta,
        "x4_market": pl.col(num("market_cap")) / tl,  # market value of equity / total liabilities
        "x4_book": (ta - tl) / tl,  # book value of equity / total liabilities
        "x5": pl.col(num("revenue")) / ta,
        "tlta": tl / ta,
        "clca": cl / ca,
        "cacl": ca / cl,
        "nita": pl.col(num("net_income")) / ta,
    }


def altman_z(x1: pl.Expr, x2: pl.Expr, x3: pl.Expr, x4: pl.Expr, x5: pl.Expr) -> pl.Expr:
    """Altman (1968), public manufacturers."""
    return 1.2 * x1 + 1.4 * x2 + 3.3 * x3 + 0.6 * x4 + 1.0 * x5


def altman_z2(x1: pl.Expr, x2: pl.Expr, x3: pl.Expr, x4: pl.Expr) -> pl.Expr:
    """Altman, Hartzell and Peck (1995) Z'', non-manufacturers and emerging markets."""
    return 6.56 * x1 + 3.26 * x2 + 6.72 * x3 + 1.05 * x4


def zone(score: pl.Expr, safe_above: float, distress_below: float) -> pl.Expr:
    import polars as pl

    return (
        pl.when(score > safe_above)
        .then(pl.lit("safe"))
        .when(score >= distress_below)
        .then(pl.lit("grey"))
        .otherwise(pl.lit("distress"))
    )


def ohlson_o(r: dict[str, pl.Expr], options: ScoringOptions) -> pl.Expr:
    """Ohlson (1980) model 1."""
    import polars as pl

    ta, tl = pl.col(num("total_assets")), pl.col(num("total_liabilities"))
    ni, prior = pl.col(num("net_income")), pl.col(num("net_income_prior"))
    dollars = ta * AMOUNT_UNITS[options.amounts_in]
    size = (dollars / (options.price_level_index / 100.0)).log()
    oeneg = (tl > ta).cast(pl.Float64)
    ffo = pl.coalesce(pl.col(num("funds_from_operations")), ni)
    intwo = ((ni < 0) & (prior < 0)).fill_null(False).cast(pl.Float64)
    scale = ni.abs() + prior.abs()
    chin = pl.when(prior.is_null() | (scale == 0)).then(0.0).otherwise((ni - prior) / scale)
    return (
        -1.32
        - 0.407 * size
        + 6.03 * r["tlta"]
        - 1.43 * r["x1"]
        + 0.0757 * r["clca"]
        - 1.72 * oeneg
        - 2.37 * r["nita"]
        - 1.83 * (ffo / tl)
        + 0.285 * intwo
        - 0.521 * chin
    )


def logistic(x: pl.Expr) -> pl.Expr:
    return 1.0 / (1.0 + (-x).exp())


def zmijewski_x(r: dict[str, pl.Expr]) -> pl.Expr:
    """Zmijewski (1984) probit score."""
    return -4.336 - 4.513 * r["nita"] + 5.679 * r["tlta"] + 0.004 * r["cacl"]


def normal_cdf(x: pl.Expr) -> pl.Expr:
    return 0.5 * (-x / math.sqrt(2.0)).erfc()


def risk_level(zone_: pl.Expr, ohlson_p: pl.Expr, zmijewski_p: pl.Expr) -> pl.Expr:
    """critical: two or more models predict failure; high: one does, or Ohlson's probability
    is at least 0.20; medium: Altman's grey zone, or Ohlson's probability at least 0.05."""
    import polars as pl

    failing = (
        (zone_ == "distress").cast(pl.Int8)
        + (ohlson_p >= FAILURE_PROBABILITY).cast(pl.Int8)
        + (zmijewski_p >= FAILURE_PROBABILITY).cast(pl.Int8)
    )
    return (
        pl.when(failing >= 2)
        .then(pl.lit("critical"))
        .when((failing == 1) | (ohlson_p >= OHLSON_HIGH))
        .then(pl.lit("high"))
        .when((zone_ == "grey") | (ohlson_p >= OHLSON_MEDIUM))
        .then(pl.lit("medium"))
        .otherwise(pl.lit("low"))
    )


def _period(period: Period) -> pl.Expr:
    import polars as pl

    if period == "annual":
        return pl.col(num("fiscal_year")).cast(pl.Int64).alias("fiscal_year")
    quarter = pl.col("fiscal_quarter")
    year_first = quarter.str.extract_groups(QUARTER_FIRST_YEAR)
    q_first = quarter.str.extract_groups(QUARTER_FIRST_Q)
    return pl.coalesce(
        pl.concat_str(year_first.struct.field("1"), pl.lit("Q"), year_first.struct.field("2")),
        pl.concat_str(q_first.struct.field("2"), pl.lit("Q"), q_first.struct.field("1")),
    ).alias("fiscal_quarter")


def score(valid: pl.DataFrame, period: Period, options: ScoringOptions) -> pl.DataFrame:
    """The scored rows: identity columns, the three models' scores and probabilities, the
    Altman zone and the risk level."""
    import polars as pl

    r = _ratios()
    manufacturer = pl.col("sector").str.to_lowercase().is_in(list(MANUFACTURING_SECTORS)) | pl.col(
        "sector"
    ).str.to_lowercase().str.contains("manufactur")
    z = altman_z(r["x1"], r["x2"], r["x3"], r["x4_market"], r["x5"])
    z2 = altman_z2(r["x1"], r["x2"], r["x3"], r["x4_book"])
    scored = valid.select(
        "row",
        "company_symbol",
        "company_name",
        "sector",
        _period(period),
        pl.when(manufacturer).then(pl.lit("Z")).otherwise(pl.lit("Z''")).alias("altman_model"),
        pl.when(manufacturer).then(z).otherwise(z2).alias("altman_z_score"),
        pl.when(manufacturer).then(zone(z, 2.99, 1.81)).otherwise(zone(z2, 2.60, 1.10)).alias("zone"),
        ohlson_o(r, options).alias("ohlson_o_score"),
        zmijewski_x(r).alias("zmijewski_score"),
    )
    scored = scored.with_columns(
        logistic(pl.col("ohlson_o_score")).alias("probability_of_default"),
        normal_cdf(pl.col("zmijewski_score")).alias("zmijewski_probability"),
    )
    return scored.with_columns(
        risk_level(pl.col("zone"), pl.col("probability_of_default"), pl.col("zmijewski_probability")).alias(
            "risk_level"
        )
    )


RESULT_COLUMNS = {
    "annual": (
        "row", "company_symbol", "company_name", "sector", "fiscal_year", "altman_model", "altman_z_score", "zone",
        "ohlson_o_score", "probability_of_default", "zmijewski_score", "zmijewski_probability", "risk_level",
    ),
    "quarterly": (
        "row", "company_symbol", "company_name", "sector", "fiscal_quarter", "altman_model", "altman_z_score", "zone",
        "ohlson_o_score", "probability_of_default", "zmijewski_score", "zmijewski_probability", "risk_level",
    ),
}  # fmt: skip

__all__ = ["RESULT_COLUMNS", "RISK_LEVELS", "TEXT_COLUMNS", "ScoringOptions", "prepare", "score", "split"]
