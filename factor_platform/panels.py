"""Wide price panels (sessions x symbols) read from the analytics database for the calc layer.

A run's windows need history before its first date; `price_panel` loads that lookback and widens
it for a symbol whose loaded rows are too few while older prices exist — a window is never
silently shorter than the data allows.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from factor_platform import sessions
from factor_platform.storage import Database


@dataclass(frozen=True)
class PricePanel:
    """`prices` = P (adj_close where present, else close); `close` = raw close. NaN = no price."""

    prices: pd.DataFrame
    close: pd.DataFrame


def _pivot(rows: pd.DataFrame, column: str, index: pd.DatetimeIndex, symbols: list[str]) -> pd.DataFrame:
    wide = rows.pivot(index="date", columns="symbol", values=column) if len(rows) else pd.DataFrame()
    return wide.reindex(index=index, columns=symbols).astype("float64")


def price_panel(
    db: Database,
    symbols: list[str],
    *,
    first_date: dt.date,
    last_date: dt.date,
    lookback_sessions: int,
    min_history: int = 0,
    calendar: str = "XNYS",
) -> PricePanel:
    """Prices of `symbols` from `lookback_sessions` sessions before `first_date` to `last_date`.

    Nothing after `last_date` is read (no look-ahead). A symbol with fewer than `min_history`
    priced rows before `first_date` in that span is re-read over its whole history.
    """
    symbols = sorted(set(symbols))
    start = sessions.sessions_before(first_date, lookback_sessions, calendar)
    columns = ["symbol", "date", "close", "adj_close"]
    rows = db.read("prices", {"symbol": symbols, "date": (start, last_date)}, columns=columns)
    if min_history and len(rows):
        before = rows[rows["date"] < pd.Timestamp(first_date)].groupby("symbol").size()
        short = [s for s in symbols if before.get(s, 0) < min_history]
        if short:
            older = db.read("prices", {"symbol": short, "date": (dt.date(1900, 1, 1), start - dt.timedelta(days=1))}, columns=columns)
            if len(older):
                rows = pd.concat([older, rows], ignore_index=True)
    first = rows["date"].min().date() if len(rows) else start
    index = sessions.sessions_in_range(min(first, start), last_date, calendar)
    rows = rows.assign(P=rows["adj_close"].where(rows["adj_close"].notna(), rows["close"]))
    return PricePanel(prices=_pivot(rows, "P", index, symbols), close=_pivot(rows, "close", index, symbols))
