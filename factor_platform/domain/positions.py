"""The positions vocabulary (contract §2, §4) and the rule of a usable positions frame, defined once:
the CSV parser, the valuation and the book all speak it."""

from __future__ import annotations

import numpy as np
import pandas as pd

REQUIRED_COLUMNS = ("symbol", "quantity", "position_type", "investment_class", "entry_price", "entry_date")
OPTIONAL_COLUMNS = (
    "exit_date",
    "exit_price",
    "underlying",
    "strike",
    "expiration",
    "option_type",
    "manual_market_value",
    "sector",
)
POSITION_COLUMNS = (  # the columns of the `positions` table, in its order
    "position_id",
    "portfolio_id",
    "symbol",
    "position_type",
    "investment_class",
    "quantity",
    "entry_price",
    "entry_date",
) + OPTIONAL_COLUMNS
POSITION_TYPES = ("LONG", "SHORT", "LC", "LP", "SC", "SP")
INVESTMENT_CLASSES = ("PUBLIC", "OPTIONS", "PRIVATE")
OPTION_TYPES = ("CALL", "PUT")
# The option type each option position type implies (long/short call/put).
OPTION_POSITION_TYPES = {"LC": "CALL", "SC": "CALL", "LP": "PUT", "SP": "PUT"}
# Signed quantity = SIGN x quantity; the contract multiplier of OPTIONS.
SIGN = {"LONG": 1.0, "SHORT": -1.0, "LC": 1.0, "LP": 1.0, "SC": -1.0, "SP": -1.0}
OPTION_MULTIPLIER = 100.0
REQUIRED_POSITION_COLUMNS = ("position_id",) + REQUIRED_COLUMNS


def _as_ns(values) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(values)).as_unit("ns")


def normalize_positions(positions: pd.DataFrame) -> pd.DataFrame:
    """Validated copy of a positions frame, with the optional columns added (NaN/NaT/None) and dates as
    ``datetime64[ns]``. Raises ValueError naming the position on a row the valuation cannot use."""
    missing = [c for c in REQUIRED_POSITION_COLUMNS if c not in positions.columns]
    if missing:
        raise ValueError(f"positions lack columns {missing}")
    pos = positions.copy().reset_index(drop=True)
    for column in OPTIONAL_COLUMNS:
        if column not in pos.columns:
            pos[column] = None
    # A frame normalized already (each step of the valuation normalizes its input) skips the conversions.
    for column in ("entry_date", "exit_date", "expiration"):
        if pos[column].dtype != "datetime64[ns]":
            pos[column] = _as_ns(pos[column]).normalize()
        elif (pos[column].dropna().to_numpy() != pos[column].dropna().to_numpy().astype("datetime64[D]")).any():
            pos[column] = pos[column].dt.normalize()
    for column in ("quantity", "entry_price", "exit_price", "strike", "manual_market_value"):
        if pos[column].dtype != np.float64:
            pos[column] = pd.to_numeric(pos[column], errors="raise").astype(np.float64)
    if pos["position_id"].duplicated().any():
        dupes = sorted(pos.loc[pos["position_id"].duplicated(), "position_id"].unique().tolist())
        raise ValueError(f"position_id not unique: {dupes}")

    for row in pos.itertuples(index=False):
        pid = row.position_id
        if row.position_type not in SIGN:
            raise ValueError(f"position {pid}: position_type {row.position_type!r} is not one of {list(SIGN)}")
        if row.investment_class not in INVESTMENT_CLASSES:
            raise ValueError(
                f"position {pid}: investment_class {row.investment_class!r} is not one of {INVESTMENT_CLASSES}"
            )
        if (row.investment_class == "OPTIONS") != (row.position_type in OPTION_POSITION_TYPES):
            raise ValueError(
                f"position {pid}: position_type {row.position_type} does not go with investment_class {row.investment_class}"
            )
        if not row.quantity > 0:
            raise ValueError(f"position {pid}: quantity must be > 0, got {row.quantity}")
        if pd.isna(row.entry_date):
            raise ValueError(f"position {pid}: entry_date is missing")
        if pd.notna(row.exit_date) and row.exit_date < row.entry_date:
            raise ValueError(
                f"position {pid}: exit_date {row.exit_date.date()} is before entry_date {row.entry_date.date()}"
            )
        if row.investment_class == "OPTIONS":
            if not isinstance(row.underlying, str) or not row.underlying:
                raise ValueError(f"position {pid}: an option needs an underlying")
            if not row.strike > 0:
                raise ValueError(f"position {pid}: an option needs a strike > 0")
            if pd.isna(row.expiration):
                raise ValueError(f"position {pid}: an option needs an expiration")
            kind = OPTION_POSITION_TYPES[row.position_type]
            if isinstance(row.option_type, str) and row.option_type.upper() != kind:
                raise ValueError(
                    f"position {pid}: option_type {row.option_type} disagrees with position_type {row.position_type}"
                )
    return pos
