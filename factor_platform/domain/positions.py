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


def normalize_positions(positions: pd.DataFrame, *, books: str | None = None) -> pd.DataFrame:
    """Validated copy of a positions frame, with the optional columns added (NaN/NaT/None) and dates as
    ``datetime64[ns]``. Raises ValueError naming the position on a row the valuation cannot use.

    `books`: the column naming each row's book, when the frame holds several (position ids are unique
    within a book): one pass over every book instead of one per book."""
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
        else:
            days = pos[column].to_numpy()
            days = days[~np.isnat(days)]
            if (days != days.astype("datetime64[D]")).any():
                pos[column] = pos[column].dt.normalize()
    for column in ("quantity", "entry_price", "exit_price", "strike", "manual_market_value"):
        if pos[column].dtype != np.float64:
            pos[column] = pd.to_numeric(pos[column], errors="raise").astype(np.float64)
    repeated = pos.duplicated([books, "position_id"] if books else ["position_id"]).to_numpy()
    if repeated.any():
        dupes = sorted(pos.loc[repeated, "position_id"].unique().tolist())
        raise ValueError(f"position_id not unique: {dupes}")

    _validate_rows(pos)
    return pos


def _validate_rows(pos: pd.DataFrame) -> None:
    """ValueError naming the first position (in row order) that breaks a rule, and its first rule broken.

    Each rule is a test over the whole column with its message: no loop over the rows unless one breaks."""
    ptype, cls = pos["position_type"].to_numpy(object), pos["investment_class"].to_numpy(object)
    options = cls == "OPTIONS"
    entry, exit_ = pos["entry_date"].to_numpy(), pos["exit_date"].to_numpy()
    kinds = [OPTION_POSITION_TYPES.get(t) if isinstance(t, str) else None for t in ptype]
    rules = [
        ([t not in SIGN for t in ptype], lambda r: f"position_type {r.position_type!r} is not one of {list(SIGN)}"),
        (
            [c not in INVESTMENT_CLASSES for c in cls],
            lambda r: f"investment_class {r.investment_class!r} is not one of {INVESTMENT_CLASSES}",
        ),
        (
            options != np.array([k is not None for k in kinds], dtype=bool),
            lambda r: f"position_type {r.position_type} does not go with investment_class {r.investment_class}",
        ),
        (~(pos["quantity"].to_numpy() > 0), lambda r: f"quantity must be > 0, got {r.quantity}"),
        (np.isnat(entry), lambda r: "entry_date is missing"),
        (
            ~np.isnat(exit_) & (exit_ < entry),
            lambda r: f"exit_date {r.exit_date.date()} is before entry_date {r.entry_date.date()}",
        ),
        (
            options & ~np.array([isinstance(u, str) and u != "" for u in pos["underlying"]], dtype=bool),
            lambda r: "an option needs an underlying",
        ),
        (options & ~(pos["strike"].to_numpy() > 0), lambda r: "an option needs a strike > 0"),
        (options & np.isnat(pos["expiration"].to_numpy()), lambda r: "an option needs an expiration"),
        (
            options
            & np.array([isinstance(o, str) and o.upper() != k for o, k in zip(pos["option_type"], kinds)], dtype=bool),
            lambda r: f"option_type {r.option_type} disagrees with position_type {r.position_type}",
        ),
    ]
    broken = np.column_stack([np.asarray(mask, dtype=bool) for mask, _ in rules]) if len(pos) else None
    if broken is None or not broken.any():
        return
    i = int(np.flatnonzero(broken.any(axis=1))[0])
    row = next(pos.iloc[[i]].itertuples(index=False))
    raise ValueError(f"position {row.position_id}: {rules[int(np.flatnonzero(broken[i])[0])][1](row)}")
