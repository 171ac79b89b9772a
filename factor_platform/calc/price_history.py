"""What changed when a source re-reads prices already stored: a re-basing, a restatement, or both.

Vendors re-base a symbol's whole history after a split (``close``) or a dividend (``adj_close``):
every stored value then differs from the re-read one by one common factor. A restatement changes
single values. :func:`reconcile` tells the two apart on the overlap of stored and re-read sessions;
:func:`rebase` applies a factor to the older stored rows; :func:`unexplained_breaks` finds moves only
a split would explain on sessions without one (prices on two bases).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

COMPARED = ("close", "adj_close")


@dataclass(frozen=True)
class Reconciliation:
    """``close_factor``/``adj_factor``: new = stored × factor for the older rows (1.0 = no re-basing);
    ``restated_dates``: overlap sessions whose values differ otherwise; ``changed_from``: the first of them."""

    close_factor: float = 1.0
    adj_factor: float = 1.0
    restated_dates: list[pd.Timestamp] = field(default_factory=list)

    @property
    def changed_from(self) -> pd.Timestamp | None:
        return self.restated_dates[0] if self.restated_dates else None

    @property
    def rebased(self) -> bool:
        return self.close_factor != 1.0 or self.adj_factor != 1.0


def _same(a, b, tolerance: float) -> np.ndarray:
    return np.isclose(a, b, rtol=tolerance, atol=0.0)


def differs(stored, fetched, tolerance: float) -> np.ndarray:
    """Per value: not the same within ``tolerance`` (a value on one side only differs; NaN on both does not)."""
    old, new = np.asarray(stored, dtype=np.float64), np.asarray(fetched, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return ~((np.isnan(old) & np.isnan(new)) | _same(old, new, tolerance))


def common_factor(ratios: np.ndarray, tolerance: float) -> float:
    """The re-basing factor of a run of re-read/stored ratios (in date order): the ratio of their earliest
    run of two or more equal ones, else the first; 1.0 when that is 1 within ``tolerance``."""
    ratios = ratios[~np.isnan(ratios)]
    if len(ratios) == 0:
        return 1.0
    factor = ratios[0]
    runs = np.flatnonzero(_same(ratios[1:], ratios[:-1], tolerance))
    if len(runs):
        factor = ratios[runs[0]]
    return 1.0 if _same(factor, 1.0, tolerance) else float(factor)


def reconcile(stored: pd.DataFrame, fetched: pd.DataFrame, *, tolerance: float) -> Reconciliation:
    """Compare one symbol's stored and re-read rows of the same sessions (columns date, close, adj_close).

    A value present on one side only is a restatement of its date.
    """
    both = stored[["date", *COMPARED]].merge(fetched[["date", *COMPARED]], on="date", suffixes=("_stored", ""))
    both = both.sort_values("date", kind="stable")
    factors, differs = {}, np.zeros(len(both), dtype=bool)
    for column in COMPARED:
        old, new = both[f"{column}_stored"].to_numpy(np.float64), both[column].to_numpy(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratios = new / old
        factors[column] = common_factor(ratios, tolerance)
        one_sided = np.isnan(old) != np.isnan(new)
        with np.errstate(invalid="ignore"):
            off = ~np.isnan(ratios) & ~_same(ratios, factors[column], tolerance)
        differs |= one_sided | off
    return Reconciliation(factors["close"], factors["adj_close"], list(pd.DatetimeIndex(both["date"])[differs]))


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


def unexplained_breaks(close: pd.DataFrame, splits: pd.DataFrame, *, threshold: float = 0.5) -> pd.DataFrame:
    """Close-to-close moves of at least −``threshold`` down or the matching rise up (−50 % / +100 %) on a
    session without a split of the symbol: (symbol, date, return), sorted."""
    values = close.to_numpy(np.float64)
    previous = pd.DataFrame(values).ffill().shift(1).to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        moves = values / previous - 1.0
        big = (moves <= -threshold) | (moves >= 1.0 / (1.0 - threshold) - 1.0)
    t, s = np.nonzero(big)
    found = pd.DataFrame({"symbol": close.columns.to_numpy()[s], "date": close.index[t], "return": moves[t, s]})
    explained = set(zip(splits["symbol"], pd.to_datetime(splits["date"])))
    keep = [(a, b) not in explained for a, b in zip(found["symbol"], found["date"])]
    return found.loc[keep].sort_values(["symbol", "date"]).reset_index(drop=True)
