"""An ordered list of sources behind the one interface: what the first lacks, asked of the next.

Prices fail over per session. ``fetch_prices`` asks the first source for all symbols over
``[start, end]``; then, for each symbol, the exchange sessions of ``[start, end]`` (of the sources'
calendar) that no earlier source returned are asked of the next source -- one request per source,
for the symbols still lacking sessions, over the span from the first to the last session any of them
lacks -- and only its rows for sessions still missing are taken. So a primary that stops carrying a
symbol for its last sessions (a partial outage), skips a session, or has no rows before a later
first listing is completed by the next source, and no session comes from two sources. A session no
source returned stays absent: nothing is invented, and the prices layer reports the short data.

Every row keeps the ``source`` value of the source that supplied it (``yfinance``, ``sample``, or
``csv:<file name>`` such as ``csv:vendor.csv``, so two CSV exports differ), so a reader of
``prices`` sees who supplied each row. A symbol no source returned any row for is a failure when a
source failed it, with a reason joining each source's own
(``"yfinance: ...; csv:backup.csv: no rows in backup.csv for X ..."``); when every source merely
returned nothing (a range without sessions) nothing was missing.

Profiles, fundamentals and corporate actions fail over per whole symbol: each next source is asked
only for the symbols all earlier ones failed or returned nothing for (for actions, "nothing" is an
answer: no actions).

Corporate actions must be on the basis of the prices they go with: ``fetch_actions`` asks first the
source that supplied the symbol's latest price row in this object's latest ``fetch_prices``, then
the others in order. The latest row rather than the most rows: an adjusted history is on the basis
of its latest session, and a split during the primary's outage is known to the source that supplied
the sessions after it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd

from factor_platform.domain import sessions
from factor_platform.sources.base import (
    ACTION_COLUMNS,
    FUNDAMENTAL_COLUMNS,
    PRICE_COLUMNS,
    PROFILE_COLUMNS,
    FetchResult,
    PriceSource,
    date_range,
    empty_frame,
    requested_symbols,
)

__all__ = ["FailoverSource"]


class FailoverSource:
    """Sources asked in order until one answers: prices per session, the rest per symbol; see the module docstring."""

    def __init__(self, sources: Sequence[PriceSource]) -> None:
        if not sources:
            raise ValueError("FailoverSource needs at least one source")
        self.sources = tuple(sources)
        self.name = "+".join(source.name for source in self.sources)
        self.calendar = _common_calendar(self.sources)
        self._price_supplier: dict[str, int] = {}  # symbol -> index of the source of its latest price row

    def __repr__(self) -> str:
        return f"FailoverSource({list(self.sources)!r})"

    def fetch_prices(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> FetchResult:
        wanted = requested_symbols(symbols)
        start, end = date_range(start, end)
        names, due = pd.Index(wanted), sessions.sessions_in_range(start, end, self.calendar)
        # symbol x session: the index of the source that supplied it, -1 while none has
        supplier = np.full((len(wanted), len(due)), -1, dtype=np.int16)
        parts: list[pd.DataFrame] = []
        reasons: dict[str, list[str]] = {}
        refused: set[str] = set()  # failed by some source (not merely empty everywhere: e.g. a weekend)
        asking, first, last = wanted, start, end
        for i, source in enumerate(self.sources):
            if i:
                lacking = (supplier < 0).any(axis=1)
                if not lacking.any():
                    break
                asking = names[lacking].tolist()
                span = np.flatnonzero((supplier[lacking] < 0).any(axis=0))
                first, last = due[span[0]].date(), due[span[-1]].date()
            if not asking:
                break
            result = _call(source, "fetch_prices", PRICE_COLUMNS, asking, first, last)
            parts.append(_take_missing(result.frame, supplier, names, due, i))
            priced = (supplier >= 0).any(axis=1)
            refused.update(s for s in asking if s in result.failures)
            for s in asking:
                if not priced[names.get_loc(s)]:
                    reasons.setdefault(s, []).append(f"{source.name}: {result.failures.get(s, 'returned nothing')}")
        priced = (supplier >= 0).any(axis=1)
        failures = {s: "; ".join(reasons[s]) for s, has in zip(wanted, priced) if not has and s in refused}
        for symbol in failures:
            self._price_supplier.pop(symbol, None)
        self._price_supplier.update(_latest_supplier(supplier, names))
        return FetchResult(_combined([FetchResult(rows) for rows in parts], PRICE_COLUMNS).frame, failures)

    def symbols(self) -> list[str]:
        """The universe the sources name (CSV exports): their union when every source names one, else none
        (an open-ended source such as yfinance has no universe, and a backup's must not become one)."""
        listed = [getattr(source, "symbols", None) for source in self.sources]
        if not all(callable(f) for f in listed):
            return []
        return sorted({s for f in listed for s in f()})

    def fetch_profiles(self, symbols: Sequence[str]) -> FetchResult:
        return self._ask("fetch_profiles", PROFILE_COLUMNS, requested_symbols(symbols))

    def fetch_fundamentals(self, symbols: Sequence[str]) -> FetchResult:
        return self._ask("fetch_fundamentals", FUNDAMENTAL_COLUMNS, requested_symbols(symbols))

    def fetch_actions(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> FetchResult:
        by_first: dict[int, list[str]] = {}
        for symbol in requested_symbols(symbols):
            by_first.setdefault(self._price_supplier.get(symbol, 0), []).append(symbol)
        parts = [
            self._ask("fetch_actions", ACTION_COLUMNS, group, start, end, first=first, rows_required=False)
            for first, group in sorted(by_first.items())
        ]
        return _combined(parts, ACTION_COLUMNS)

    def _ask(
        self, method: str, columns: Sequence[str], wanted: list[str], *args, first: int = 0, rows_required: bool = True
    ) -> FetchResult:
        """``method`` of each source in turn (source ``first`` before the others) for the symbols
        still unanswered; each symbol's rows come from the one source that answered it.

        rows_required: a symbol without rows is unanswered (false for actions: none is an answer).
        """
        order = [first, *(i for i in range(len(self.sources)) if i != first)]
        pending, parts, answered_by = list(wanted), [], set()
        reasons: dict[str, list[str]] = {}
        refused: set[str] = set()
        for i in order:
            if not pending:
                break
            source = self.sources[i]
            result = _call(source, method, columns, pending, *args)
            has_rows = set(result.frame["symbol"])
            answered = [s for s in pending if s not in result.failures and (s in has_rows or not rows_required)]
            parts.append(FetchResult(result.frame.loc[result.frame["symbol"].isin(answered)]))
            answered_by.update(answered)
            refused.update(s for s in pending if s in result.failures)
            for s in pending:
                if s not in answered_by:
                    reasons.setdefault(s, []).append(f"{source.name}: {result.failures.get(s, 'returned nothing')}")
            pending = [s for s in pending if s not in answered_by]
        failures = {s: "; ".join(reasons[s]) for s in pending if s in refused}
        return FetchResult(_combined(parts, columns).frame, failures)


def _common_calendar(sources: Sequence[PriceSource]) -> str:
    """The exchange calendar of the sources (each source's ``calendar``; XNYS, their default, when none says)."""
    calendars = {calendar for source in sources if (calendar := getattr(source, "calendar", None))}
    if len(calendars) > 1:
        raise ValueError(f"the sources of a FailoverSource must share one calendar, got {sorted(calendars)}")
    return calendars.pop() if calendars else "XNYS"


def _call(source: PriceSource, method: str, columns: Sequence[str], symbols: list[str], *args) -> FetchResult:
    """``source.method(symbols, *args)``; a source that raises fails the symbols it was asked for,
    so that the other sources' rows are kept."""
    try:
        return getattr(source, method)(symbols, *args)
    except Exception as exc:  # noqa: BLE001 -- one source's error must not lose the others' data
        return FetchResult(empty_frame(columns), dict.fromkeys(symbols, f"{type(exc).__name__}: {exc}"))


def _take_missing(
    frame: pd.DataFrame, supplier: np.ndarray, names: pd.Index, due: pd.DatetimeIndex, index: int
) -> pd.DataFrame:
    """The rows of ``frame`` (source ``index``'s) on a session no earlier source supplied for their symbol,
    marked in ``supplier`` (symbols ``names`` x sessions ``due``) as supplied by ``index``."""
    row, col = names.get_indexer(frame["symbol"]), due.get_indexer(frame["date"])
    keep = (row >= 0) & (col >= 0)
    keep[keep] = supplier[row[keep], col[keep]] < 0
    supplier[row[keep], col[keep]] = index
    return frame.loc[keep]


def _latest_supplier(supplier: np.ndarray, names: pd.Index) -> dict[str, int]:
    """{symbol: index of the source that supplied its latest session} for the symbols with a row."""
    has = supplier >= 0
    if not has.any():
        return {}
    latest = has.shape[1] - 1 - np.argmax(has[:, ::-1], axis=1)
    priced = np.flatnonzero(has.any(axis=1))
    return dict(zip(names[priced].tolist(), supplier[priced, latest[priced]].tolist()))


def _combined(parts: list[FetchResult], columns: Sequence[str]) -> FetchResult:
    """One result of disjoint parts, sorted by key as every source's frame is (so one part needs no sort)."""
    frames = [part.frame for part in parts if len(part.frame)]
    failures = {s: why for part in parts for s, why in part.failures.items()}
    if not frames:
        return FetchResult(empty_frame(columns), failures)
    if len(frames) == 1:
        return FetchResult(frames[0].reset_index(drop=True), failures)
    frame = pd.concat(frames, ignore_index=True)
    key = [c for c in ("symbol", "date", "period_end", "metric", "kind") if c in frame]
    return FetchResult(frame.sort_values(key, kind="stable").reset_index(drop=True), failures)
