"""The one interface of the price sources, and the frame shapes that cross it.

A source answers four questions for a list of symbols -- prices and corporate actions over an
inclusive date range, company profiles, fundamentals -- each as a :class:`FetchResult`: a long
frame with the contract's column names plus ``failures``, a ``{symbol: why}`` map for every
requested symbol that got no data. A source never invents data to fill a gap; a gap is a failure.

Every frame a source returns obeys the same rules (enforced in one place, :func:`finish_prices`,
:func:`finish_profiles`, :func:`finish_fundamentals`, :func:`finish_actions`):

- only requested symbols; no duplicate key; sorted by key;
- prices: only dates in ``[start, end]`` that are sessions of the source's calendar; ``date`` is
  ``datetime64[ns]`` at midnight; prices are float64 (NaN where the vendor gave none -- e.g. a CSV
  without ``open``); ``volume`` is the nullable integer dtype ``Int64`` (the table's BIGINT);
- profiles: one row per symbol; ``market_cap`` float64;
- fundamentals: ``period_end`` ``datetime64[ns]``, ``value`` float64, no NaN values;
- actions: ``date`` ``datetime64[ns]`` at midnight in ``[start, end]``, ``kind`` ``split`` or
  ``dividend``, ``value`` float64, finite and > 0, one row per (symbol, date, kind).

A range that holds no session is not a failure: there was nothing to fetch.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from factor_platform.domain import sessions

PRICE_COLUMNS: tuple[str, ...] = ("symbol", "date", "open", "high", "low", "close", "adj_close", "volume", "source")
PROFILE_COLUMNS: tuple[str, ...] = ("symbol", "name", "sector", "industry", "market_cap", "currency")
FUNDAMENTAL_COLUMNS: tuple[str, ...] = ("symbol", "period_end", "metric", "value")
ACTION_COLUMNS: tuple[str, ...] = ("symbol", "date", "kind", "value", "source")
ACTION_KINDS: tuple[str, ...] = ("split", "dividend")

_PRICE_FIELDS = ("open", "high", "low", "close", "adj_close")


@dataclass
class FetchResult:
    """What a source returns: the data it has, and why each missing symbol is missing.

    ``frame`` has PRICE_COLUMNS, PROFILE_COLUMNS, FUNDAMENTAL_COLUMNS or ACTION_COLUMNS (see the
    module docstring); ``failures`` maps a requested symbol to a human-readable reason it has no data.
    """

    frame: pd.DataFrame
    failures: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class PriceSource(Protocol):
    """A market-data source: ``sample``, ``csv`` or ``yfinance`` (see ``price_source``)."""

    name: str

    def fetch_prices(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> FetchResult:
        """Daily prices of ``symbols`` on the sessions in ``[start, end]`` (inclusive)."""
        ...

    def fetch_profiles(self, symbols: Sequence[str]) -> FetchResult:
        """One company profile per symbol."""
        ...

    def fetch_fundamentals(self, symbols: Sequence[str]) -> FetchResult:
        """Quarterly fundamentals, long: one row per (symbol, period_end, metric)."""
        ...

    def fetch_actions(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> FetchResult:
        """Corporate actions of ``symbols`` dated in ``[start, end]``, on the basis of ``fetch_prices``.

        ``split``: value = new shares per old share (4.0 for 4:1, 0.1 for 1:10), dated on the first
        session at the new basis. ``dividend``: value = cash per share on the same split basis as the
        source's ``close``, dated on the ex-date. A symbol without actions is no failure (it has no
        rows); a symbol the source cannot answer for is one, since "none" and "unknown" must differ.
        """
        ...


def requested_symbols(symbols: Iterable[str] | str) -> list[str]:
    """The requested symbols, first occurrence kept, in order (a lone string is one symbol)."""
    if isinstance(symbols, str):
        symbols = [symbols]
    out: dict[str, None] = {}
    for symbol in symbols:
        if not isinstance(symbol, str) or not symbol:
            raise ValueError(f"symbols must be non-empty strings, got {symbol!r}")
        out.setdefault(symbol, None)
    return list(out)


def date_range(start, end) -> tuple[dt.date, dt.date]:
    """``(start, end)`` as dates; ValueError when start is after end."""
    first, last = sessions.to_date(start), sessions.to_date(end)
    if first > last:
        raise ValueError(f"start {first} is after end {last}")
    return first, last


def empty_frame(columns: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame({column: pd.Series(dtype=object) for column in columns})
    return _with_dtypes(frame)


def _with_dtypes(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for column in ("date", "period_end"):
        if column in frame:
            frame[column] = pd.to_datetime(frame[column]).astype("datetime64[ns]")
    for column in (*_PRICE_FIELDS, "market_cap", "value"):
        if column in frame:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    if "volume" in frame:
        # Vendors report volume as float (NaN-capable); the table stores BIGINT.
        volume = pd.to_numeric(frame["volume"], errors="coerce").astype("float64")
        frame["volume"] = volume.where(np.isfinite(volume)).round().astype("Int64")
    return frame


def finish_prices(
    frame: pd.DataFrame, symbols: Sequence[str], start: dt.date, end: dt.date, calendar: str
) -> pd.DataFrame:
    """Enforce the price-frame rules: requested symbols, sessions in range, unique, sorted, dtypes.

    Rows without a positive close are dropped (they are not prices).
    """
    if frame.empty:
        return empty_frame(PRICE_COLUMNS)
    frame = _with_dtypes(frame.loc[:, list(PRICE_COLUMNS)])
    in_range = sessions.sessions_in_range(start, end, calendar)
    keep = frame["symbol"].isin(list(symbols)) & frame["date"].isin(in_range) & (frame["close"] > 0)
    frame = frame.loc[keep].drop_duplicates(["symbol", "date"], keep="first")
    return frame.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)


def finish_profiles(frame: pd.DataFrame, symbols: Sequence[str]) -> pd.DataFrame:
    if frame.empty:
        return empty_frame(PROFILE_COLUMNS)
    frame = _with_dtypes(frame.loc[:, list(PROFILE_COLUMNS)])
    frame = frame.loc[frame["symbol"].isin(list(symbols))].drop_duplicates(["symbol"], keep="first")
    return frame.sort_values("symbol", kind="stable").reset_index(drop=True)


def finish_fundamentals(frame: pd.DataFrame, symbols: Sequence[str]) -> pd.DataFrame:
    if frame.empty:
        return empty_frame(FUNDAMENTAL_COLUMNS)
    frame = _with_dtypes(frame.loc[:, list(FUNDAMENTAL_COLUMNS)])
    keep = frame["symbol"].isin(list(symbols)) & frame["value"].notna() & frame["period_end"].notna()
    frame = frame.loc[keep].drop_duplicates(["symbol", "period_end", "metric"], keep="first")
    return frame.sort_values(["symbol", "period_end", "metric"], kind="stable").reset_index(drop=True)


def finish_actions(frame: pd.DataFrame, symbols: Sequence[str], start: dt.date, end: dt.date) -> pd.DataFrame:
    """Enforce the action-frame rules; rows that are no action (kind unknown, value not > 0) are dropped."""
    if frame.empty:
        return empty_frame(ACTION_COLUMNS)
    frame = _with_dtypes(frame.loc[:, list(ACTION_COLUMNS)])
    frame["date"] = frame["date"].dt.normalize()
    value = frame["value"].to_numpy()
    keep = (
        frame["symbol"].isin(list(symbols))
        & frame["date"].between(pd.Timestamp(start), pd.Timestamp(end))
        & frame["kind"].isin(ACTION_KINDS)
        & (np.isfinite(value) & (value > 0))
    )
    frame = frame.loc[keep].drop_duplicates(["symbol", "date", "kind"], keep="first")
    return frame.sort_values(["symbol", "date", "kind"], kind="stable").reset_index(drop=True)
