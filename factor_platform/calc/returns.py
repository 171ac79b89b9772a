"""Daily simple returns from wide price frames, and the input checks every calc module shares.

Wide frames (docs/architecture.md): index = tz-naive ``DatetimeIndex`` of sessions, sorted ascending
and unique; columns = symbols (str); float64 values; NaN = no data.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd


def check_wide_frame(frame: pd.DataFrame, *, name: str, positive: bool = False) -> np.ndarray:
    """Validate a wide frame and return its values as a float64 ndarray (rows x columns).

    Raises ``ValueError`` when ``frame`` is not a DataFrame, its index is not a tz-naive
    ``DatetimeIndex`` that is strictly increasing, its columns repeat, a value is not numeric or is
    infinite, or (``positive=True``, for prices) a non-NaN value is <= 0.
    """
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{name} must be a wide pandas DataFrame, got {type(frame).__name__}")
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex):
        raise ValueError(f"{name} index must be a DatetimeIndex of sessions, got {type(index).__name__}")
    if index.tz is not None:
        raise ValueError(f"{name} index must be tz-naive, got tz={index.tz}")
    if index.hasnans:
        raise ValueError(f"{name} index contains NaT")
    if not (index.is_monotonic_increasing and index.is_unique):
        raise ValueError(f"{name} index must be sorted ascending without duplicate dates")
    if not frame.columns.is_unique:
        dupes = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
        raise ValueError(f"{name} has duplicate columns: {dupes}")
    try:
        values = frame.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must hold numeric values: {exc}") from exc
    if np.isinf(values).any():
        raise ValueError(f"{name} has infinite values in columns {_bad_columns(frame, np.isinf(values))}")
    if positive:
        with np.errstate(invalid="ignore"):
            bad = values <= 0
        if bad.any():
            raise ValueError(f"{name} has prices <= 0 in columns {_bad_columns(frame, bad)}")
    return values


def check_symbols(symbols: Iterable[str], frame: pd.DataFrame, *, name: str) -> list[str]:
    """Symbols as a de-duplicated list (first occurrence order); ``ValueError`` if one is not a column."""
    if isinstance(symbols, str):
        raise ValueError("symbols must be a sequence of symbols, not a single string")
    out = list(dict.fromkeys(symbols))
    missing = [s for s in out if s not in frame.columns]
    if missing:
        raise ValueError(f"{name} has no column for symbols {missing[:20]}{' ...' if len(missing) > 20 else ''}")
    return out


def check_dates(dates: Iterable) -> pd.DatetimeIndex:
    """Target dates as a sorted, unique, tz-naive ``DatetimeIndex`` (datetime64[ns])."""
    if (  # already so (a panel's index): not rebuilt from a list of Timestamps
        isinstance(dates, pd.DatetimeIndex)
        and dates.dtype == np.dtype("datetime64[ns]")
        and dates.is_monotonic_increasing
        and dates.is_unique
        and not dates.hasnans
    ):
        return pd.DatetimeIndex(dates.to_numpy())  # as the list would come back: no name, no freq
    if isinstance(dates, str):
        dates = [dates]
    try:
        index = pd.DatetimeIndex(pd.to_datetime(list(dates)))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"dates must be date-like: {exc}") from exc
    if index.tz is not None:
        raise ValueError(f"dates must be tz-naive, got tz={index.tz}")
    if index.hasnans:
        raise ValueError("dates contain NaT")
    return index.as_unit("ns").unique().sort_values()


def index_ns(frame: pd.DataFrame) -> np.ndarray:
    """The frame's DatetimeIndex as int64 nanoseconds (whatever the index's unit)."""
    return frame.index.as_unit("ns").asi8


def simple_returns(prices: pd.DataFrame) -> pd.DataFrame:
    """Daily simple returns of a wide price frame, each symbol on its own priced rows.

    Parameters
    ----------
    prices : DataFrame, shape (T sessions, N symbols)
        Wide price frame ``P`` (``adj_close`` where present, else ``close``; built by the caller).
        Index: tz-naive sorted unique ``DatetimeIndex``; NaN = no price that session.

    Returns
    -------
    DataFrame, same shape, index and columns
        ``r_d = P_d / P_prev - 1`` (a fraction, not annualized, not in percent) where ``prev`` is the
        symbol's previous row with a price. After a gap the first priced row books the whole move
        since the last price. NaN where ``P_d`` is NaN or the symbol has no earlier price. Columns are
        independent: one symbol's missing rows never change another symbol's returns.

    Raises
    ------
    ValueError
        Malformed frame (see ``check_wide_frame``), or a price that is infinite or <= 0.
    """
    values = check_wide_frame(prices, name="prices", positive=True)
    previous = pd.DataFrame(values).ffill().shift(1).to_numpy()
    out = values / previous - 1.0
    return pd.DataFrame(out, index=prices.index, columns=prices.columns)


def _bad_columns(frame: pd.DataFrame, bad: np.ndarray) -> list[str]:
    cols = [str(c) for c in frame.columns[bad.any(axis=0)]]
    return cols[:20] + (["..."] if len(cols) > 20 else [])


def total_return_prices(close: pd.DataFrame, dividends: pd.DataFrame | None) -> pd.DataFrame:
    """A total-return price path from ``close`` and the cash ``dividends`` on their ex-dates.

    Both wide, same index and columns (``dividends`` NaN/0 where none; ``None`` = no dividends). The path
    starts at each symbol's first close and grows by ``(close_d + D_d) / close_prev`` on each priced row,
    so its simple returns are the total returns; a dividend on an unpriced row is added to the next priced
    one. A symbol without dividends keeps its ``close`` exactly (its figures do not change).
    """
    values = check_wide_frame(close, name="close", positive=True)
    if dividends is None:
        return close.copy()
    cash = dividends.reindex(index=close.index, columns=close.columns).to_numpy(np.float64, na_value=np.nan)
    cash = np.where(np.isfinite(cash), cash, 0.0)
    payers = cash.any(axis=0)
    if not payers.any():
        return close.copy()
    out = values.copy()
    priced = ~np.isnan(values)
    since_previous = cash
    if (cash[~priced] != 0).any():  # carry a dividend of an unpriced row to the next priced one
        paid = np.cumsum(cash, axis=0)
        since_previous = paid - pd.DataFrame(paid).where(priced).ffill().shift(1).fillna(0.0).to_numpy()
    previous = pd.DataFrame(values).ffill().shift(1).to_numpy()
    growth = np.where(priced & ~np.isnan(previous), (values + since_previous) / previous, 1.0)
    first = pd.DataFrame(values).bfill().to_numpy()[0]
    path = first[None, :] * np.cumprod(growth, axis=0)
    out[:, payers] = np.where(priced, path, np.nan)[:, payers]
    return pd.DataFrame(out, index=close.index, columns=close.columns)
