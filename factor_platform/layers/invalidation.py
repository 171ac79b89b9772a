"""Stale partitions: figures already computed from data the source has since changed.

A re-based or restated price, or a corporate action learned after the fact, makes exactly the
partitions that read it stale. They are recorded in `stale_partitions` (one row per asset and
key: sessions first_date..last_date) in the transaction that changes the data; the planner, the
sensor and the schedule recompute them, and the run that does so clears them in the transaction
that writes the new figures. Rows stay readable meanwhile (`factor-platform status` lists them).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from factor_platform.domain import sessions
from factor_platform.layers.names import PORTFOLIO_STALE_ASSET
from factor_platform.storage import Database

# asset -> (the table whose rows say what was computed, its key column)
STALE_ASSETS: dict[str, tuple[str, str]] = {
    "symbol_factor_exposures": ("symbol_factor_exposures", "symbol"),
    "symbol_metrics": ("symbol_metrics", "symbol"),
    PORTFOLIO_STALE_ASSET: ("portfolio_snapshots", "portfolio_id"),
}
SYMBOL_STALE_ASSETS = ("symbol_factor_exposures", "symbol_metrics")


@dataclass(frozen=True)
class Stale:
    """Partitions of `asset` for `key` from `first_date` on are stale, because of `reason`."""

    asset: str
    key: str
    first_date: dt.date
    reason: str


def _merge(marks: Iterable[Stale]) -> dict[tuple[str, str], Stale]:
    merged: dict[tuple[str, str], Stale] = {}
    for mark in marks:
        if mark.asset not in STALE_ASSETS:
            raise ValueError(f"unknown asset {mark.asset!r} for a stale partition; one of {list(STALE_ASSETS)}")
        known = merged.get((mark.asset, mark.key))
        if known is None or mark.first_date < known.first_date:
            merged[(mark.asset, mark.key)] = mark
    return merged


def mark_stale(db: Database, conn, marks: Iterable[Stale]) -> dict[str, int]:
    """Record `marks` where figures exist on or after their first date; return {asset: keys marked}.

    Merged with what is already stale for the same (asset, key): the union of the two spans.
    """
    merged = _merge(marks)
    counts: dict[str, int] = {}
    rows = []
    for asset, (table, column) in STALE_ASSETS.items():
        wanted = {key: m for (a, key), m in merged.items() if a == asset}
        if not wanted:
            continue
        newest = db.max_date_by(table, column, sorted(wanted), conn=conn)
        oldest = db.max_date_by(table, column, sorted(newest), oldest=True, conn=conn) if newest else {}
        existing = db.read("stale_partitions", {"asset": asset, "key": sorted(wanted)}, conn=conn)
        known = {r.key: r for r in existing.itertuples()}
        for key, mark in wanted.items():
            last = newest.get(key)
            if last is None or last < mark.first_date:
                continue  # nothing computed from the changed data yet
            first, reason = max(mark.first_date, oldest[key]), mark.reason
            if key in known:
                old = known[key]
                first = min(first, old.first_date.date())
                last = max(last, old.last_date.date())
                reason = f"{old.reason}; {reason}" if reason not in old.reason else old.reason
            rows.append((asset, key, first, last, reason[:2000]))
            counts[asset] = counts.get(asset, 0) + 1
    if rows:
        frame = pd.DataFrame(rows, columns=["asset", "key", "first_date", "last_date", "reason"])
        for asset, group in frame.groupby("asset"):
            db.delete("stale_partitions", {"asset": asset, "key": sorted(group["key"])}, conn=conn)
        db.upsert(
            "stale_partitions",
            frame.assign(
                first_date=pd.to_datetime(frame["first_date"]),
                last_date=pd.to_datetime(frame["last_date"]),
                recorded_at=pd.Timestamp.now(tz="UTC").tz_localize(None),
            ),
            conn=conn,
        )
    return counts


def clear_stale(
    db: Database, conn, asset: str, keys: list[str], first: dt.date, last: dt.date, *, calendar: str
) -> int:
    """A run recomputed `asset` for `keys` on first..last: what it covered is no longer stale.

    A marker that starts inside the run's span loses its part up to `last` (gone when nothing is
    left); one that starts before `first` stays as it is (the planner starts runs at a marker's first date).
    """
    rows = db.read("stale_partitions", {"asset": asset, "key": keys, "first_date": (first, last)}, conn=conn)
    if rows.empty:
        return 0
    db.delete("stale_partitions", {"asset": asset, "key": sorted(rows["key"]), "first_date": (first, last)}, conn=conn)
    after = sessions.session_on_or_after(last + dt.timedelta(days=1), calendar)
    rest = rows[rows["last_date"] >= pd.Timestamp(after)]
    if len(rest):
        db.upsert("stale_partitions", rest.assign(first_date=pd.Timestamp(after)), conn=conn)
    return len(rows)


def stale_days(
    db: Database, asset: str, keys: list[str] | None, *, end: dt.date, calendar: str
) -> dict[str, set[dt.date]]:
    """{key: stale sessions of `asset` up to `end`} (all keys when `keys` is None)."""
    where = {"asset": asset} if keys is None else {"asset": asset, "key": keys}
    return marker_days(db.read("stale_partitions", where), end=end, calendar=calendar)


def marker_days(rows: pd.DataFrame, *, end: dt.date, calendar: str) -> dict[str, set[dt.date]]:
    """{key: sessions first_date..min(last_date, end)} of `stale_partitions` rows."""
    out: dict[str, set[dt.date]] = {}
    for r in rows.itertuples():
        last = min(r.last_date.date(), end)
        days = sessions.sessions_in_range(r.first_date.date(), last, calendar) if r.first_date.date() <= last else []
        if len(days):
            out.setdefault(r.key, set()).update(d.date() for d in days)
    return out


def stale_summary(db: Database) -> dict[str, dict]:
    """{asset: {"keys": n, "first_date": earliest}} for `status`."""
    rows = db.read("stale_partitions", columns=["asset", "key", "first_date"])
    return {
        asset: {"keys": int(group["key"].nunique()), "first_date": group["first_date"].min().date().isoformat()}
        for asset, group in rows.groupby("asset")
    }
