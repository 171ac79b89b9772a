"""The ``yfinance`` source: live Yahoo Finance data, where every problem is a per-symbol failure.

Prices: symbols go in batches of ``batch_size`` to ``yf.download(batch, start, end + 1 day,
auto_adjust=False, actions=False, group_by="ticker", threads=False, progress=False, timeout=...)``
(Yahoo's ``end`` is exclusive), at most ``max_concurrency`` batches at a time. ``close`` and
``adj_close`` are Yahoo's ``Close`` and ``Adj Close``; only sessions of the calendar in
``[start, end]`` with a positive close are kept.

Corporate actions: the same batched download with ``actions=True``; its ``Dividends`` and
``Stock Splits`` columns (0 = no action; see :func:`parse_actions`) become ``dividend`` and
``split`` rows. Yahoo's dividends are already on the split-adjusted basis of its ``Close`` and a
reverse split is a ratio below 1 (0.1 for 1:10). A symbol with prices in range and only zeros has
no actions (not a failure); one without any row is a failure, exactly as for prices.

Never a crash of the whole run, never fake data:

- ``yf.download`` does not raise for a failed ticker: offline it returns an *empty* frame, for an
  unknown or delisted ticker it returns all-NaN columns, and it reports the cause only in its log.
  Each such symbol becomes a failure whose text carries the yfinance log message naming it
  (captured from the ``yfinance`` logger, for the calling thread only) when there is one;
- an exception from ``yf.download`` (or from ``Ticker.info`` / the financials) fails the symbols it
  concerns with the exception's type and text;
- a rate limit (``YFRateLimitError``, raised or logged) is retried ``retries`` times, after
  ``pause * 2**attempt`` seconds, for the symbols it hit; then they fail.

Profiles: ``yf.Ticker(s).info`` -> name (longName, else shortName), sector, industry, marketCap,
currency; an ETF (quoteType ETF) gets sector ``ETF`` and its Yahoo category as industry.
Fundamentals: ``quarterly_financials`` and ``quarterly_balance_sheet`` -> metrics ``revenue``
(Total Revenue), ``net_income`` (Net Income), ``eps`` (Diluted EPS, else Basic EPS),
``book_value`` (Stockholders Equity). No profile / no figures at all -> failure.

The outside world is injectable (``download=``, ``ticker_factory=``) so that tests can replace
Yahoo with canned frames of yfinance's real shapes.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from factor_platform.domain import sessions
from factor_platform.sources.base import (
    ACTION_COLUMNS,
    FUNDAMENTAL_COLUMNS,
    PRICE_COLUMNS,
    PROFILE_COLUMNS,
    FetchResult,
    date_range,
    finish_actions,
    finish_fundamentals,
    finish_prices,
    finish_profiles,
    requested_symbols,
)

__all__ = ["YFinanceSource", "parse_actions"]

_ACTION_FIELDS = {"Dividends": "dividend", "Stock Splits": "split"}
_FIELDS = {"Open": "open", "High": "high", "Low": "low", "Close": "close", "Adj Close": "adj_close", "Volume": "volume"}
_INCOME_METRICS = {
    "revenue": ("Total Revenue", "Operating Revenue"),
    "net_income": ("Net Income", "Net Income Common Stockholders"),
    "eps": ("Diluted EPS", "Basic EPS"),
}
_BALANCE_METRICS = {"book_value": ("Stockholders Equity", "Common Stock Equity")}
_RATE_LIMIT_TEXT = re.compile(r"YFRateLimitError|Too Many Requests|Rate limited|\b429\b", re.IGNORECASE)
_MAX_DETAIL = 400


class YFinanceSource:
    """Yahoo Finance through the yfinance package; see the module docstring."""

    name = "yfinance"

    def __init__(
        self,
        *,
        max_concurrency: int = 5,
        batch_size: int = 50,
        retries: int = 2,
        pause: float = 2.0,
        timeout: float = 10.0,
        calendar: str = "XNYS",
        download: Callable[..., Any] | None = None,
        ticker_factory: Callable[[str], Any] | None = None,
    ) -> None:
        if max_concurrency < 1 or batch_size < 1:
            raise ValueError(f"max_concurrency={max_concurrency} and batch_size={batch_size} must be >= 1")
        if retries < 0 or pause < 0 or timeout <= 0:
            raise ValueError(f"retries={retries} and pause={pause} must be >= 0, timeout={timeout} > 0")
        if download is None or ticker_factory is None:
            import yfinance  # slow to import; only when the live source is used

            download = download or yfinance.download
            ticker_factory = ticker_factory or yfinance.Ticker
        self.max_concurrency, self.batch_size, self.retries = max_concurrency, batch_size, retries
        self.pause, self.timeout, self.calendar = pause, timeout, calendar
        self._download, self._ticker = download, ticker_factory

    def __repr__(self) -> str:
        return (
            f"YFinanceSource(max_concurrency={self.max_concurrency}, batch_size={self.batch_size}, "
            f"retries={self.retries}, calendar={self.calendar!r})"
        )

    # -- prices ----------------------------------------------------------------------------------

    def fetch_prices(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> FetchResult:
        return self._fetch_batches(symbols, start, end, actions=False)

    def fetch_actions(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> FetchResult:
        return self._fetch_batches(symbols, start, end, actions=True)

    def _fetch_batches(self, symbols: Sequence[str], start: dt.date, end: dt.date, *, actions: bool) -> FetchResult:
        """Prices (or, with ``actions``, corporate actions) through batched downloads."""
        wanted = requested_symbols(symbols)
        start, end = date_range(start, end)

        def finish(rows: pd.DataFrame) -> pd.DataFrame:
            if actions:
                return finish_actions(rows, wanted, start, end)
            return finish_prices(rows, wanted, start, end, self.calendar)

        if not wanted or not len(sessions.sessions_in_range(start, end, self.calendar)):
            return FetchResult(finish(pd.DataFrame()), {})
        batches = [wanted[i : i + self.batch_size] for i in range(0, len(wanted), self.batch_size)]
        results = self._map(lambda batch: self._batch(batch, start, end, actions=actions), batches)
        frames = [frame for frame, _ in results if not frame.empty]
        failures = {s: why for _, batch_failures in results for s, why in batch_failures.items()}
        rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        return FetchResult(finish(rows), {s: failures[s] for s in wanted if s in failures})

    def _batch(
        self, batch: list[str], start: dt.date, end: dt.date, *, actions: bool
    ) -> tuple[pd.DataFrame, dict[str, str]]:
        pending, frames, failures = list(batch), [], {}
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            with _yfinance_log() as log:
                try:
                    data, error = self._call_download(pending, start, end, actions=actions), None
                except Exception as exc:  # the outside world: anything may go wrong
                    data, error = None, exc
            if error is not None:
                if _is_rate_limit(error) and not last:
                    self._sleep(attempt)
                    continue
                why = _describe(error)
                if _is_rate_limit(error):
                    why = f"rate limited by Yahoo after {attempt + 1} attempts: {why}"
                failures.update({s: f"yfinance download failed: {why}" for s in pending})
                break
            found = _download_rows(data, pending, start, end, self.calendar, actions=actions)
            frames.extend(rows for rows in found.values() if not rows.empty)
            missing = [s for s in pending if s not in found]
            detail_of = {s: log.about(s, [o for o in pending if o != s]) for s in missing}
            limited = [s for s in missing if _RATE_LIMIT_TEXT.search(detail_of[s])]
            for s in missing:
                if s in limited and not last:
                    continue
                detail = detail_of[s]
                why = f"Yahoo returned no prices for {s} between {start} and {end}"
                why += ", so no corporate actions" if actions else ""
                why += f": {detail}" if detail else " (unknown or delisted ticker?)"
                if s in limited:
                    why = f"rate limited by Yahoo after {attempt + 1} attempts; {why}"
                failures[s] = why
            if not limited or last:
                break
            pending = limited
            self._sleep(attempt)
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        return frame, failures

    def _call_download(self, symbols: list[str], start: dt.date, end: dt.date, *, actions: bool = False):
        return self._download(
            list(symbols),
            start=start.isoformat(),
            end=(end + dt.timedelta(days=1)).isoformat(),
            auto_adjust=False,
            actions=actions,
            group_by="ticker",
            threads=False,
            progress=False,
            timeout=self.timeout,
        )

    # -- profiles and fundamentals ---------------------------------------------------------------

    def fetch_profiles(self, symbols: Sequence[str]) -> FetchResult:
        wanted = requested_symbols(symbols)
        results = self._map(lambda s: self._with_retries(s, self._profile_row, "profile"), wanted)
        rows = [row for row, _ in results if row is not None]
        failures = {s: why for s, (_, why) in zip(wanted, results) if why is not None}
        return FetchResult(finish_profiles(pd.DataFrame(rows, columns=PROFILE_COLUMNS), wanted), failures)

    def fetch_fundamentals(self, symbols: Sequence[str]) -> FetchResult:
        wanted = requested_symbols(symbols)
        results = self._map(lambda s: self._with_retries(s, self._fundamental_rows, "fundamentals"), wanted)
        rows = [row for found, _ in results if found is not None for row in found]
        failures = {s: why for s, (_, why) in zip(wanted, results) if why is not None}
        frame = pd.DataFrame(rows, columns=FUNDAMENTAL_COLUMNS)
        return FetchResult(finish_fundamentals(frame, wanted), failures)

    def _profile_row(self, symbol: str) -> tuple | None:
        info = self._ticker(symbol).info
        if not isinstance(info, dict) or not (info.get("longName") or info.get("shortName")):
            return None
        is_etf = str(info.get("quoteType", "")).upper() == "ETF"
        market_cap = info.get("marketCap")
        return (
            symbol,
            info.get("longName") or info.get("shortName"),
            "ETF" if is_etf else info.get("sector"),
            (info.get("category") or "ETF") if is_etf else info.get("industry"),
            float(market_cap) if isinstance(market_cap, (int, float)) else np.nan,
            info.get("currency"),
        )

    def _fundamental_rows(self, symbol: str) -> list[tuple] | None:
        ticker = self._ticker(symbol)
        rows = _statement_rows(symbol, ticker.quarterly_financials, _INCOME_METRICS)
        rows += _statement_rows(symbol, ticker.quarterly_balance_sheet, _BALANCE_METRICS)
        return rows or None

    def _with_retries(self, symbol: str, fetch: Callable[[str], Any], what: str) -> tuple[Any, str | None]:
        """(result, None) or (None, why): one symbol through ``fetch``, rate limits retried."""
        for attempt in range(self.retries + 1):
            with _yfinance_log() as log:
                try:
                    found, error = fetch(symbol), None
                except Exception as exc:  # the outside world: anything may go wrong
                    found, error = None, exc
            limited = _is_rate_limit(error) if error is not None else bool(_RATE_LIMIT_TEXT.search(log.about(symbol)))
            if found is not None:
                return found, None
            if limited and attempt < self.retries:
                self._sleep(attempt)
                continue
            if error is not None:
                why = f"yfinance {what} of {symbol} failed: {_describe(error)}"
            else:
                detail = log.about(symbol)
                why = f"Yahoo returned no {what} for {symbol}" + (f": {detail}" if detail else "")
            if limited:
                why = f"rate limited by Yahoo after {attempt + 1} attempts; {why}"
            return None, why
        raise AssertionError("unreachable")

    # -- plumbing --------------------------------------------------------------------------------

    def _map(self, function: Callable[[Any], Any], items: list) -> list:
        if len(items) <= 1:
            return [function(item) for item in items]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(items))) as pool:
            return list(pool.map(function, items))

    def _sleep(self, attempt: int) -> None:
        if self.pause:
            time.sleep(self.pause * 2**attempt)


def _download_rows(
    data: Any, symbols: list[str], start: dt.date, end: dt.date, calendar: str, *, actions: bool = False
) -> dict[str, pd.DataFrame]:
    """Price rows (with ``actions``: action rows, possibly none) per symbol found in a ``yf.download``
    frame; a symbol without a usable price row is absent -- Yahoo did not answer for it."""
    if not isinstance(data, pd.DataFrame) or data.empty:
        return {}
    per_ticker = _split_by_ticker(data, symbols)
    found: dict[str, pd.DataFrame] = {}
    for symbol in symbols:
        bars = per_ticker.get(symbol, per_ticker.get(symbol.upper()))  # yf.download upper-cases tickers
        if bars is None:
            continue
        rows = finish_prices(_price_rows(symbol, bars), [symbol], start, end, calendar)
        if not rows.empty:
            found[symbol] = parse_actions(symbol, bars, start, end) if actions else rows
    return found


def _split_by_ticker(data: pd.DataFrame, symbols: list[str]) -> dict[str, pd.DataFrame]:
    columns = data.columns
    if not isinstance(columns, pd.MultiIndex):
        # one ticker with multi_level_index=False: plain OHLC columns
        return {symbols[0].upper(): data} if len(symbols) == 1 else {}
    fields = set(_FIELDS)
    field_level = max(range(columns.nlevels), key=lambda level: len(fields & set(columns.get_level_values(level))))
    ticker_level = 1 - field_level if columns.nlevels == 2 else 0
    out = {}
    for ticker in columns.get_level_values(ticker_level).unique():
        out[str(ticker)] = data.xs(ticker, axis=1, level=ticker_level)
    return out


def _wall_dates(index: pd.Index) -> pd.DatetimeIndex:
    """Midnight of each row's exchange wall-clock date (a tz-aware index loses its zone, not its date)."""
    index = pd.DatetimeIndex(index)
    return (index.tz_localize(None) if index.tz is not None else index).normalize()


