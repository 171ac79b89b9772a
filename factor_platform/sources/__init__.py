"""Price sources behind one interface (see base.py): ``sample``, ``csv:<path>``, ``yfinance``.

``price_source(spec)`` builds one from the contract's FACTOR_PLATFORM_PRICE_SOURCE value, also an
ordered, comma-separated list of them (a :class:`FailoverSource`).
"""

from __future__ import annotations

import re

from factor_platform.sources.base import (
    ACTION_COLUMNS,
    FUNDAMENTAL_COLUMNS,
    PRICE_COLUMNS,
    PROFILE_COLUMNS,
    FetchResult,
    PriceSource,
)
from factor_platform.sources.csv import CsvPriceSource
from factor_platform.sources.failover import FailoverSource
from factor_platform.sources.sample import SampleSource, true_betas
from factor_platform.sources.yfinance import YFinanceSource

__all__ = [
    "ACTION_COLUMNS",
    "FUNDAMENTAL_COLUMNS",
    "PRICE_COLUMNS",
    "PROFILE_COLUMNS",
    "CsvPriceSource",
    "FailoverSource",
    "FetchResult",
    "PriceSource",
    "SampleSource",
    "YFinanceSource",
    "price_source",
    "split_spec",
    "true_betas",
]

# A comma separates two sources only where a known spec starts after it, so that a CSV path
# may itself contain commas ("csv:/data/a,b.csv" and "csv:/data/x,sample_prices.csv" stay whole).
_SEPARATOR = re.compile(r",(?=\s*(?:(?:sample|yfinance)\s*(?:,|$)|csv:))")


def split_spec(spec: str) -> list[str]:
    """The elements of a comma-separated source list, stripped, in order."""
    return [element.strip() for element in _SEPARATOR.split(spec.strip())]


def price_source(spec: str, *, calendar: str = "XNYS") -> PriceSource:
    """The source named by ``spec``: ``"sample"``, ``"yfinance"``, ``"csv:<path>"``, or an ordered
    comma-separated list of them (``"yfinance,csv:/data/backup.csv"``: a FailoverSource).

    ValueError for any other spec (naming the bad element). A csv path is checked now (see
    CsvPriceSource); its rows are read and validated on first use, or at once with ``CsvPriceSource.load()``.
    """
    if not isinstance(spec, str):
        raise ValueError(f"price source {spec!r} must be a string: 'sample', 'yfinance' or 'csv:<path>'")
    elements = split_spec(spec)
    if len(elements) == 1:
        return _one_source(spec, calendar)
    sources = []
    for n, element in enumerate(elements, start=1):
        try:
            sources.append(_one_source(element, calendar))
        except ValueError as exc:
            raise ValueError(f"price source list {spec!r}, element {n}: {exc}") from None
    return FailoverSource(sources)


def _one_source(spec: str, calendar: str) -> PriceSource:
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
