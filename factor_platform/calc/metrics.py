"""Per-symbol price metrics: trailing returns, realized volatility, 52-week range (CONTRACT.md section 4)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from factor_platform.calc.returns import check_dates, check_symbols, check_wide_frame, index_ns

METRIC_COLUMNS = [
    "symbol",
    "date",
    "return_1d",
    "return_5d",
    "return_21d",
    "return_63d",
    "return_252d",
    "volatility_21d",
    "volatility_63d",
    "high_52w",
    "low_52w",
]
RETURN_HORIZONS = (1, 5, 21, 63, 252)
VOLATILITY_WINDOWS = (21, 63)
RANGE_WINDOW = 252
TRADING_DAYS = 252
_PAD = max(*RETURN_HORIZONS, *VOLATILITY_WINDOWS, RANGE_WINDOW) + 1


def symbol_metrics(
    prices: pd.DataFrame,
    close: pd.DataFrame,
    *,
    symbols: Iterable[str],
    dates: Iterable,
) -> pd.DataFrame:
    """Trailing returns, annualized realized volatility and 52-week high/low per (symbol, date).

    Every horizon counts the symbol's own priced rows (rows where ``prices`` is not NaN): "k
    sessions back" is k priced rows back, so a missing day stretches the horizon rather than
    breaking it, and one symbol's gaps never affect another symbol.

    Parameters
    ----------
    prices : DataFrame, shape (T sessions, N symbols)
        Wide price ``P`` (``adj_close`` where present, else ``close``), tz-naive sorted unique
        ``DatetimeIndex``; NaN = no price. It must hold enough rows before the first date for the
        longest horizon (253 priced rows for ``return_252d``).
    close : DataFrame
        Wide raw ``close`` on the same index (columns may be a superset).
    symbols : iterable of str
        Symbols to compute; each must be a column of both frames.
    dates : iterable of date-like
        Target dates. A (symbol, date) gets a row only when the symbol has a price on that date
        (a date that is not a row of ``prices`` gets no rows).

    Returns
    -------
    DataFrame
        Long, columns ``METRIC_COLUMNS``, one row per (symbol, date), ordered by symbol (as given)
        then date; ``date`` is datetime64[ns]. With j the date's position among the symbol's
        priced rows:

        - ``return_k`` (k = 1, 5, 21, 63, 252): ``P_j / P_{j-k} - 1``, a fraction; NaN when the
          symbol has fewer than k earlier priced rows.
        - ``volatility_k`` (k = 21, 63): sample standard deviation (ddof=1) of the last k daily
          simple returns ``P_i / P_{i-1} - 1`` times sqrt(252) (annualized, a fraction); NaN
          unless k returns are available (k + 1 priced rows).
        - ``high_52w`` / ``low_52w``: max / min of ``close`` over the last 252 priced rows
          (including the date), in price units; NaN unless all 252 rows have a close (pandas
          ``rolling(252)`` semantics).

    Raises
    ------
    ValueError
        Malformed frames (see ``check_wide_frame``; prices must be > 0), indexes that differ,
        a symbol missing from either frame, or bad dates.
    """
    p_values = check_wide_frame(prices, name="prices", positive=True)
    c_values = check_wide_frame(close, name="close", positive=True)
    if not prices.index.equals(close.index):
        raise ValueError("prices and close must have the same index")
    symbols = check_symbols(symbols, prices, name="prices")
    check_symbols(symbols, close, name="close")
    targets = check_dates(dates)

    p_pos = {c: i for i, c in enumerate(prices.columns)}
    c_pos = {c: i for i, c in enumerate(close.columns)}
    p = p_values[:, [p_pos[s] for s in symbols]]
    c = c_values[:, [c_pos[s] for s in symbols]]

    # Compress each column onto its priced rows, all columns end to end in one series with
    # _PAD NaNs before each, so that one rolling pass serves every symbol and no window reaches
    # into the previous symbol: element PAD + j of segment s = the s-th symbol's j-th priced row.
    priced = ~np.isnan(p)  # (T, S)
    T, S = p.shape
    length = T + _PAD
    count = np.cumsum(priced, axis=0)  # priced rows up to and including each row
    rows, cols = np.nonzero(priced)
    slot = cols * length + _PAD + count[rows, cols] - 1
    p_c = np.full(S * length, np.nan)
    c_c = np.full(S * length, np.nan)
    p_c[slot] = p[rows, cols]
    c_c[slot] = c[rows, cols]

    # Target (date, symbol) pairs priced on the date, symbol-major.
    stamps = index_ns(prices)
    at = np.minimum(np.searchsorted(stamps, targets.asi8), max(T - 1, 0))
    on_row = (at < T) & (stamps[at] == targets.asi8) if T else np.zeros(len(targets), dtype=bool)
    d_rows = at[on_row]  # rows of the target dates present in the index
    d_pos = np.flatnonzero(on_row)
    s_idx, t_idx = np.nonzero(priced[d_rows].T)
    flat = s_idx * length + _PAD + count[d_rows[t_idx], s_idx] - 1  # each pair in the series

    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore"):
        for k in RETURN_HORIZONS:
            out[f"return_{k}d"] = p_c[flat] / p_c[flat - k] - 1.0  # NaN (pad) without k earlier rows
        daily = np.full(S * length, np.nan)
        daily[1:] = p_c[1:] / p_c[:-1] - 1.0
        for k in VOLATILITY_WINDOWS:
            out[f"volatility_{k}d"] = _rolling(daily, k).std(ddof=1).to_numpy()[flat] * np.sqrt(TRADING_DAYS)
        out["high_52w"] = _rolling(c_c, RANGE_WINDOW).max().to_numpy()[flat]
        out["low_52w"] = _rolling(c_c, RANGE_WINDOW).min().to_numpy()[flat]

    frame = pd.DataFrame(
        {
            "symbol": pd.array(symbols, dtype="str").take(s_idx) if symbols else pd.array([], dtype="str"),
            "date": targets.values.astype("datetime64[ns]")[d_pos[t_idx]],
            **out,
        },
        columns=METRIC_COLUMNS,
    )
    return frame


def _rolling(values: np.ndarray, window: int):
    # pandas' default min_periods = window: a full window of non-NaN values
    return pd.Series(values).rolling(window)
