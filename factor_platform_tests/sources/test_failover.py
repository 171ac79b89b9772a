"""FailoverSource and source lists: each symbol from the first source that answers, under its own name."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from factor_platform.sources import (
    ACTION_COLUMNS,
    PRICE_COLUMNS,
    CsvPriceSource,
    FailoverSource,
    PriceSource,
    SampleSource,
    YFinanceSource,
    price_source,
    split_spec,
)

PRICES = """\
date,symbol,close
2024-01-02,FAILCO,10.0
2024-01-03,FAILCO,11.0
2024-01-02,AAPL,185.0
2023-06-01,KO,60.0
"""


@pytest.fixture
def csv_source(tmp_path) -> CsvPriceSource:
    path = tmp_path / "prices.csv"
    path.write_text(PRICES)
    (tmp_path / "prices.profiles.csv").write_text("symbol,name\nFAILCO,Fail Company\n")
    (tmp_path / "prices.actions.csv").write_text("symbol,date,kind,value\nKO,2024-06-14,dividend,99\n")
    return CsvPriceSource(path)


def offline_yahoo() -> YFinanceSource:
    """The real source with Yahoo unreachable (the outside world is the only fake)."""

    def unreachable(*args, **kwargs):
        raise ConnectionError("Could not resolve host")

    return YFinanceSource(download=unreachable, ticker_factory=unreachable, pause=0, retries=0)


def test_a_symbol_the_first_source_fails_comes_from_the_next_under_its_own_name(csv_source):
    source = FailoverSource([SampleSource(), csv_source])
    assert source.name == "sample+csv" and isinstance(source, PriceSource)
    result = source.fetch_prices(["FAILCO", "SPY"], "2024-01-02", "2024-01-03")
    frame = result.frame
    assert list(frame.columns) == list(PRICE_COLUMNS) and result.failures == {}
    assert list(zip(frame["symbol"], frame["source"])) == [("FAILCO", "csv")] * 2 + [("SPY", "sample")] * 2
    assert frame["close"].tolist()[:2] == [10.0, 11.0]
    profiles = source.fetch_profiles(["FAILCO", "SPY"])
    assert profiles.failures == {} and profiles.frame.set_index("symbol").loc["FAILCO", "name"] == "Fail Company"


def test_rows_come_from_exactly_one_source(csv_source):
    # csv answers AAPL for 2024-01-02 only; the sample is never asked for it, so no mixed history
    result = FailoverSource([csv_source, SampleSource()]).fetch_prices(["AAPL"], "2024-01-02", "2024-01-05")
    assert list(result.frame["source"]) == ["csv"] and result.failures == {}


def test_offline_first_source_falls_back_and_both_failing_joins_the_reasons(csv_source):
    source = FailoverSource([offline_yahoo(), csv_source])
    assert source.name == "yfinance+csv"
    result = source.fetch_prices(["FAILCO", "MSFT"], dt.date(2024, 1, 2), dt.date(2024, 1, 3))
    assert set(result.frame["symbol"]) == {"FAILCO"} and set(result.frame["source"]) == {"csv"}
    assert result.failures == {
        "MSFT": "yfinance: yfinance download failed: ConnectionError: Could not resolve host; "
        "csv: no rows in prices.csv for MSFT between 2024-01-02 and 2024-01-03"
    }
    actions = source.fetch_actions(["FAILCO", "MSFT"], dt.date(2024, 1, 2), dt.date(2024, 1, 3))
    assert actions.frame.empty and list(actions.frame.columns) == list(ACTION_COLUMNS)
    assert set(actions.failures) == {"MSFT"} and actions.failures["MSFT"].startswith("yfinance: ")


def test_a_source_that_raises_fails_only_what_it_was_asked(csv_source, tmp_path):
    broken = tmp_path / "broken.csv"
    broken.write_text("date,symbol,close\n2024-01-02,MSFT,1\n")
    backup = CsvPriceSource(broken)
    broken.write_text("date,symbol,close\n01/02/2024,MSFT,1\n")  # goes bad after the source was built
    result = FailoverSource([csv_source, backup]).fetch_prices(["AAPL", "MSFT"], "2024-01-02", "2024-01-02")
    assert list(result.frame["symbol"]) == ["AAPL"]
    assert result.failures["MSFT"].startswith("csv: no rows in prices.csv for MSFT")
    assert "csv: ValueError: broken.csv: row 1 (line 2), field 'date'" in result.failures["MSFT"]


def test_nothing_to_fetch_is_no_failure(csv_source):
    weekend = FailoverSource([SampleSource(), csv_source]).fetch_prices(["AAPL", "KO"], "2024-01-06", "2024-01-07")
    assert weekend.frame.empty and weekend.failures == {}
    # a source that returns nothing is asked past, and named, when another failed the symbol
    offline = FailoverSource([offline_yahoo(), csv_source]).fetch_fundamentals(["AAPL"])
    assert offline.failures["AAPL"].endswith("; csv: returned nothing")
    # csv has no fundamentals and says so by returning nothing: the sample is asked next
    fundamentals = FailoverSource([csv_source, SampleSource()]).fetch_fundamentals(["AAPL"])
    assert set(fundamentals.frame["symbol"]) == {"AAPL"} and fundamentals.failures == {}
    assert FailoverSource([csv_source]).fetch_fundamentals(["AAPL"]).failures == {}


def test_actions_come_first_from_the_source_of_the_prices(csv_source):
    june = (dt.date(2024, 6, 1), dt.date(2024, 6, 30))
    # csv knows KO (it has older prices) and has its own dividend, but no KO prices in June
    fresh = FailoverSource([csv_source, SampleSource()]).fetch_actions(["KO"], *june)
    assert list(zip(fresh.frame["source"], fresh.frame["value"])) == [("csv", 99.0)]
    source = FailoverSource([csv_source, SampleSource()])
    prices = source.fetch_prices(["KO"], *june)
    assert set(prices.frame["source"]) == {"sample"}
    actions = source.fetch_actions(["KO"], *june)
    assert list(actions.frame["source"]) == ["sample"] and actions.failures == {}
    assert actions.frame["date"].tolist() == [pd.Timestamp("2024-06-17")]  # the sample's ex-date, not the csv's


def test_a_list_spec_builds_a_failover_and_one_element_the_source_itself(tmp_path):
    folder = tmp_path / "vendor,2024"
    folder.mkdir()
    path = folder / "prices,daily.csv"
    path.write_text(PRICES)
    assert isinstance(price_source("sample"), SampleSource)
    single = price_source(f"csv:{path}")
    assert isinstance(single, CsvPriceSource) and single.path == path  # a comma inside a path stays
    both = price_source(f" yfinance , csv:{path} ,sample")
    assert isinstance(both, FailoverSource) and both.name == "yfinance+csv+sample"
    assert both.sources[1].path == path
    assert isinstance(both.sources[0], YFinanceSource) and isinstance(both.sources[2], SampleSource)


@pytest.mark.parametrize(
    ("spec", "elements"),
    [
        ("sample", ["sample"]),
        ("yfinance,csv:/data/backup.csv", ["yfinance", "csv:/data/backup.csv"]),
        ("csv:/data/a,b.csv, sample", ["csv:/data/a,b.csv", "sample"]),
        ("csv:/data/x,sample_prices.csv", ["csv:/data/x,sample_prices.csv"]),  # 'sample' only as a whole element
        ("csv:/a.csv,  csv:/b,c.csv,yfinance", ["csv:/a.csv", "csv:/b,c.csv", "yfinance"]),
    ],
)
def test_commas_split_only_before_a_known_spec(spec, elements):
    assert split_spec(spec) == elements


def test_a_bad_element_is_named(tmp_path):
    # 'bogus' is no spec, so the comma before it does not split: the element is 'yfinance,bogus'
    with pytest.raises(ValueError, match=r"'sample,yfinance,bogus', element 2: unknown price source 'yfinance,bogus'"):
        price_source("sample,yfinance,bogus")
    with pytest.raises(ValueError, match=r"element 2: price source 'csv:'"):
        price_source("sample,csv:")
    with pytest.raises(FileNotFoundError):
        price_source(f"sample,csv:{Path(tmp_path) / 'missing.csv'}")
