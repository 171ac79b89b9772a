"""Trading sessions of an exchange calendar (exchange-calendars), as plain dates.

A date partition exists only for a session; every window in the platform counts sessions
(or returns), never calendar days.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import pandas as pd

if TYPE_CHECKING:
    from factor_platform.settings import Settings

# exchange-calendars builds calendars over a bounded range; generous on both sides.
_CALENDAR_START = "1995-01-03"
# The date partitions exclude the holidays up to this fixed day, not up to "two years from today":
# a horizon that moved with the clock changed the partitions definition's id (and so rebuilt Dagster's
# status cache of every asset cold) whenever a new holiday entered it (docs/scale.md).
HOLIDAYS_THROUGH = dt.date(2036, 12, 31)


@lru_cache(maxsize=8)
def calendar(name: str = "XNYS") -> xcals.ExchangeCalendar:
    today = pd.Timestamp.today().normalize()
    end = max(today + pd.Timedelta(days=366 * 2), pd.Timestamp(HOLIDAYS_THROUGH))
    return xcals.get_calendar(name, start=_CALENDAR_START, end=end)


def to_date(value: dt.date | str | pd.Timestamp) -> dt.date:
    if isinstance(value, str):
        return dt.date.fromisoformat(value)
    if isinstance(value, pd.Timestamp):
        return value.date()
    if isinstance(value, dt.datetime):
        return value.date()
    return value


@lru_cache(maxsize=64)
def _sessions_index(name: str) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(calendar(name).sessions).tz_localize(None)


def sessions_in_range(start, end, name: str = "XNYS") -> pd.DatetimeIndex:
    """Sessions with start <= session <= end (tz-naive midnight timestamps)."""
    index = _sessions_index(name)
    lo = index.searchsorted(pd.Timestamp(to_date(start)), side="left")
    hi = index.searchsorted(pd.Timestamp(to_date(end)), side="right")
    return index[lo:hi]


def is_session(day, name: str = "XNYS") -> bool:
    index = _sessions_index(name)
    ts = pd.Timestamp(to_date(day))
    pos = index.searchsorted(ts)
    return pos < len(index) and index[pos] == ts


def session_on_or_after(day, name: str = "XNYS") -> dt.date:
    index = _sessions_index(name)
    pos = index.searchsorted(pd.Timestamp(to_date(day)), side="left")
    return index[pos].date()


def first_session(settings: Settings) -> dt.date:
    """The platform's first session: FACTOR_PLATFORM_START_DATE (`settings.start_date`) or the session after it."""
    return session_on_or_after(settings.start_date, settings.calendar)


def sessions_before(day, count: int, name: str = "XNYS") -> dt.date:
    """The session `count` sessions before `day` (day itself need not be a session)."""
    index = _sessions_index(name)
    pos = index.searchsorted(pd.Timestamp(to_date(day)), side="left") - count
    return index[max(pos, 0)].date()


def partition_window_start(today: dt.date, months: int, first: dt.date, name: str = "XNYS") -> dt.date:
    """The first session that is a Dagster partition: the first session of the month `months - 1`
    months before `today`'s month (so the window holds the current month and the `months - 1` before
    it), never before `first`; `months` 0 is no window (`first`). It moves once a month, so the
    partitions definition changes once a month, not every day."""
    if months <= 0:
        return first
    month = today.year * 12 + today.month - 1 - (months - 1)
    return max(session_on_or_after(dt.date(month // 12, month % 12 + 1, 1), name), first)


def exchange_today(tz: str = "America/New_York") -> dt.date:
    """Today's date where the exchange is: the day the partition window is measured from."""
    return dt.datetime.now(ZoneInfo(tz)).date()


def partitions_from(start_date: dt.date, months: int, name: str = "XNYS", today: dt.date | None = None) -> dt.date:
    """The first session that is a Dagster partition, for the start date and the window's months
    (FACTOR_PLATFORM_START_DATE and FACTOR_PLATFORM_PARTITION_MONTHS): one answer for the
    definitions, the planner and the archive."""
    first = session_on_or_after(start_date, name)
    return partition_window_start(today or exchange_today(), months, first, name)


def holidays_between(start, end, name: str = "XNYS") -> list[dt.date]:
    """Weekdays in [start, end] that are not sessions: the exclusions of the date partitions."""
    weekdays = pd.bdate_range(pd.Timestamp(to_date(start)), pd.Timestamp(to_date(end)))
    return [d.date() for d in weekdays.difference(sessions_in_range(start, end, name))]


def latest_closed_session(now: pd.Timestamp | None = None, name: str = "XNYS") -> dt.date:
    """The newest session whose close has passed at `now` (default: the current time)."""
    cal = calendar(name)
    now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    if now.tzinfo is None:
        now = now.tz_localize("UTC")
    closes = cal.closes
    pos = closes.searchsorted(now, side="right") - 1
    return closes.index[pos].date()


def sessions_behind(latest_date, latest_session, calendar: str) -> int | None:
    """How many sessions `latest_date` lags `latest_session` (0 = current); None when there is no date."""
    if latest_date is None:
        return None
    days = sessions_in_range(latest_date, latest_session, calendar)
    return max(len(days) - 1, 0)
