"""price_source(spec): the contract's FACTOR_PLATFORM_PRICE_SOURCE values, and the one interface."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from factor_platform.sources import (
    ACTION_COLUMNS,
    CsvPriceSource,
    FetchResult,
    PriceSource,
    SampleSource,
    YFinanceSource,
    price_source,
)
from factor_platform.sources.base import finish_actions


def test_specs_build_their_sources(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text("date,symbol,close\n2024-01-02,SPY,472.65\n")
    built = {
        "sample": price_source("sample"),
        "yfinance": price_source(" yfinance "),
        "csv:prices.csv": price_source(f"csv:{path}", calendar="XNYS"),  # named by its file, not its path
    }
    assert isinstance(built["sample"], SampleSource)
    assert isinstance(built["yfinance"], YFinanceSource)
    assert isinstance(built["csv:prices.csv"], CsvPriceSource) and built["csv:prices.csv"].path == path
    for name, source in built.items():
        assert source.name == name and isinstance(source, PriceSource)
    assert price_source("sample", calendar="XLON").calendar == "XLON"


@pytest.mark.parametrize("spec", ["bogus", "Sample", "csv:", "csv: ", "yahoo", "", "sample:x"])
def test_unknown_specs_are_refused_by_name(spec):
    with pytest.raises(ValueError) as info:
        price_source(spec)
    assert repr(spec) in str(info.value)


def test_every_source_answers_with_fetch_results(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text("date,symbol,close\n2024-01-02,SPY,472.65\n")
    for source in (price_source("sample"), price_source(f"csv:{path}"), price_source(f"csv:{path},sample")):
        actions = source.fetch_actions(["SPY"], "2024-01-02", "2024-01-02")
        for result in (
            source.fetch_prices(["SPY"], "2024-01-02", "2024-01-02"),
            source.fetch_profiles(["SPY"]),
            source.fetch_fundamentals(["AAPL"]),
            actions,
        ):
            assert isinstance(result, FetchResult) and isinstance(result.failures, dict)
        assert list(actions.frame.columns) == list(ACTION_COLUMNS) and actions.failures == {}
        assert actions.frame["date"].dtype == "datetime64[ns]" and actions.frame["value"].dtype == "float64"


def test_finish_actions_enforces_the_frame_rules():
    rows = pd.DataFrame(
        [
            ("KO", "2024-03-15 09:30", "dividend", 0.49, "x"),
            ("KO", "2024-03-15", "dividend", 0.50, "x"),  # a duplicate key: the first is kept
            ("AAPL", "2024-01-02", "split", 4.0, "x"),
            ("AAPL", "2024-01-03", "bonus", 1.0, "x"),  # not an action kind
            ("AAPL", "2024-01-04", "dividend", 0.0, "x"),  # not > 0
            ("AAPL", "2024-01-05", "dividend", float("inf"), "x"),
            ("MSFT", "2024-01-02", "split", 2.0, "x"),  # not requested
            ("AAPL", "2025-01-02", "split", 2.0, "x"),  # out of range
        ],
        columns=ACTION_COLUMNS,
    ).assign(date=lambda f: f["date"].map(pd.Timestamp))
    frame = finish_actions(rows, ["KO", "AAPL"], dt.date(2024, 1, 1), dt.date(2024, 12, 31))
    assert list(zip(frame["symbol"], frame["date"].dt.strftime("%Y-%m-%d %H:%M"), frame["kind"], frame["value"])) == [
        ("AAPL", "2024-01-02 00:00", "split", 4.0),
        ("KO", "2024-03-15 00:00", "dividend", 0.49),
    ]
    assert frame.index.tolist() == [0, 1]
    empty = finish_actions(rows.iloc[:0], ["KO"], dt.date(2024, 1, 1), dt.date(2024, 12, 31))
    assert list(empty.columns) == list(ACTION_COLUMNS) and empty["value"].dtype == "float64"
    assert empty["date"].dtype == "datetime64[ns]"
