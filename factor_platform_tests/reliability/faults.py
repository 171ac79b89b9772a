"""A market-data source that fails on purpose: the sample source with per-symbol faults injected.

Fault modes (per symbol, for prices, profiles and fundamentals alike):

- ``raise``:      the call raises ``ConnectionError`` whenever the symbol is among those requested
                  (a vendor client that blows up on one bad ticker takes the whole request with it);
- ``rate_limit``: the call raises ``RateLimitError`` (HTTP 429) whenever the symbol is requested;
- ``empty``:      the symbol's rows are silently absent (no row, no reason: a vendor's empty frame);
- ``partial``:    prices stop short: the last ``PARTIAL_MISSING`` sessions of the requested range are absent;
- ``flaky``:      ``raise`` until the test calls ``heal(symbol)``, then healthy (a vendor outage that ends).

Every injected fault is counted in the reliability ledger, and every request is counted in ``asked``
so a test can assert what was (or was not) fetched.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence

import pandas as pd

from factor_platform.defs.resources import MarketData
from factor_platform.domain import sessions
from factor_platform.sources.base import FetchResult
from factor_platform.sources.sample import SampleSource
from factor_platform_tests.reliability.support import LEDGER

MODES = ("raise", "rate_limit", "empty", "partial", "flaky")
PARTIAL_MISSING = 2


class RateLimitError(Exception):
    """What a vendor client raises on HTTP 429."""


class FaultySource:
    """A PriceSource: the sample source, with the faults of ``modes`` ({symbol: mode}) injected."""

    name = "sample"

    def __init__(self, modes: dict[str, str], *, calendar: str = "XNYS"):
        unknown = {m for m in modes.values() if m not in MODES}
        if unknown:
            raise ValueError(f"unknown fault modes {sorted(unknown)}; modes are {MODES}")
        self.modes = dict(modes)
        self.calendar = calendar
        self.inner = SampleSource(calendar=calendar)
        self.asked: Counter = Counter()  # (kind, symbol) -> times requested

    # -------------------------------------------------------------- the PriceSource protocol
    def fetch_prices(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> FetchResult:
        symbols = self._ask("prices", symbols)
        result = self.inner.fetch_prices(symbols, start, end)
        frame = self._drop(result.frame, symbols, "prices", start, end)
        return FetchResult(frame, result.failures)  # the injected faults are unreported: the platform must notice

    def fetch_profiles(self, symbols: Sequence[str]) -> FetchResult:
        symbols = self._ask("profiles", symbols)
        result = self.inner.fetch_profiles(symbols)
        return FetchResult(self._drop(result.frame, symbols, "profiles"), result.failures)

    def fetch_fundamentals(self, symbols: Sequence[str]) -> FetchResult:
        symbols = self._ask("fundamentals", symbols)
        result = self.inner.fetch_fundamentals(symbols)
        return FetchResult(self._drop(result.frame, symbols, "fundamentals"), result.failures)

    def fetch_actions(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> FetchResult:
        return self.inner.fetch_actions(symbols, start, end)  # asked only for symbols whose prices came

    # -------------------------------------------------------------- faults
    def mode(self, symbol: str, kind: str) -> str | None:
        mode = self.modes.get(symbol)
        if mode == "partial" and kind != "prices":
            return None
        return mode

    def _inject(self, mode: str, symbol: str) -> None:
        LEDGER.fault(f"source {mode}")

    def _ask(self, kind: str, symbols: Sequence[str]) -> list[str]:
        symbols = list(symbols)
        for s in symbols:
            self.asked[(kind, s)] += 1
        for s in symbols:
            mode = self.mode(s, kind)
            if mode in ("raise", "flaky"):
                self._inject(mode, s)
                raise ConnectionError(f"connection reset by peer while fetching {kind} of {s}")
            if mode == "rate_limit":
                self._inject("rate_limit", s)
                raise RateLimitError(f"429 Too Many Requests: rate limited while fetching {kind} of {s}")
        return symbols

    def _drop(self, frame: pd.DataFrame, symbols: list[str], kind: str, start=None, end=None) -> pd.DataFrame:
        keep = pd.Series(True, index=frame.index)
        for s in symbols:
            mode = self.mode(s, kind)
            if mode == "empty":
                self._inject("empty", s)
                keep &= frame["symbol"] != s
            elif mode == "partial":
                days = sessions.sessions_in_range(start, end, self.calendar)
                if len(days) > PARTIAL_MISSING:
                    self._inject("partial", s)
                    keep &= ~((frame["symbol"] == s) & (frame["date"] >= days[-PARTIAL_MISSING]))
        return frame.loc[keep].reset_index(drop=True)

    def heal(self, symbol: str) -> None:
        self.modes.pop(symbol, None)

    def asked_for(self, symbol: str, kind: str = "prices") -> int:
        return self.asked[(kind, symbol)]


# The resource passed as an override: Dagster needs a config-serializable resource, so the
# (stateful) fake lives in a registry and the resource names it.
SOURCES: dict[str, FaultySource] = {}


class FaultyMarketData(MarketData):
    """MarketData whose ``get()`` returns the registered FaultySource named ``scenario``."""

    scenario: str

    def get(self) -> FaultySource:
        return SOURCES[self.scenario]
