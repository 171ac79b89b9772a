"""A book entered as traded, on the basis of the stored prices, and the cash its dividends pay.

Stored prices are split-adjusted to the latest split (``close_d`` = price as traded on d ÷ the
product of the symbol's split ratios after d). A position entered before a split therefore holds
``quantity × R`` stored-basis shares at ``entry_price ÷ R`` (R = the product of the ratios after
its entry date), so market value = shares held × price as traded on every date. Dividends are
cash per share on the same basis, paid on the ex-date to a position held into it.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd


def _ratio_after(symbols: np.ndarray, dates: pd.Series, splits: pd.DataFrame) -> np.ndarray:
    """Per row: the product of the split ratios of its symbol dated after its date (1 without)."""
    out = np.ones(len(symbols))
    if splits.empty:
        return out
    when = pd.to_datetime(dates).to_numpy()
    for split in splits.itertuples(index=False):
        hit = (symbols == split.symbol) & (when < np.datetime64(pd.Timestamp(split.date)))
        out[hit] *= float(split.value)
    return out


def to_stored_basis(positions: pd.DataFrame, splits: pd.DataFrame) -> pd.DataFrame:
    """``positions`` (contract columns, prices as traded) on the stored basis of its pricing symbol's
    splits (long: symbol, date, value): quantity × R, entry price and strike ÷ R with R the ratios after
    the entry date, exit price ÷ the ratios after the exit date. PRIVATE positions are unchanged;
    without splits the frame is returned as is."""
    if splits.empty or positions.empty:
        return positions
    out = positions.copy()
    market = (out["investment_class"] != "PRIVATE").to_numpy()
    options = (out["investment_class"] == "OPTIONS").to_numpy()
    symbols = np.where(
        options,
        out.get("underlying", pd.Series(None, index=out.index)).to_numpy(object),
        out["symbol"].to_numpy(object),
    )
    at_entry = np.where(market, _ratio_after(symbols, out["entry_date"], splits), 1.0)
    exit_dates = pd.to_datetime(out["exit_date"]) if "exit_date" in out else pd.Series(pd.NaT, index=out.index)
    at_exit = np.where(market, _ratio_after(symbols, exit_dates.fillna(pd.Timestamp.max), splits), 1.0)
    if not (at_entry != 1.0).any():
        return positions
    out["quantity"] = pd.to_numeric(out["quantity"]).astype(np.float64) * at_entry
    out["entry_price"] = pd.to_numeric(out["entry_price"]).astype(np.float64) / at_entry
    for column, ratio in (("strike", at_entry), ("exit_price", at_exit)):
        if column in out:
            out[column] = pd.to_numeric(out[column]).astype(np.float64) / ratio
    return out


DIVIDEND_EVENT = "dividend"


def dividend_events(positions: pd.DataFrame, dividends: pd.DataFrame, signed_quantity: np.ndarray) -> pd.DataFrame:
    """The cash each PUBLIC position receives (long) or pays (short): signed stored-basis quantity × the
    dividend, on every ex-date e with entry_date < e <= exit_date (held into the ex-date).

    ``positions`` normalized (datetime64 dates); ``dividends`` long (symbol, date, value).
    Returns position_id, date, pnl, event ("dividend"), sorted by date then position.
    """
    columns = ["position_id", "date", "pnl", "event"]
    public = (positions["investment_class"] == "PUBLIC").to_numpy()
    if dividends.empty or not public.any():
        return pd.DataFrame(columns=columns).astype({"date": "datetime64[ns]", "pnl": "float64"})
    # The rows of a merge of the public positions with the dividends on the symbol, in its order.
    rows_of: dict[object, list[int]] = {}
    for row, symbol in enumerate(dividends["symbol"].to_numpy(object)):
        rows_of.setdefault(symbol, []).append(row)
    held = np.flatnonzero(public)
    pairs = [
        (k, row)
        for k, symbol in zip(held, positions["symbol"].to_numpy(object)[held])
        for row in rows_of.get(symbol, ())
    ]
    k, row = (
        (np.array(column, dtype=np.intp) for column in zip(*pairs)) if pairs else (np.array([], dtype=np.intp),) * 2
    )
    entry = positions["entry_date"].to_numpy()[k]
    exit_ = positions["exit_date"].fillna(pd.Timestamp.max).to_numpy()[k]
    when = pd.to_datetime(dividends["date"].to_numpy()[row]).to_numpy().astype("datetime64[ns]")
    paid = (entry < when) & (when <= exit_)
    k, row, when = k[paid], row[paid], when[paid]
    position_id = positions["position_id"].to_numpy()[k]
    order = np.lexsort((pd.factorize(position_id, sort=True)[0], when))  # by date, then position (stable)
    return pd.DataFrame(
        {
            "position_id": position_id[order],
            "date": when[order],
            "pnl": (signed_quantity[k] * dividends["value"].to_numpy(np.float64)[row])[order],
            "event": DIVIDEND_EVENT,
        },
        columns=columns,
    )


BASIS_BAND = 1.5  # an entry price beyond [low / 1.5, high × 1.5] of its session is on another basis
# ... when its factor to the close is a split's
SPLIT_FACTORS = np.array([1.5, 2, 3, 4, 5, 10, 20, 50, 100], dtype=np.float64)  # the common ones, and inverses
SPLIT_SLACK = 1.07  # an entry trades within a few % of the close
FOUND_COLUMNS = ["position_id", "symbol", "entry_date", "entry_price", "low", "high", "factor"]


def basis_mismatches(
    positions: pd.DataFrame, sessions_traded: pd.DataFrame, *, band: float = BASIS_BAND
) -> pd.DataFrame:
    """PUBLIC positions whose entry price (on the stored basis, :func:`to_stored_basis`) lies outside
    [low ÷ ``band``, high × ``band``] of its entry session by a split's factor (2, 3, 4 … or their inverses,
    within 7 %) -- a book entered on another basis than the prices (a split the source re-based without an
    action): no session's range is that wide, and a mistyped price is not a split.

    ``sessions_traded``: long (symbol, date, low, high, close); a missing low/high is the close.
    Returns [position_id, symbol, entry_date, entry_price, low, high, factor], factor = entry price ÷
    close (≈ 4 for a book entered before a 4:1 split the prices know nothing of); positions whose entry
    date is no session with a price are not judged.
    """
    if _none_outside(positions, sessions_traded, band):
        return _nothing_found(positions["position_id"].dtype, positions["symbol"].dtype).copy()
    public = positions.loc[
        positions["investment_class"] == "PUBLIC", ["position_id", "symbol", "entry_date", "entry_price"]
    ]
    rows = sessions_traded.assign(
        low=sessions_traded["low"].fillna(sessions_traded["close"]),
        high=sessions_traded["high"].fillna(sessions_traded["close"]),
    )
    both = public.assign(entry_date=pd.to_datetime(public["entry_date"])).merge(
        rows.rename(columns={"date": "entry_date"}), on=["symbol", "entry_date"]
    )
    price = pd.to_numeric(both["entry_price"]).astype(np.float64)
    factor = price / both["close"]
    outside = _outside(
        price.to_numpy(), both["low"].to_numpy(), both["high"].to_numpy(), both["close"].to_numpy(), band
    )
    found = both.loc[outside, ["position_id", "symbol", "entry_date", "low", "high"]].assign(entry_price=price[outside])
    found["factor"] = factor[outside]
    return found[FOUND_COLUMNS].reset_index(drop=True)


@functools.lru_cache(maxsize=8)
def _nothing_found(position_id, symbol) -> pd.DataFrame:
    """The frame of no mismatch: what the merge below leaves empty when its keys have one type on both sides."""
    types = [position_id, symbol, np.dtype("datetime64[ns]")] + [np.dtype(np.float64)] * 4
    return pd.DataFrame({c: pd.array([], dtype=t) for c, t in zip(FOUND_COLUMNS, types)})


def _outside(price: np.ndarray, low: np.ndarray, high: np.ndarray, close: np.ndarray, band: float) -> np.ndarray:
    """Entry prices beyond [low ÷ band, high × band] by a split's factor to the close."""
    factor = price / close
    nearest = np.abs(np.log(np.abs(factor)[:, None]) - np.log(np.r_[SPLIT_FACTORS, 1 / SPLIT_FACTORS])).min(axis=1)
    return ((price < low / band) | (price > high * band)) & (nearest < np.log(SPLIT_SLACK))


