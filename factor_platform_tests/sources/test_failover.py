"""FailoverSource and source lists: each price session from the first source that has it, under its own name."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from factor_platform.domain import sessions
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
    assert source.name == "sample+csv:prices.csv" and isinstance(source, PriceSource)
    result = source.fetch_prices(["FAILCO", "SPY"], "2024-01-02", "2024-01-03")
    frame = result.frame
    assert list(frame.columns) == list(PRICE_COLUMNS) and result.failures == {}
    assert list(zip(frame["symbol"], frame["source"])) == [("FAILCO", "csv:prices.csv")] * 2 + [("SPY", "sample")] * 2
    assert frame["close"].tolist()[:2] == [10.0, 11.0]
    profiles = source.fetch_profiles(["FAILCO", "SPY"])
    assert profiles.failures == {} and profiles.frame.set_index("symbol").loc["FAILCO", "name"] == "Fail Company"


def test_each_session_comes_from_exactly_one_source(csv_source):
    # csv answers AAPL for 2024-01-02 only; the sample is asked for the three sessions it lacks
    result = FailoverSource([csv_source, SampleSource()]).fetch_prices(["AAPL"], "2024-01-02", "2024-01-05")
    assert list(result.frame["source"]) == ["csv:prices.csv"] + ["sample"] * 3 and result.failures == {}
    assert result.frame["date"].is_unique and result.frame["close"].iloc[0] == 185.0


def test_offline_first_source_falls_back_and_both_failing_joins_the_reasons(csv_source):
    source = FailoverSource([offline_yahoo(), csv_source])
    assert source.name == "yfinance+csv:prices.csv"
    result = source.fetch_prices(["FAILCO", "MSFT"], dt.date(2024, 1, 2), dt.date(2024, 1, 3))
    assert set(result.frame["symbol"]) == {"FAILCO"} and set(result.frame["source"]) == {"csv:prices.csv"}
    assert result.failures == {
        "MSFT": "yfinance: yfinance download failed: ConnectionError: Could not resolve host; "
        "csv:prices.csv: no rows in prices.csv for MSFT between 2024-01-02 and 2024-01-03"
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
    assert result.failures["MSFT"].startswith("csv:prices.csv: no rows in prices.csv for MSFT")
    assert "; csv:broken.csv: ValueError: broken.csv: row 1 (line 2), field 'date'" in result.failures["MSFT"]


def test_nothing_to_fetch_is_no_failure(csv_source):
    weekend = FailoverSource([SampleSource(), csv_source]).fetch_prices(["AAPL", "KO"], "2024-01-06", "2024-01-07")
    assert weekend.frame.empty and weekend.failures == {}
    # a source that returns nothing is asked past, and named, when another failed the symbol
    offline = FailoverSource([offline_yahoo(), csv_source]).fetch_fundamentals(["AAPL"])
    assert offline.failures["AAPL"].endswith("; csv:prices.csv: returned nothing")
    # csv has no fundamentals and says so by returning nothing: the sample is asked next
    fundamentals = FailoverSource([csv_source, SampleSource()]).fetch_fundamentals(["AAPL"])
    assert set(fundamentals.frame["symbol"]) == {"AAPL"} and fundamentals.failures == {}
    assert FailoverSource([csv_source]).fetch_fundamentals(["AAPL"]).failures == {}


def test_actions_come_first_from_the_source_of_the_prices(csv_source):
    june = (dt.date(2024, 6, 1), dt.date(2024, 6, 30))
    # csv knows KO (it has older prices) and has its own dividend, but no KO prices in June
    fresh = FailoverSource([csv_source, SampleSource()]).fetch_actions(["KO"], *june)
    assert list(zip(fresh.frame["source"], fresh.frame["value"])) == [("csv:prices.csv", 99.0)]
    source = FailoverSource([csv_source, SampleSource()])
    prices = source.fetch_prices(["KO"], *june)
    assert set(prices.frame["source"]) == {"sample"}
    actions = source.fetch_actions(["KO"], *june)
    assert list(actions.frame["source"]) == ["sample"] and actions.failures == {}
    assert actions.frame["date"].tolist() == [pd.Timestamp("2024-06-17")]  # the sample's ex-date, not the csv's


JANUARY = [day.date() for day in sessions.sessions_in_range("2024-01-02", "2024-01-12")]  # 9 sessions
SPAN = (JANUARY[0], JANUARY[-1])


def vendor_file(path: Path, listed: dict[str, list[dt.date]], close: float, actions: str = "") -> CsvPriceSource:
    """A real CSV export with a row per listed (symbol, session), every close ``close`` (a row shows its file)."""
    lines = ["date,symbol,close", *(f"{day},{symbol},{close}" for symbol, days in listed.items() for day in days)]
    path.write_text("\n".join(lines) + "\n")
    if actions:
        path.with_name(f"{path.stem}.actions.csv").write_text("symbol,date,kind,value\n" + actions)
    return CsvPriceSource(path)


class Recording:
    """A source whose price requests are recorded on their way to it (the source itself answers)."""

    def __init__(self, source: PriceSource) -> None:
        self.source, self.name, self.calendar = source, source.name, source.calendar
        self.requests: list[tuple[list[str], dt.date, dt.date]] = []

    def fetch_prices(self, symbols, start, end):
        self.requests.append((list(symbols), start, end))
        return self.source.fetch_prices(symbols, start, end)

    def __getattr__(self, name):
        return getattr(self.source, name)


def days_of(frame: pd.DataFrame, symbol: str, source: str | None = None) -> list[dt.date]:
    rows = frame.loc[(frame["symbol"] == symbol) & ((frame["source"] == source) if source else True)]
    return [day.date() for day in rows["date"]]


def test_sessions_the_first_source_lacks_are_asked_of_the_next(tmp_path):
    gaps = [JANUARY[3], *JANUARY[-4:]]  # a middle session and the last four: the usual partial outage
    a = vendor_file(tmp_path / "a.csv", {"AAA": [day for day in JANUARY if day not in gaps]}, 10.0)
    b = Recording(vendor_file(tmp_path / "b.csv", {"AAA": JANUARY, "BBB": JANUARY}, 20.0))
    source = FailoverSource([a, b])
    result = source.fetch_prices(["AAA", "BBB", "CCC"], *SPAN)
    frame = result.frame
    assert list(frame.columns) == list(PRICE_COLUMNS) and not frame.duplicated(["symbol", "date"]).any()
    assert days_of(frame, "AAA") == JANUARY  # every session, none twice
    assert days_of(frame, "AAA", "csv:b.csv") == gaps
    assert days_of(frame, "AAA", "csv:a.csv") == [day for day in JANUARY if day not in gaps]
    np.testing.assert_array_equal(frame["close"], np.where(frame["source"] == "csv:b.csv", 20.0, 10.0))
    assert days_of(frame, "BBB", "csv:b.csv") == JANUARY == days_of(frame, "BBB")  # a lacks it: wholly b's
    assert result.failures == {
        "CCC": "csv:a.csv: no rows in a.csv for CCC between 2024-01-02 and 2024-01-12; "
        "csv:b.csv: no rows in b.csv for CCC between 2024-01-02 and 2024-01-12"
    }
    # one request to b, for the symbols lacking sessions; alone, AAA is asked over the span of its gaps
    assert b.requests == [(["AAA", "BBB", "CCC"], *SPAN)]
    again = source.fetch_prices(["AAA"], *SPAN)
    assert b.requests[-1] == (["AAA"], JANUARY[3], JANUARY[-1]) and again.frame.equals(frame.iloc[:9])
    complete = source.fetch_prices(["AAA"], JANUARY[0], JANUARY[2])
    assert len(b.requests) == 2 and set(complete.frame["source"]) == {"csv:a.csv"}  # nothing lacking: b not asked


def test_a_session_no_source_has_stays_absent_and_a_later_listing_is_asked_of_the_next(tmp_path):
    a = vendor_file(tmp_path / "a.csv", {"GAP": JANUARY[:6], "LATE": JANUARY[4:]}, 10.0)
    b = vendor_file(tmp_path / "b.csv", {"GAP": JANUARY[:7] + JANUARY[8:], "LATE": JANUARY[2:]}, 20.0)
    result = FailoverSource([a, b]).fetch_prices(["GAP", "LATE"], *SPAN)
    # neither has GAP on JANUARY[7]: the session stays absent (nothing invented), and GAP is no failure
    assert days_of(result.frame, "GAP") == JANUARY[:7] + JANUARY[8:] and result.failures == {}
    assert days_of(result.frame, "GAP", "csv:b.csv") == [JANUARY[6], JANUARY[8]]
    # a lists LATE from JANUARY[4]; b has it from JANUARY[2], and nobody before
    assert days_of(result.frame, "LATE", "csv:b.csv") == JANUARY[2:4]
    assert days_of(result.frame, "LATE", "csv:a.csv") == JANUARY[4:]


def test_actions_come_first_from_the_source_of_the_latest_price_row(tmp_path):
    # a supplies most of AAA's rows, b the latest four, and b knows of a split in a's outage
    a = vendor_file(tmp_path / "a.csv", {"AAA": JANUARY[:-4]}, 10.0, actions="AAA,2024-01-08,dividend,1\n")
    b = vendor_file(tmp_path / "b.csv", {"AAA": JANUARY}, 20.0, actions="AAA,2024-01-10,split,2\n")
    source = FailoverSource([a, b])
    assert list(source.fetch_prices(["AAA"], *SPAN).frame["source"]) == ["csv:a.csv"] * 5 + ["csv:b.csv"] * 4
    actions = source.fetch_actions(["AAA"], *SPAN).frame
    assert list(zip(actions["kind"], actions["source"])) == [("split", "csv:b.csv")]
    assert set(source.fetch_prices(["AAA"], JANUARY[0], JANUARY[4]).frame["source"]) == {"csv:a.csv"}
    actions = source.fetch_actions(["AAA"], *SPAN).frame
    assert list(zip(actions["kind"], actions["source"])) == [("dividend", "csv:a.csv")]


def test_a_list_spec_builds_a_failover_and_one_element_the_source_itself(tmp_path):
    folder = tmp_path / "vendor,2024"
    folder.mkdir()
    path = folder / "prices,daily.csv"
    path.write_text(PRICES)
    assert isinstance(price_source("sample"), SampleSource)
    single = price_source(f"csv:{path}")
    assert isinstance(single, CsvPriceSource) and single.path == path  # a comma inside a path stays
    both = price_source(f" yfinance , csv:{path} ,sample")
    assert isinstance(both, FailoverSource) and both.name == "yfinance+csv:prices,daily.csv+sample"
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


def test_the_universe_of_csv_exports_is_their_union_and_an_open_ended_source_has_none(tmp_path):
    a = vendor_file(tmp_path / "a.csv", {"AAA": JANUARY}, 10.0)
    b = vendor_file(tmp_path / "b.csv", {"AAA": JANUARY, "BBB": JANUARY}, 20.0)
    assert FailoverSource([a, b]).symbols() == ["AAA", "BBB"]  # the backup's own symbols are in the universe
    assert FailoverSource([offline_yahoo(), b]).symbols() == []  # yfinance names none: no universe
