"""What changed when a source re-reads prices already stored, and whether a known action explains it.

Vendors re-base a symbol's whole history after a split (``close``) or a dividend (``adj_close``):
every stored value then differs from the re-read one by one common factor, up to the vendor's
rounding (most exports round to cents, so ``stored × factor`` is not the re-read value to the
last digit). A restatement changes single values; a late row fills a session. The platform does
not re-base what it stores: it re-reads the symbol's whole history and stores the source's values.
These functions say what that did:

- :func:`compare_history` -- the re-basing factors, the first session whose return changed (what
  reads returns is stale from there) and the first whose close changed (what reads price levels);
- :func:`split_ratio` -- the split a close re-basing is, within the vendor's rounding, when no
  known action explains it (2, 4, 3/2, 1/10 ...), or None;
- :func:`unexplained_breaks` -- daily moves beyond a threshold on sessions without an action.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pandas as pd

COMPARED = ("close", "adj_close")
# Relative difference of a return below which two histories give the same figures: far below what
# the tests compare (1e-10), far above floating-point noise (1e-16).
RETURN_RTOL = 1e-12
# Split ratios a vendor may re-base by: n:m with small n, m (and the usual large reverse splits).
_RATIOS = sorted(
    {
        Fraction(n, m)
        for n in (*range(1, 11), 12, 15, 20, 25, 30, 40, 50, 100)
        for m in (*range(1, 11), 12, 15, 20, 25, 30, 40, 50, 100)
    }
    - {Fraction(1)}
)
_CONSISTENT_SHARE = 0.9  # of compared sessions that must fit a factor (the rest: restatements)


def differs(stored, fetched, tolerance: float) -> np.ndarray:
    """Per value: not the same within ``tolerance`` (a value on one side only differs; NaN on both does not)."""
    old, new = np.asarray(stored, dtype=np.float64), np.asarray(fetched, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return ~((np.isnan(old) & np.isnan(new)) | np.isclose(old, new, rtol=tolerance, atol=0.0))


def price_tick(values) -> float:
    """The vendor's price increment: 0.01 when every value is a whole number of cents, 0.001 or
    0.0001 likewise, 0.0 when the values carry full precision."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return 0.0
    for decimals in (2, 3, 4):
        scaled = v * 10.0**decimals
        if np.all(np.abs(scaled - np.round(scaled)) < 1e-6 * np.maximum(1.0, np.abs(scaled)) + 1e-9):
            return 10.0**-decimals
    return 0.0


def fits(old, new, factor: float, *, tolerance: float) -> np.ndarray:
    """Per session (both values present): ``new`` is ``old × factor`` within the two series' rounding
    (half a tick each, the old one scaled) and ``tolerance`` relative."""
    old, new = np.asarray(old, dtype=np.float64), np.asarray(new, dtype=np.float64)
    slack = 0.5 * price_tick(new) + 0.5 * price_tick(old) * abs(factor) + tolerance * np.abs(new)
    with np.errstate(invalid="ignore"):
        return np.abs(new - old * factor) <= slack * (1 + 1e-9)


def rebasing_factor(old, new, *, tolerance: float) -> float:
    """The common factor new ≈ old × f of most sessions (their median ratio); 1.0 when most fit 1."""
    old, new = np.asarray(old, dtype=np.float64), np.asarray(new, dtype=np.float64)
    both = ~np.isnan(old) & ~np.isnan(new)
    old, new = old[both], new[both]
    if not len(old) or fits(old, new, 1.0, tolerance=tolerance).mean() >= 0.5:
        return 1.0
    return float(np.median(new / old))


@dataclass(frozen=True)
class HistoryChange:
    """A symbol's stored history against the source's: ``close_factor``/``adj_factor`` (new ≈ stored ×
    factor on most sessions; 1.0 = none); ``returns_from`` the first session whose return (of close or
    adj_close) differs or that one side lacks; ``levels_from`` the first whose close differs."""

    close_factor: float = 1.0
    adj_factor: float = 1.0
    returns_from: pd.Timestamp | None = None
    levels_from: pd.Timestamp | None = None

    @property
    def rebased(self) -> bool:
        return self.close_factor != 1.0 or self.adj_factor != 1.0


def _ratios(values: np.ndarray) -> np.ndarray:
    """Each value over the previous present one (NaN where absent or first)."""
    previous = pd.Series(values).ffill().shift(1).to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        return values / previous


