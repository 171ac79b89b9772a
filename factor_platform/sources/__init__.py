"""Price sources behind one interface (see base.py): ``sample``, ``csv:<path>``, ``yfinance``.

``price_source(spec)`` builds one from the contract's FACTOR_PLATFORM_PRICE_SOURCE value.
"""

from __future__ import annotations

from factor_platform.sources.base import (
    FUNDAMENTAL_COLUMNS,
    PRICE_COLUMNS,
    PROFILE_COLUMNS,
    FetchResult,
    PriceSource,
)
from factor_platform.sources.csv import CsvPriceSource
from factor_platform.sources.sample import SampleSource, true_betas
from factor_platform.sources.yfinance import YFinanceSource

__all__ = [
    "FUNDAMENTAL_COLUMNS",
    "PRICE_COLUMNS",
    "PROFILE_COLUMNS",
    "CsvPriceSource",
    "FetchResult",
    "PriceSource",
    "SampleSource",
    "YFinanceSource",
    "price_source",
    "true_betas",
]


def price_source(spec: str, *, calendar: str = "XNYS") -> PriceSource:
    """The source named by ``spec``: ``"sample"``, ``"yfinance"`` or ``"csv:<path>"``.

    ValueError for any other spec (naming it). A csv path is checked now (see CsvPriceSource);
    its rows are read and validated on first use, or at once with ``CsvPriceSource.load()``.
    """
    if not isinstance(spec, str):
        raise ValueError(f"price source {spec!r} must be a string: 'sample', 'yfinance' or 'csv:<path>'")
    text = spec.strip()
    if text == "sample":
        return SampleSource(calendar=calendar)
    if text == "yfinance":
        return YFinanceSource(calendar=calendar)
    if text.startswith("csv:"):
        path = text[len("csv:") :].strip()
        if not path:
            raise ValueError(f"price source {spec!r}: 'csv:' needs a file path, e.g. 'csv:/data/prices.csv'")
        return CsvPriceSource(path, calendar=calendar)
    raise ValueError(f"unknown price source {spec!r}: expected 'sample', 'yfinance' or 'csv:<path>'")
