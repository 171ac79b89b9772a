"""Wide price panels (sessions x symbols) read from the analytics database for the calc layer.

A run's windows need history before its first date; `price_panel` loads that lookback and widens
it for a symbol whose loaded rows are too few while older prices exist — a window is never
silently shorter than the data allows.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from factor_platform.calc.returns import total_return_prices
from factor_platform.domain import sessions
from factor_platform.storage import Database


@dataclass(frozen=True)
class PricePanel:
    """`prices` = P, the total-return price: a symbol's adj_close where it has one on every loaded row,
    else its close with each dividend added back on its ex-date (`calc.returns.total_return_prices`);
    `close` = close on the stored basis (split-adjusted); `actions` = the symbols' corporate actions
    (symbol, date, kind, value), splits of any date, dividends up to the last date. NaN = no price."""

    prices: pd.DataFrame
    close: pd.DataFrame
    actions: pd.DataFrame

    def of(self, symbols: list[str]) -> PricePanel:
        """The panel of `symbols` alone (columns of this one): what `price_panel` reads for them over the same span."""
        return PricePanel(
            self.prices[symbols],
            self.close[symbols],
            self.actions[self.actions["symbol"].isin(symbols)].reset_index(drop=True),
        )

    def kind(self, kind: str) -> pd.DataFrame:
        """The actions of one kind, long: symbol, date, value."""
        return self.actions.loc[self.actions["kind"] == kind, ["symbol", "date", "value"]].reset_index(drop=True)


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
            older = db.read(
                "prices",
                {"symbol": short, "date": (dt.date(1900, 1, 1), start - dt.timedelta(days=1))},
                columns=columns,
            )
            if len(older):
                rows = pd.concat([older, rows], ignore_index=True)
    first = rows["date"].min().date() if len(rows) else start
    index = sessions.sessions_in_range(min(first, start), last_date, calendar)
    actions = db.read("corporate_actions", {"symbol": symbols}, columns=["symbol", "date", "kind", "value"])
    actions = actions[(actions["kind"] == "split") | (actions["date"] <= pd.Timestamp(last_date))].reset_index(
        drop=True
    )
    close = _pivot(rows, "close", index, symbols)
    adjusted = _pivot(rows, "adj_close", index, symbols)
    complete = (adjusted.notna() | close.isna()).all() & close.notna().any()
    dividends = actions[actions["kind"] == "dividend"]
    wide_dividends = (
        dividends.pivot_table(index="date", columns="symbol", values="value", aggfunc="sum").reindex(
            index=index, columns=symbols
        )
        if len(dividends)
        else None
    )
    total = total_return_prices(close, wide_dividends)
    prices = total.copy()
    with_adjusted = [s for s in symbols if complete[s]]
    prices[with_adjusted] = adjusted[with_adjusted]
    return PricePanel(prices=prices.astype("float64"), close=close, actions=actions)
