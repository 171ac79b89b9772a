"""A generated market whose truth is known, exported the way a vendor re-exports it each night.

Raw paths: daily total returns from a small factor model (the eight factor ETFs and a few stocks),
prices *as traded* (a 4:1 split divides the traded price, a cash dividend drops it by the cash).
`export(as_of)` writes what a Yahoo-like vendor would publish on that evening: every session up to
`as_of`, `close` split-adjusted to the splits known by then, `adj_close` (optional) also
dividend-adjusted, and an actions file; restatements and missing symbols can be injected, and so
can what real exports do (issue 18): prices rounded to cents, actions left out, rows missing for a
night, symbols listed later. The truth of a book (shares held, traded prices, dividends received) is
computed from the raw paths.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from factor_platform.domain import sessions

ETFS = ("SPY", "TLT", "VTV", "VUG", "MTUM", "QUAL", "IWM", "USMV")


@dataclass
class Market:
    days: pd.DatetimeIndex
    returns: pd.DataFrame  # total returns, sessions x symbols
    splits: dict[tuple[str, pd.Timestamp], float] = field(default_factory=dict)  # (symbol, ex-date) -> ratio
    dividend_yields: dict[tuple[str, pd.Timestamp], float] = field(default_factory=dict)  # of the previous close
    restated: dict[tuple[str, pd.Timestamp], float] = field(default_factory=dict)  # close x factor in later exports

    @classmethod
    def generate(cls, first: dt.date, last: dt.date, stocks: tuple[str, ...], *, seed: int = 11) -> Market:
        days = sessions.sessions_in_range(first, last)
        rng = np.random.default_rng(seed)
        n = len(days)
        spy, tlt = 0.0004 + 0.011 * rng.standard_normal(n), 0.0001 + 0.009 * rng.standard_normal(n)
        columns = {"SPY": spy, "TLT": tlt}
        for i, etf in enumerate(ETFS[2:]):
            columns[etf] = 0.0003 + (0.8 + 0.05 * i) * spy + 0.006 * rng.standard_normal(n)
        for i, stock in enumerate(stocks):
            columns[stock] = (0.9 + 0.2 * i) * spy + (0.3 - 0.2 * i) * tlt + 0.008 * rng.standard_normal(n)
        returns = pd.DataFrame(columns, index=days)
        returns.iloc[0] = 0.0
        return cls(days, returns)

    def traded(self, start_prices: dict[str, float] | None = None) -> pd.DataFrame:
        """Prices as traded each session (raw): the total return less the dividend, divided by splits."""
        out = {}
        for symbol in self.returns.columns:
            p = np.empty(len(self.days))
            p[0] = (start_prices or {}).get(symbol, 50.0 + 10 * (sum(map(ord, symbol)) % 7))
            r = self.returns[symbol].to_numpy()
            for t in range(1, len(self.days)):
                day = self.days[t]
                y = self.dividend_yields.get((symbol, day), 0.0)
                p[t] = p[t - 1] * (1 + r[t] - y) / self.splits.get((symbol, day), 1.0)
            out[symbol] = p
        return pd.DataFrame(out, index=self.days)

    def dividends(self) -> dict[tuple[str, pd.Timestamp], float]:
        """Cash per share as traded on each ex-date."""
        raw = self.traded()
        return {(s, d): y * raw.loc[:d, s].iloc[-2] for (s, d), y in self.dividend_yields.items()}

    def export(
        self,
        as_of: dt.date,
        path: Path,
        *,
        adj_close: bool = False,
        drop: tuple[str, ...] = (),
        restate: bool = True,
        decimals: int | None = None,
        actions: bool | Collection[tuple[str, pd.Timestamp]] = True,
        missing: Collection[tuple[str, pd.Timestamp]] = (),
        listed_from: dict[str, pd.Timestamp] | None = None,
    ) -> Path:
        """The vendor's files as published on the evening of `as_of` (prices CSV and its .actions.csv).

        decimals: close and adj_close rounded to that many decimals after adjusting, as vendors
        publish them (written with exactly that many: "123.45"); None keeps every bit.
        actions: True writes every action known on `as_of`; False writes no actions file (and removes
        one an earlier export left at the path); a collection of (symbol, ex-date) writes all but those.
        missing: (symbol, date) price rows left out of this export (a vendor's silent holes).
        listed_from: {symbol: first date}: no rows nor actions of the symbol before it (not listed yet).
        """
        cut = pd.Timestamp(as_of)
        raw = self.traded().loc[:cut]
        known_splits = {k: v for k, v in self.splits.items() if k[1] <= cut}
        factor = pd.DataFrame(1.0, index=raw.index, columns=raw.columns)  # split adjustment as of `as_of`
        for (symbol, day), ratio in known_splits.items():
            factor.loc[factor.index < day, symbol] /= ratio
        close = raw * factor
        if restate:
            for (symbol, day), f in self.restated.items():
                if day <= cut:
                    close.loc[day, symbol] *= f
        cash = {k: v for k, v in self.dividends().items() if k[1] <= cut}
        stored_cash = {}
        adjusted = close.copy()
        for (symbol, day), d in cash.items():
            later_splits = (
                np.prod([r for (s, e), r in known_splits.items() if s == symbol and e > day]) if known_splits else 1.0
            )
            stored_cash[(symbol, day)] = d / later_splits
            previous = close.loc[:day, symbol].iloc[-2]
            adjusted.loc[adjusted.index < day, symbol] *= 1 - stored_cash[(symbol, day)] / previous
        long = close.stack().rename("close").reset_index()
        long.columns = ["date", "symbol", "close"]
        if adj_close:
            long["adj_close"] = adjusted.stack().to_numpy()
        long = long[~long["symbol"].isin(drop)]
        if decimals is not None:
            for column in ("close", "adj_close"):
                if column in long:
                    long[column] = long[column].round(decimals)
        listed = _listed(long["symbol"], long["date"], listed_from)
        if missing:
            listed &= ~pd.MultiIndex.from_arrays([long["symbol"], long["date"]]).isin(
                [(s, pd.Timestamp(d)) for s, d in missing]
            )
        long = long[listed]
        long["date"] = long["date"].dt.strftime("%Y-%m-%d")
        long.to_csv(path, index=False, float_format="%.17g" if decimals is None else f"%.{decimals}f")
        actions_path = path.with_name(path.stem + ".actions.csv")
        if actions is False:
            actions_path.unlink(missing_ok=True)
            return path
        omitted = set() if actions is True else {(s, pd.Timestamp(d)) for s, d in actions}
        rows = [(s, d, "split", r) for (s, d), r in known_splits.items() if (s, d) not in omitted]
        rows += [(s, d, "dividend", v) for (s, d), v in stored_cash.items() if (s, d) not in omitted]
        frame = pd.DataFrame(rows, columns=["symbol", "date", "kind", "value"])
        frame = frame[
            ~frame["symbol"].isin(drop) & _listed(frame["symbol"], pd.to_datetime(frame["date"]), listed_from)
        ]
        frame = frame.assign(date=pd.to_datetime(frame["date"]).dt.strftime("%Y-%m-%d"))
        frame.to_csv(actions_path, index=False, float_format="%.17g")
        return path

    def true_equity(
        self, book: list[dict], starting_equity: float, days: pd.DatetimeIndex, *, traded: pd.DataFrame | None = None
    ) -> pd.Series:
        """Equity of `book` (symbol, quantity, sign, entry_date, entry_price as traded) on each of `days`:
        shares held x price as traded (the final, restated one) + dividends received, from the raw paths.

        traded: the prices as traded to value the book with (sessions x symbols) instead of the raw
        paths, e.g. as a vendor's final, cent-rounded export implies them."""
        raw = self.traded() if traded is None else traded.copy()
        if traded is None:
            for (symbol, day), f in self.restated.items():
                raw.loc[day, symbol] *= f
        cash = self.dividends()
        equity = pd.Series(float(starting_equity), index=days)
        for p in book:
            entry = pd.Timestamp(p["entry_date"])
            shares = pd.Series(float(p["quantity"]), index=raw.index)
            for (symbol, day), ratio in self.splits.items():
                if symbol == p["symbol"] and day > entry:
                    shares[shares.index >= day] *= ratio
            value = p["sign"] * (shares * raw[p["symbol"]] - p["quantity"] * p["entry_price"])
            received = pd.Series(0.0, index=raw.index)
            for (symbol, day), d in cash.items():
                if symbol == p["symbol"] and day > entry:
                    received[received.index >= day] += p["sign"] * shares[shares.index < day].iloc[-1] * d
            equity += (value + received).reindex(days)
        return equity


def _listed(symbols: pd.Series, dates: pd.Series, listed_from: dict[str, pd.Timestamp] | None) -> pd.Series:
    """Per row: on or after its symbol's first listed date (every row when `listed_from` is empty)."""
    if not listed_from:
        return pd.Series(True, index=symbols.index)
    first = symbols.map({s: pd.Timestamp(d) for s, d in listed_from.items()})
    return first.isna() | (dates >= first)
