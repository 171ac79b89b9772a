"""An ordered list of sources behind the one interface: each symbol from the first that answers.

Every fetch asks the first source for all symbols, then each next source only for the symbols all
earlier ones failed or returned nothing for (for actions, "nothing" is an answer: no actions).
A symbol's rows come from exactly one source and keep its ``source`` value (``csv``), so a reader
of ``prices`` sees who supplied each row. A symbol no source answered is a failure when a source
failed it, with a reason joining each source's own (``"yfinance: ...; csv: returned nothing"``);
when every source merely returned nothing (a range without sessions) nothing was missing.

Corporate actions must be on the basis of the prices they go with: ``fetch_actions`` asks first the
source that supplied the symbol's prices in this object's latest ``fetch_prices``, then the others
in order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pandas as pd

from factor_platform.sources.base import (
    ACTION_COLUMNS,
    FUNDAMENTAL_COLUMNS,
    PRICE_COLUMNS,
    PROFILE_COLUMNS,
    FetchResult,
    PriceSource,
    empty_frame,
    requested_symbols,
)

__all__ = ["FailoverSource"]


class FailoverSource:
    """Sources asked in order, per symbol, until one answers; see the module docstring."""

    def __init__(self, sources: Sequence[PriceSource]) -> None:
        if not sources:
            raise ValueError("FailoverSource needs at least one source")
        self.sources = tuple(sources)
        self.name = "+".join(source.name for source in self.sources)
        self._price_supplier: dict[str, int] = {}  # symbol -> index of the source of its latest prices

    def __repr__(self) -> str:
        return f"FailoverSource({list(self.sources)!r})"

    def fetch_prices(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> FetchResult:
        result, supplier = self._ask("fetch_prices", PRICE_COLUMNS, requested_symbols(symbols), start, end)
        for symbol in result.failures:
            self._price_supplier.pop(symbol, None)
        self._price_supplier.update(supplier)
        return result

    def fetch_profiles(self, symbols: Sequence[str]) -> FetchResult:
        return self._ask("fetch_profiles", PROFILE_COLUMNS, requested_symbols(symbols))[0]

    def fetch_fundamentals(self, symbols: Sequence[str]) -> FetchResult:
        return self._ask("fetch_fundamentals", FUNDAMENTAL_COLUMNS, requested_symbols(symbols))[0]

    def fetch_actions(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> FetchResult:
        by_first: dict[int, list[str]] = {}
        for symbol in requested_symbols(symbols):
            by_first.setdefault(self._price_supplier.get(symbol, 0), []).append(symbol)
        parts = [self._ask("fetch_actions", ACTION_COLUMNS, group, start, end, first=first, rows_required=False)[0]
                 for first, group in sorted(by_first.items())]
        return _combined(parts, ACTION_COLUMNS)

    def _ask(
        self, method: str, columns: Sequence[str], wanted: list[str], *args, first: int = 0, rows_required: bool = True
    ) -> tuple[FetchResult, dict[str, int]]:
        """``method`` of each source in turn (source ``first`` before the others) for the symbols
        still unanswered; the result, and the index of the source that answered each symbol.

        rows_required: a symbol without rows is unanswered (false for actions: none is an answer).
        A source that raises fails the symbols it was asked for, so the others' rows are kept.
        """
        order = [first, *(i for i in range(len(self.sources)) if i != first)]
        pending, parts, supplier = list(wanted), [], {}
        reasons: dict[str, list[str]] = {}
        refused: set[str] = set()  # failed by some source (not merely empty everywhere: e.g. a weekend)
        for i in order:
            if not pending:
                break
            source = self.sources[i]
            try:
                result = getattr(source, method)(pending, *args)
            except Exception as exc:  # noqa: BLE001 -- one source's error must not lose the others' data
                result = FetchResult(empty_frame(columns), dict.fromkeys(pending, f"{type(exc).__name__}: {exc}"))
            has_rows = set(result.frame["symbol"])
            answered = [s for s in pending if s not in result.failures and (s in has_rows or not rows_required)]
            parts.append(FetchResult(result.frame.loc[result.frame["symbol"].isin(answered)]))
            supplier.update(dict.fromkeys(answered, i))
            refused.update(s for s in pending if s in result.failures)
            for s in pending:
                if s not in supplier:
                    reasons.setdefault(s, []).append(f"{source.name}: {result.failures.get(s, 'returned nothing')}")
            pending = [s for s in pending if s not in supplier]
        failures = {s: "; ".join(reasons[s]) for s in pending if s in refused}
        return FetchResult(_combined(parts, columns).frame, failures), supplier


def _combined(parts: list[FetchResult], columns: Sequence[str]) -> FetchResult:
    """One result of disjoint parts, sorted by symbol as every source's frame is."""
    frames = [part.frame for part in parts if len(part.frame)]
    failures = {s: why for part in parts for s, why in part.failures.items()}
    if not frames:
        return FetchResult(empty_frame(columns), failures)
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    key = [c for c in ("symbol", "date", "period_end", "metric", "kind") if c in frame]
    return FetchResult(frame.sort_values(key, kind="stable").reset_index(drop=True), failures)