def parse_actions(symbol: str, bars: pd.DataFrame, start: dt.date, end: dt.date) -> pd.DataFrame:
    """ACTION_COLUMNS rows of ``symbol`` in ``[start, end]`` from a yfinance frame (one ticker's
    ``Dividends`` / ``Stock Splits`` columns, 0 or NaN = no action; either column may be absent)."""
    dates = _wall_dates(bars.index)
    parts = []
    for field, kind in _ACTION_FIELDS.items():
        if field in bars:
            values = pd.to_numeric(bars[field], errors="coerce").to_numpy(dtype=np.float64)
            hit = np.isfinite(values) & (values > 0)
            parts.append(pd.DataFrame({"symbol": symbol, "date": dates[hit], "kind": kind, "value": values[hit]}))
    rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=ACTION_COLUMNS)
    return finish_actions(rows.assign(source="yfinance"), [symbol], start, end)


def _price_rows(symbol: str, bars: pd.DataFrame) -> pd.DataFrame:
    rows = pd.DataFrame({"symbol": symbol, "date": _wall_dates(bars.index)})
    for field, column in _FIELDS.items():
        rows[column] = pd.to_numeric(bars[field], errors="coerce").to_numpy() if field in bars else np.nan
    rows["source"] = "yfinance"
    return rows.loc[rows["close"].notna(), list(PRICE_COLUMNS)]


