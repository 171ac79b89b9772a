"""The yfinance source against a fake Yahoo (canned frames in yfinance's real shapes) and the real,
offline one: every problem is a per-symbol failure, never a crash and never fake data."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time

import numpy as np
import pandas as pd
import pytest
from yfinance.exceptions import YFRateLimitError

from factor_platform.sources import ACTION_COLUMNS, PRICE_COLUMNS, PROFILE_COLUMNS, YFinanceSource
from factor_platform.sources.yfinance import parse_actions

FIELDS = ["Open", "High", "Low", "Close", "Adj Close", "Volume"]
DATES = pd.DatetimeIndex(["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08"], name="Date")


def bars(start_price: float, index: pd.DatetimeIndex = DATES) -> pd.DataFrame:
    close = start_price + np.arange(len(index), dtype=float)
    return pd.DataFrame(
        {
            "Open": close - 0.5,
            "High": close + 1,
            "Low": close - 1,
            "Close": close,
            "Adj Close": close * 0.99,
            "Volume": 1e6 + np.arange(len(index)),
        },
        index=index,
    )


def yahoo_frame(per_ticker: dict[str, pd.DataFrame | None]) -> pd.DataFrame:
    """What yf.download(..., group_by="ticker") returns: columns (Ticker, Price), union of dates,
    a ticker without data all NaN (yfinance's own assembly, multi.py)."""
    empty = pd.DataFrame(columns=FIELDS, dtype=float)
    frames = {t.upper(): (f if f is not None else empty) for t, f in per_ticker.items()}
    index = None
    for frame in frames.values():
        if not frame.empty:
            index = frame.index if index is None else index.union(frame.index)
    index = index if index is not None else pd.DatetimeIndex([], name="Date")
    frames = {t: f.reindex(index) for t, f in frames.items()}
    return pd.concat(frames.values(), axis=1, sort=True, keys=frames.keys(), names=["Ticker", "Price"])


class FakeYahoo:
    """The outside world: answers yf.download calls from canned data, recording them."""

    def __init__(self, data: dict[str, pd.DataFrame], *, delay: float = 0.0):
        self.data, self.delay = data, delay
        self.calls: list[tuple[list[str], dict]] = []
        self.lock = threading.Lock()
        self.active = self.max_active = 0

    def download(self, tickers, **kwargs):
        with self.lock:
            self.calls.append((list(tickers), kwargs))
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            time.sleep(self.delay)
            return self.answer(list(tickers), kwargs)
        finally:
            with self.lock:
                self.active -= 1

    def answer(self, tickers, kwargs):
        start, end = pd.Timestamp(kwargs["start"]), pd.Timestamp(kwargs["end"])
        out = {}
        for t in tickers:
            frame = self.data.get(t.upper())
            out[t] = None if frame is None else frame[(frame.index >= start) & (frame.index < end)]
        return yahoo_frame(out)


def source_with(fake, **options) -> YFinanceSource:
    options.setdefault("pause", 0)
    return YFinanceSource(download=fake.download, ticker_factory=lambda s: pytest.fail("no Ticker"), **options)


def test_parses_yfinance_multi_index_frames():
    fake = FakeYahoo({"AAPL": bars(185.0), "MSFT": bars(370.0)})
    result = source_with(fake).fetch_prices(["MSFT", "AAPL", "DELISTED"], dt.date(2024, 1, 3), dt.date(2024, 1, 5))
    frame = result.frame
    assert list(frame.columns) == list(PRICE_COLUMNS)
    assert frame["date"].dtype == "datetime64[ns]" and str(frame["volume"].dtype) == "Int64"
    assert list(frame["symbol"]) == ["AAPL"] * 3 + ["MSFT"] * 3
    assert list(frame["date"].dt.strftime("%Y-%m-%d").unique()) == ["2024-01-03", "2024-01-04", "2024-01-05"]
    aapl = frame.iloc[0]
    got = (aapl["open"], aapl["high"], aapl["low"], aapl["close"], aapl["volume"])
    assert got == (185.5, 187.0, 185.0, 186.0, 1000001)
    assert aapl["adj_close"] == pytest.approx(186.0 * 0.99) and (frame["source"] == "yfinance").all()
    # the all-NaN ticker is a failure, never a row
    assert set(result.failures) == {"DELISTED"} and "no prices for DELISTED" in result.failures["DELISTED"]
    tickers, kwargs = fake.calls[0]
    assert sorted(tickers) == ["AAPL", "DELISTED", "MSFT"]
    assert kwargs["start"] == "2024-01-03" and kwargs["end"] == "2024-01-06"  # Yahoo's end is exclusive
    assert kwargs["auto_adjust"] is False and kwargs["actions"] is False and kwargs["group_by"] == "ticker"
    assert kwargs["threads"] is False and kwargs["progress"] is False


def test_keeps_only_sessions_and_drops_nan_rows():
    index = pd.DatetimeIndex(["2024-01-12", "2024-01-13", "2024-01-15", "2024-01-16"], name="Date")  # Sat, MLK day
    frame = bars(10.0, index)
    frame.loc["2024-01-16", "Close"] = np.nan
    result = source_with(FakeYahoo({"X": frame})).fetch_prices(["X"], "2024-01-10", "2024-01-20")
    assert list(result.frame["date"].dt.strftime("%Y-%m-%d")) == ["2024-01-12"]


def test_case_of_requested_symbol_is_kept():
    result = source_with(FakeYahoo({"BRK-B": bars(400.0)})).fetch_prices(["brk-b"], "2024-01-02", "2024-01-02")
    assert list(result.frame["symbol"]) == ["brk-b"] and result.failures == {}


def test_batches_run_with_bounded_concurrency():
    symbols = [f"S{i:02d}" for i in range(23)]
    fake = FakeYahoo({s: bars(10.0 + i) for i, s in enumerate(symbols)}, delay=0.05)
    result = source_with(fake, batch_size=5, max_concurrency=2).fetch_prices(symbols, "2024-01-02", "2024-01-08")
    assert sorted(len(t) for t, _ in fake.calls) == [3, 5, 5, 5, 5]
    assert fake.max_active == 2
    assert result.failures == {} and len(result.frame) == 23 * 5


def test_an_empty_download_fails_every_symbol():
    class Offline(FakeYahoo):
        def answer(self, tickers, kwargs):
            return yahoo_frame({t: None for t in tickers})

    for fetch in ("fetch_prices", "fetch_actions"):
        result = getattr(source_with(Offline({})), fetch)(["SPY", "TLT"], "2024-01-02", "2024-01-08")
        assert result.frame.empty and set(result.failures) == {"SPY", "TLT"}
        assert "Yahoo returned no prices for SPY" in result.failures["SPY"]


def test_the_yfinance_log_explains_a_failure():
    class Logging(FakeYahoo):
        def answer(self, tickers, kwargs):
            logging.getLogger("yfinance").error("Failed to get ticker 'SPY' reason: curl: (6) Could not resolve host")
            return yahoo_frame({t: None for t in tickers})

    result = source_with(Logging({})).fetch_prices(["SPY"], "2024-01-02", "2024-01-08")
    assert "Could not resolve host" in result.failures["SPY"]


def test_an_exception_fails_its_batch_only():
    class Flaky(FakeYahoo):
        def answer(self, tickers, kwargs):
            if "BAD" in tickers:
                raise ConnectionError("connection reset by peer")
            return super().answer(tickers, kwargs)

    fake = Flaky({"GOOD": bars(5.0)})
    result = source_with(fake, batch_size=1).fetch_prices(["GOOD", "BAD"], "2024-01-02", "2024-01-08")
    assert set(result.frame["symbol"]) == {"GOOD"}
    assert result.failures == {"BAD": "yfinance download failed: ConnectionError: connection reset by peer"}
    assert len(fake.calls) == 2  # not retried: only rate limits are


def test_rate_limits_are_retried_then_fail():
    class Limited(FakeYahoo):
        def __init__(self, data, limit_first: int):
            super().__init__(data)
            self.limit_first = limit_first

        def answer(self, tickers, kwargs):
            if len(self.calls) <= self.limit_first:
                raise YFRateLimitError()
            return super().answer(tickers, kwargs)

    recovering = Limited({"SPY": bars(470.0)}, limit_first=2)
    result = source_with(recovering, retries=2).fetch_prices(["SPY"], "2024-01-02", "2024-01-08")
    assert len(recovering.calls) == 3 and result.failures == {} and len(result.frame) == 5

    stuck = Limited({"SPY": bars(470.0)}, limit_first=99)
    result = source_with(stuck, retries=2).fetch_prices(["SPY"], "2024-01-02", "2024-01-08")
    assert len(stuck.calls) == 3 and result.frame.empty
    assert "rate limited" in result.failures["SPY"] and "3 attempts" in result.failures["SPY"]


def test_a_logged_rate_limit_retries_only_the_symbols_it_hit():
    class LoggedLimit(FakeYahoo):
        def answer(self, tickers, kwargs):
            if len(self.calls) == 1:
                logging.getLogger("yfinance").error("['TLT']: YFRateLimitError('Too Many Requests. Rate limited.')")
                return super().answer([t for t in tickers if t != "TLT"], kwargs)
            return super().answer(tickers, kwargs)

    fake = LoggedLimit({"SPY": bars(470.0), "TLT": bars(95.0)})
    result = source_with(fake).fetch_prices(["SPY", "TLT"], "2024-01-02", "2024-01-08")
    assert [sorted(t) for t, _ in fake.calls] == [["SPY", "TLT"], ["TLT"]]
    assert result.failures == {} and sorted(set(result.frame["symbol"])) == ["SPY", "TLT"]


class FakeTicker:
    def __init__(self, symbol: str):
        self.symbol = symbol

    @property
    def info(self):
        return {
            "AAPL": {
                "longName": "Apple Inc.",
                "sector": "Technology",
                "industry": "Consumer Electronics",
                "marketCap": 2.9e12,
                "currency": "USD",
                "quoteType": "EQUITY",
            },
            "SPY": {"shortName": "SPDR S&P 500", "quoteType": "ETF", "category": "Large Blend", "currency": "USD"},
            "EMPTY": {},
        }.get(self.symbol) or self._fail()

    def _fail(self):
        if self.symbol == "EMPTY":
            return {}
        raise ConnectionError(f"cannot reach Yahoo for {self.symbol}")

    @property
    def quarterly_financials(self):
        if self.symbol != "AAPL":
            return pd.DataFrame()
        periods = pd.to_datetime(["2024-09-30", "2024-06-30"])
        return pd.DataFrame(
            {periods[0]: [94.9e9, 14.7e9, 0.97, 1.0], periods[1]: [85.8e9, 21.4e9, 1.40, np.nan]},
            index=["Total Revenue", "Net Income", "Diluted EPS", "Other"],
        )

    @property
    def quarterly_balance_sheet(self):
        if self.symbol == "BOOM":
            raise RuntimeError("HTTP 500")
        return pd.DataFrame({pd.Timestamp("2024-09-30"): [56.9e9]}, index=["Stockholders Equity"])


def test_profiles_from_ticker_info():
    source = YFinanceSource(download=lambda *a, **k: pytest.fail("no download"), ticker_factory=FakeTicker, pause=0)
    result = source.fetch_profiles(["SPY", "AAPL", "EMPTY", "DOWN"])
    assert list(result.frame.columns) == list(PROFILE_COLUMNS)
    rows = result.frame.set_index("symbol")
    assert rows.loc["AAPL", "name"] == "Apple Inc." and rows.loc["AAPL", "market_cap"] == 2.9e12
    assert rows.loc["SPY", "sector"] == "ETF" and rows.loc["SPY", "industry"] == "Large Blend"
    assert np.isnan(rows.loc["SPY", "market_cap"])
    assert set(result.failures) == {"EMPTY", "DOWN"}
    assert "ConnectionError: cannot reach Yahoo for DOWN" in result.failures["DOWN"]


def test_fundamentals_from_quarterly_statements():
    source = YFinanceSource(download=lambda *a, **k: pytest.fail("no download"), ticker_factory=FakeTicker, pause=0)
    result = source.fetch_fundamentals(["AAPL", "SPY", "BOOM"])
    frame = result.frame
    assert frame["period_end"].dtype == "datetime64[ns]"
    got = {(r.symbol, r.period_end.date().isoformat(), r.metric): r.value for r in frame.itertuples()}
    assert got == {
        ("AAPL", "2024-06-30", "eps"): 1.40,
        ("AAPL", "2024-06-30", "net_income"): 21.4e9,
        ("AAPL", "2024-06-30", "revenue"): 85.8e9,
        ("AAPL", "2024-09-30", "book_value"): 56.9e9,
        ("AAPL", "2024-09-30", "eps"): 0.97,
        ("AAPL", "2024-09-30", "net_income"): 14.7e9,
        ("AAPL", "2024-09-30", "revenue"): 94.9e9,
        # SPY: no income statement, a balance sheet -> what there is, is data (not a failure)
        ("SPY", "2024-09-30", "book_value"): 56.9e9,
    }
    assert set(result.failures) == {"BOOM"} and "RuntimeError: HTTP 500" in result.failures["BOOM"]


def test_the_real_yfinance_offline_records_failures_not_exceptions():
    """The real package on this machine (no network): an empty frame / DNS errors become failures.

    On a machine with network the same call may return data; either way every symbol is accounted
    for, exactly once, and an invented ticker is a failure."""
    source = YFinanceSource(timeout=3, pause=0, retries=0)
    symbols = ["SPY", "NO-SUCH-TICKER-XQZ"]
    began = time.perf_counter()
    prices = source.fetch_prices(symbols, dt.date(2024, 1, 2), dt.date(2024, 1, 12))
    profiles = source.fetch_profiles(symbols)
    fundamentals = source.fetch_fundamentals(symbols)
    actions = source.fetch_actions(symbols, dt.date(2024, 1, 2), dt.date(2024, 1, 12))
    assert list(actions.frame.columns) == list(ACTION_COLUMNS)
    for result in (prices, profiles, fundamentals):
        found = set(result.frame["symbol"])
        assert found.isdisjoint(result.failures) and found | set(result.failures) == set(symbols)
        assert "NO-SUCH-TICKER-XQZ" in result.failures
        assert all(isinstance(why, str) and why for why in result.failures.values())
    assert "NO-SUCH-TICKER-XQZ" in actions.failures and set(actions.frame["symbol"]) <= {"SPY"}
    if prices.frame.empty:  # offline: the reason is yfinance's own error text
        assert "Yahoo returned no prices for SPY" in prices.failures["SPY"]
        assert "SPY" in actions.failures
    assert time.perf_counter() - began < 15


def test_parse_actions_reads_dividends_and_splits_where_nonzero():
    index = pd.DatetimeIndex(
        ["2024-06-07 00:00", "2024-06-10 00:00", "2024-06-11 00:00", "2024-06-12 00:00", "2025-01-02 00:00"],
        tz="America/New_York",
        name="Date",
    )
    frame = pd.DataFrame(
        {
            "Close": [1200.0, 121.0, 122.0, 123.0, 130.0],
            "Dividends": [0.0, 0.0, np.nan, 0.01, 0.02],
            "Stock Splits": [0.0, 10.0, 0.0, 0.0, 0.0],
        },
        index=index,
    )
    rows = parse_actions("NVDA", frame, dt.date(2024, 1, 1), dt.date(2024, 12, 31))
    assert list(rows.columns) == list(ACTION_COLUMNS) and rows["date"].dtype == "datetime64[ns]"
    got = [(r.symbol, r.date.isoformat(), r.kind, r.value, r.source) for r in rows.itertuples()]
    assert got == [  # the exchange's date, not UTC; 2025 is out of range
        ("NVDA", "2024-06-10T00:00:00", "split", 10.0, "yfinance"),
        ("NVDA", "2024-06-12T00:00:00", "dividend", 0.01, "yfinance"),
    ]
    no_splits = parse_actions("KO", frame.drop(columns="Stock Splits"), dt.date(2024, 1, 1), dt.date(2025, 12, 31))
    assert list(no_splits["kind"]) == ["dividend", "dividend"]
    assert parse_actions("KO", frame[["Close"]], dt.date(2024, 1, 1), dt.date(2025, 12, 31)).empty
    zeros = frame.assign(Dividends=0.0, **{"Stock Splits": 0.0})
    assert parse_actions("KO", zeros, dt.date(2024, 1, 1), dt.date(2025, 12, 31)).empty


def test_fetch_actions_downloads_with_actions_and_no_actions_is_no_failure():
    aapl = bars(185.0).assign(Dividends=[0.0, 0.0, 0.24, 0.0, 0.0], **{"Stock Splits": [0.0, 4.0, 0.0, 0.0, 0.0]})
    msft = bars(370.0).assign(Dividends=0.0, **{"Stock Splits": 0.0})
    fake = FakeYahoo({"AAPL": aapl, "MSFT": msft})
    result = source_with(fake).fetch_actions(["MSFT", "AAPL", "DELISTED"], dt.date(2024, 1, 2), dt.date(2024, 1, 8))
    got = [(r.symbol, r.date.date().isoformat(), r.kind, r.value) for r in result.frame.itertuples()]
    assert got == [("AAPL", "2024-01-03", "split", 4.0), ("AAPL", "2024-01-04", "dividend", 0.24)]
    assert set(result.failures) == {"DELISTED"}  # MSFT answered: it simply had no actions
    assert "Yahoo returned no prices for DELISTED" in result.failures["DELISTED"]
    assert fake.calls[0][1]["actions"] is True and fake.calls[0][1]["auto_adjust"] is False


def test_fetch_actions_turns_a_dns_error_into_failures():
    class Unreachable(FakeYahoo):
        def answer(self, tickers, kwargs):
            raise ConnectionError("Could not resolve host: query2.finance.yahoo.com")

    result = source_with(Unreachable({})).fetch_actions(["SPY", "TLT"], "2024-01-02", "2024-01-08")
    assert result.frame.empty and list(result.frame.columns) == list(ACTION_COLUMNS)
    assert result.failures == {
        s: "yfinance download failed: ConnectionError: Could not resolve host: query2.finance.yahoo.com"
        for s in ("SPY", "TLT")
    }
