"""Spans of sessions: what history is computed, as contiguous (first, last) session ranges per key.

Ten years of a symbol are one span, not 2,520 partitions: the planner's question "which sessions of
this key are not computed yet" is interval arithmetic on a few spans (planning, docs/scale.md).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from factor_platform.domain import sessions

Span = tuple[dt.date, dt.date]


def _next_session(day: dt.date, calendar: str) -> dt.date:
    return sessions.session_on_or_after(day + dt.timedelta(days=1), calendar)


def merge(spans: Iterable[Span], calendar: str) -> list[Span]:
    """The union of `spans` as the fewest spans, in order: overlapping spans and spans one session
    apart (no session between them) become one."""
    merged: list[Span] = []
    for first, last in sorted(spans):
        if first > last:
            raise ValueError(f"span {first}..{last}: first after last")
        if merged and first <= _next_session(merged[-1][1], calendar):
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def gaps(first: dt.date, last: dt.date, spans: Iterable[Span], calendar: str) -> list[Span]:
    """The parts of sessions `first`..`last` that no span covers, as spans of sessions (in order)."""
    out: list[Span] = []
    cursor = sessions.session_on_or_after(first, calendar)
    for lo, hi in merge(spans, calendar):
        if cursor > last:
            break
        if hi < cursor:
            continue
        if lo > cursor:
            before = min(last, sessions.sessions_before(lo, 1, calendar))
            if before >= cursor:
                out.append((cursor, before))
        cursor = _next_session(hi, calendar)
    if cursor <= last:
        end = sessions.sessions_in_range(cursor, last, calendar)
        if len(end):
            out.append((cursor, end[-1].date()))
    return out


def of_days(days: Iterable[dt.date], calendar: str) -> list[Span]:
    """Sessions as the fewest spans (consecutive sessions share one)."""
    return merge(((d, d) for d in days), calendar)