def _statement_rows(symbol: str, statement: Any, metrics: dict[str, tuple[str, ...]]) -> list[tuple]:
    if not isinstance(statement, pd.DataFrame) or statement.empty:
        return []
    rows = []
    for metric, candidates in metrics.items():
        line = next((name for name in candidates if name in statement.index), None)
        if line is None:
            continue
        values = pd.to_numeric(statement.loc[line], errors="coerce")
        if isinstance(values, pd.DataFrame):  # a line name repeated: take the first
            values = values.iloc[0]
        for period_end, value in values.items():
            if pd.notna(value):
                rows.append((symbol, pd.Timestamp(period_end).tz_localize(None).normalize(), metric, float(value)))
    return rows


def _is_rate_limit(error: BaseException) -> bool:
    if any(cls.__name__ == "YFRateLimitError" for cls in type(error).__mro__):
        return True
    return bool(_RATE_LIMIT_TEXT.search(str(error)))


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return _clip(f"{type(error).__name__}: {text}" if text else type(error).__name__)


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3] + "..."


class _ThreadLog(logging.Handler):
    """WARNING+ records of the ``yfinance`` logger emitted by one thread (yf.download's only error channel)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread:
            return
        try:
            message = record.getMessage()
        except Exception:  # a malformed record must not break a download
            return
        if message.strip():
            self.messages.append(message.strip())

    def about(self, symbol: str, others: Sequence[str] = ()) -> str:
        """The last two distinct messages naming ``symbol`` -- else those naming none of ``others``
        (the rest of its batch) -- joined; '' if none."""
        named = [m for m in self.messages if _names(m, symbol)]
        if not named:
            named = [m for m in self.messages if not any(_names(m, other) for other in others)]
        return _clip("; ".join(list(dict.fromkeys(named))[-2:]))


def _names(message: str, symbol: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9.=^-]){re.escape(symbol.upper())}(?![A-Za-z0-9.=^-])", message) is not None


@contextmanager
def _yfinance_log() -> Iterator[_ThreadLog]:
    logger = logging.getLogger("yfinance")
    handler = _ThreadLog()
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