def compare_history(stored: pd.DataFrame, fetched: pd.DataFrame, *, tolerance: float) -> HistoryChange:
    """Compare one symbol's stored rows with the source's re-read (columns date, close, adj_close).

    The factors come from the sessions both have. The changes are those of the store once the re-read
    is written over it (rows the source no longer returns are kept: an outage must not erase
    history), on the sessions up to the last stored one -- later sessions are new, nothing was
    computed from them. A session the re-read adds (a late row) changes the returns from there.
    """
    if stored.empty or fetched.empty:
        return HistoryChange()
    fetched = fetched.loc[fetched["date"] <= stored["date"].max()]
    both = stored[["date", *COMPARED]].merge(
        fetched[["date", *COMPARED]], on="date", how="left", suffixes=("_stored", "")
    )
    both = pd.concat(
        [both, fetched.loc[~fetched["date"].isin(stored["date"]), ["date", *COMPARED]]], ignore_index=True
    ).sort_values("date", kind="stable")
    dates = pd.DatetimeIndex(both["date"])
    factors, returns_changed, levels_changed = {}, np.zeros(len(both), bool), np.zeros(len(both), bool)
    for column in COMPARED:
        old = both[f"{column}_stored"].to_numpy(np.float64)
        reread = both[column].to_numpy(np.float64)
        factors[column] = rebasing_factor(old, reread, tolerance=tolerance)
        absent = both["date"].isin(stored["date"]).to_numpy() & ~both["date"].isin(fetched["date"]).to_numpy()
        new = np.where(absent, old, reread)  # the store after the write
        one_sided = np.isnan(old) != np.isnan(new)
        r_old, r_new = _ratios(old), _ratios(new)
        with np.errstate(invalid="ignore"):
            moved = ~np.isnan(r_old) & ~np.isnan(r_new) & ~np.isclose(r_old, r_new, rtol=RETURN_RTOL, atol=0.0)
        returns_changed |= one_sided | moved
        if column == "close":
            levels_changed = one_sided | differs(old, new, RETURN_RTOL)

    def first(mask):
        return dates[mask][0] if mask.any() else None

    return HistoryChange(factors["close"], factors["adj_close"], first(returns_changed), first(levels_changed))


def split_ratio(old_close, new_close, *, explained: float = 1.0, tolerance: float) -> float | None:
    """The split (new shares per old share) that re-based ``old_close`` into ``new_close`` beyond the
    ``explained`` ratio of known splits: 1.0 when the known splits explain it, a clean ratio (4, 3/2,
    1/10 ...) when one fits most sessions within the vendor's rounding, else None."""
    old, new = np.asarray(old_close, dtype=np.float64), np.asarray(new_close, dtype=np.float64)
    both = ~np.isnan(old) & ~np.isnan(new)
    old, new = old[both], new[both]
    if not len(old):
        return 1.0

    def fit(ratio: float) -> bool:
        return bool(fits(old, new, 1.0 / (explained * ratio), tolerance=tolerance).mean() >= _CONSISTENT_SHARE)

    if fit(1.0):
        return 1.0
    wanted = float(np.median(old / new)) / explained
    nearest = sorted(_RATIOS, key=lambda r: abs(np.log(float(r) / wanted)))[:3]
    for ratio in nearest:
        if fit(float(ratio)):
            return float(ratio)
    return None


def rebase(rows: pd.DataFrame, *, close_factor: float, adj_factor: float) -> pd.DataFrame:
    """Stored price rows on the new basis: open/high/low/close × close_factor, adj_close × adj_factor,
    volume ÷ close_factor (a 4:1 split quadruples the share count)."""
    out = rows.copy()
    for column in ("open", "high", "low", "close"):
        out[column] = out[column] * close_factor
    out["adj_close"] = out["adj_close"] * adj_factor
    if "volume" in out and close_factor != 1.0:
        volume = pd.to_numeric(out["volume"], errors="coerce").astype("float64") / close_factor
        out["volume"] = volume.round().astype("Int64")
    return out


def unexplained_breaks(close: pd.DataFrame, actions: pd.DataFrame, *, threshold: float) -> pd.DataFrame:
    """Close-to-close moves with |return| > ``threshold`` on a session without a corporate action of the
    symbol: (symbol, date, return), sorted. ``close``: wide (sessions × symbols); ``actions``: long
    (symbol, date) of every kind; a session without a close carries the previous one forward."""
    values = close.to_numpy(np.float64)
    previous = pd.DataFrame(values).ffill().shift(1).to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        moves = values / previous - 1.0
        big = np.abs(moves) > threshold
    t, s = np.nonzero(big)
    found = pd.DataFrame({"symbol": close.columns.to_numpy()[s], "date": close.index[t], "return": moves[t, s]})
    explained = set(zip(actions["symbol"], pd.to_datetime(actions["date"])))
    keep = [(a, b) not in explained for a, b in zip(found["symbol"], found["date"])]
    return found.loc[keep].sort_values(["symbol", "date"]).reset_index(drop=True)
