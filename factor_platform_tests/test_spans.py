"""Spans of sessions (domain.spans) and the partition window (sessions.partition_window_start),
against brute force: every span operation equals the same operation on sets of sessions."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from factor_platform.domain import sessions, spans

SESSIONS = [d.date() for d in sessions.sessions_in_range(dt.date(2024, 11, 1), dt.date(2025, 2, 28))]


def _days(span_list) -> set[dt.date]:
    return {d for lo, hi in span_list for d in SESSIONS if lo <= d <= hi}


def _random_spans(rng, n: int) -> list[tuple[dt.date, dt.date]]:
    out = []
    for _ in range(n):
        i, j = sorted(rng.integers(0, len(SESSIONS), 2))
        out.append((SESSIONS[i], SESSIONS[j]))
    return out


@pytest.mark.parametrize("seed", range(40))
def test_merge_and_gaps_are_set_operations_on_sessions(seed):
    rng = np.random.default_rng(seed)
    given = _random_spans(rng, int(rng.integers(0, 6)))
    merged = spans.merge(given, "XNYS")
    assert _days(merged) == _days(given)
    for (_, hi), (lo, _) in zip(merged, merged[1:]):  # the fewest spans: a session lies between any two
        assert any(hi < d < lo for d in SESSIONS)
    i, j = sorted(rng.integers(0, len(SESSIONS), 2))
    first, last = SESSIONS[i], SESSIONS[j]
    holes = spans.gaps(first, last, given, "XNYS")
    assert _days(holes) == {d for d in SESSIONS if first <= d <= last} - _days(given)
    assert holes == spans.merge(holes, "XNYS")  # in order, already the fewest
    assert spans.of_days(sorted(_days(given)), "XNYS") == merged


def test_spans_join_across_holidays_and_weekends_only():
    # 2025-01-09 (a national day of mourning) and the weekend are not sessions: one span
    assert spans.merge(
        [(dt.date(2025, 1, 6), dt.date(2025, 1, 8)), (dt.date(2025, 1, 10), dt.date(2025, 1, 14))], "XNYS"
    ) == [(dt.date(2025, 1, 6), dt.date(2025, 1, 14))]
    with pytest.raises(ValueError, match="first after last"):
        spans.merge([(dt.date(2025, 1, 7), dt.date(2025, 1, 6))], "XNYS")


def test_partition_window_moves_once_a_month_and_never_before_the_first_session():
    first = dt.date(2010, 1, 4)
    # December 2026: the window of 1 month starts on its first session, of 3 on October's
    assert sessions.partition_window_start(dt.date(2026, 12, 6), 1, first) == dt.date(2026, 12, 1)
    assert sessions.partition_window_start(dt.date(2026, 12, 31), 1, first) == dt.date(2026, 12, 1)
    assert sessions.partition_window_start(dt.date(2026, 12, 6), 3, first) == dt.date(2026, 10, 1)
    # across a year, and a month whose first weekday is a holiday (2027-01-01)
    assert sessions.partition_window_start(dt.date(2027, 1, 15), 1, first) == dt.date(2027, 1, 4)
    assert sessions.partition_window_start(dt.date(2027, 2, 1), 14, first) == dt.date(2026, 1, 2)
    assert sessions.partition_window_start(dt.date(2026, 12, 6), 0, first) == first  # no window
    assert sessions.partition_window_start(dt.date(2010, 2, 1), 12, first) == first  # not before the first session
