"""History outside Dagster's partition window, in `history_spans`: which sessions of an asset are
computed for a key (docs/scale.md).

A history run writes its figures like any run, then its spans here; the archive moves Dagster's
per-partition records of sessions that left the window into spans. The planner reads a few spans per
key instead of a partition per session, so what it reads does not grow with history.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import pandas as pd

from factor_platform.domain import sessions
from factor_platform.domain import spans as span_math
from factor_platform.domain.spans import Span
from factor_platform.storage import Database


def read_spans(db: Database, asset: str, keys: Iterable[str] | None = None, *, conn=None) -> dict[str, list[Span]]:
    """{key: spans of `asset` computed as history} (all keys when `keys` is None)."""
    where = {"asset": asset} if keys is None else {"asset": asset, "key": sorted(set(keys))}
    if where.get("key") == []:
        return {}
    rows = db.read("history_spans", where, columns=["key", "first_date", "last_date"], conn=conn)
    out: dict[str, list[Span]] = {}
    for key, first, last in rows.itertuples(index=False, name=None):
        out.setdefault(key, []).append((first.date(), last.date()))
    return out


def record_spans(db: Database, asset: str, new: dict[str, list[Span]], *, calendar: str, conn=None) -> int:
    """Add `new` spans ({key: spans}) of `asset`, merged with the stored ones; returns the keys written.
    In the transaction `conn` when given (else its own): a key's spans are replaced whole."""
    new = {k: v for k, v in new.items() if v}
    if not new:
        return 0
    if conn is None:
        with db.begin() as own:
            return record_spans(db, asset, new, calendar=calendar, conn=own)
    known = read_spans(db, asset, new, conn=conn)
    rows = [
        (asset, key, pd.Timestamp(first), pd.Timestamp(last))
        for key, spans in new.items()
        for first, last in span_math.merge(known.get(key, []) + list(spans), calendar)
    ]
    db.delete("history_spans", {"asset": asset, "key": sorted(new)}, conn=conn)
    frame = pd.DataFrame(rows, columns=["asset", "key", "first_date", "last_date"])
    db.upsert("history_spans", frame.assign(recorded_at=pd.Timestamp.now(tz="UTC").tz_localize(None)), conn=conn)
    return len(new)


def forget_spans(db: Database, assets: Iterable[str], key: str, *, conn) -> int:
    """A key's history must be computed again (a changed book): its spans of `assets` are deleted."""
    return sum(db.delete("history_spans", {"asset": asset, "key": [key]}, conn=conn) for asset in assets)


def uncovered_days(
    spans_by_key: dict[str, list[Span]], wanted: dict[str, tuple[dt.date, dt.date]], calendar: str
) -> dict[str, set[dt.date]]:
    """{key: sessions of its wanted (first, last) that no span covers}; keys with none are left out."""
    out: dict[str, set[dt.date]] = {}
    for key, (first, last) in wanted.items():
        days: set[dt.date] = set()
        for lo, hi in span_math.gaps(first, last, spans_by_key.get(key, []), calendar):
            days.update(d.date() for d in sessions.sessions_in_range(lo, hi, calendar))
        if days:
            out[key] = days
    return out