def _none_outside(positions: pd.DataFrame, sessions_traded: pd.DataFrame, band: float) -> bool:
    """True when :func:`basis_mismatches` finds nothing and its (empty) frame's types are known beforehand:
    no PUBLIC position's entry lies outside, the keys have one type on both sides and the prices are
    float64. The positions are matched to their entry sessions here without a merge (one a night)."""
    symbol, entry_date, entry_price = positions["symbol"], positions["entry_date"], positions["entry_price"]
    traded_symbol, traded_date = sessions_traded["symbol"], sessions_traded["date"]
    low, high, close = (sessions_traded[c] for c in ("low", "high", "close"))
    if not (
        symbol.dtype == traded_symbol.dtype
        and entry_date.dtype == traded_date.dtype == np.dtype("datetime64[ns]")
        and entry_price.dtype == low.dtype == high.dtype == close.dtype == np.float64
    ):
        return False
    if any(key.hasnans for key in (symbol, entry_date, traded_symbol, traded_date)):
        return False  # a merge matches missing keys to each other: let it judge those
    public = np.flatnonzero((positions["investment_class"] == "PUBLIC").to_numpy())
    sessions = {}
    for j, key in enumerate(zip(traded_symbol.to_numpy(object), traded_date.to_numpy())):
        sessions.setdefault(key, []).append(j)
    keys = zip(symbol.to_numpy(object)[public], entry_date.to_numpy()[public])
    pairs = [(i, j) for i, key in zip(public, keys) for j in sessions.get(key, ())]
    if not pairs:
        return True
    i, j = np.array(pairs).T
    close = close.to_numpy()[j]
    low, high = low.to_numpy()[j], high.to_numpy()[j]
    low, high = np.where(np.isnan(low), close, low), np.where(np.isnan(high), close, high)
    return not _outside(entry_price.to_numpy()[i], low, high, close, band).any()
