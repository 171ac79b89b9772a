"""The csv source: a vendor export, validated up front, opened only where it was pointed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from factor_platform.sources import PRICE_COLUMNS, PROFILE_COLUMNS, CsvPriceSource, price_source

GOOD = """\
Date, Symbol ,close,open,high,low,volume,Adj Close,vendor_note
2024-01-02, AAPL ,185.64,187.15,188.44,183.89,82488700,184.94,x
2024-01-03,AAPL,184.25,184.22,185.88,183.43,58414500,183.56,
2024-01-06,AAPL,186.00,,,,,,saturday: not a session

2024-01-02,MSFT,370.87,373.86,375.90,366.77,25258600,368.52,
2024-01-02,MSFT,370.87,373.86,375.90,366.77,25258600,368.52,exact repeat
2024-01-04,MSFT,367.94,,,,,,
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def prices_csv(tmp_path) -> Path:
    return write(tmp_path / "prices.csv", GOOD)


def test_reads_valid_rows_on_sessions_only(prices_csv):
    result = CsvPriceSource(prices_csv).fetch_prices(["MSFT", "AAPL", "NOPE"], "2024-01-01", "2024-01-31")
    frame = result.frame
    assert list(frame.columns) == list(PRICE_COLUMNS)
    assert frame["date"].dtype == "datetime64[ns]" and str(frame["volume"].dtype) == "Int64"
    assert list(zip(frame["symbol"], frame["date"].dt.strftime("%Y-%m-%d"))) == [
        ("AAPL", "2024-01-02"),
        ("AAPL", "2024-01-03"),
        ("MSFT", "2024-01-02"),
        ("MSFT", "2024-01-04"),
    ]
    first = frame.iloc[0]
    assert (first["open"], first["high"], first["low"], first["close"], first["adj_close"], first["volume"]) == (
        187.15,
        188.44,
        183.89,
        185.64,
        184.94,
        82488700,
    )
    last = frame.iloc[-1]  # optional fields left empty stay missing; nothing is filled in
    assert last["close"] == 367.94 and np.isnan(last["open"]) and np.isnan(last["adj_close"])
    assert pd.isna(last["volume"])
    assert (frame["source"] == "csv:prices.csv").all()
    assert result.failures == {"NOPE": "no rows in prices.csv for NOPE between 2024-01-01 and 2024-01-31"}


def test_range_filter_and_failures(prices_csv):
    source = CsvPriceSource(prices_csv)
    result = source.fetch_prices(["AAPL", "MSFT"], "2024-01-04", "2024-01-31")
    assert list(result.frame["symbol"]) == ["MSFT"]
    assert result.failures == {"AAPL": "no rows in prices.csv for AAPL between 2024-01-04 and 2024-01-31"}
    weekend = source.fetch_prices(["AAPL"], "2024-01-06", "2024-01-07")  # no session: nothing is missing
    assert weekend.frame.empty and weekend.failures == {}


def test_required_columns_only(tmp_path):
    path = write(tmp_path / "min.csv", "symbol,date,close\nSPY,2024-01-02,472.65\n")
    frame = CsvPriceSource(path).fetch_prices(["SPY"], "2024-01-02", "2024-01-02").frame
    assert frame["close"].tolist() == [472.65]
    assert frame[["open", "high", "low", "adj_close"]].isna().all().all() and frame["volume"].isna().all()


def _error(tmp_path, text: str) -> str:
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(ValueError) as info:
        CsvPriceSource(path).fetch_prices(["AAPL"], "2024-01-01", "2024-01-31")
    return str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("date,symbol,open\n2024-01-02,AAPL,1\n", ["bad.csv", "line 1 (header)", "missing required column", "'close'"]),
        (
            "date,symbol,close\n2024-01-02,AAPL,1\n01/03/2024,AAPL,2\n",
            ["row 2 (line 3)", "field 'date'", "'01/03/2024'", "YYYY-MM-DD"],
        ),
        ("date,symbol,close\n2024-02-30,AAPL,1\n", ["row 1 (line 2)", "field 'date'"]),
        ("date,symbol,close\n2024-01-02,AAPL,abc\n", ["row 1 (line 2)", "field 'close'", "'abc' is not a number"]),
        ("date,symbol,close\n2024-01-02,AAPL,-3\n", ["row 1 (line 2)", "field 'close'", "must be positive"]),
        ("date,symbol,close\n2024-01-02,AAPL,0\n", ["field 'close'", "must be positive"]),
        ("date,symbol,close\n2024-01-02,AAPL,\n", ["field 'close'", "is empty"]),
        ("date,symbol,close\n2024-01-02,AAPL,nan\n", ["field 'close'", "not a number"]),
        ("date,symbol,close\n2024-01-02, ,1\n", ["row 1 (line 2)", "field 'symbol'"]),
        ("date,symbol,close,open\n2024-01-02,AAPL,1,x\n", ["field 'open'", "'x' is not a number"]),
        ("date,symbol,close,volume\n2024-01-02,AAPL,1,-5\n", ["field 'volume'", "must not be negative"]),
        (
            "date,symbol,close\n2024-01-02,AAPL,1\n2024-01-03,AAPL,2\n2024-01-02,AAPL,1.5\n",
            ["row 3 (line 4)", "field 'close'", "row 1 (line 2)", "AAPL", "2024-01-02"],
        ),
        ("", ["bad.csv", "empty"]),
    ],
)
def test_validation_errors_name_row_and_field(tmp_path, text, expected):
    message = _error(tmp_path, text)
    for part in expected:
        assert part in message, (part, message)


def test_blank_lines_keep_row_numbers_honest_and_all_problems_are_listed(tmp_path):
    message = _error(tmp_path, "date,symbol,close\n2024-01-02,AAPL,1\n\n2024-01-04,AAPL,x\n2024-1-5,AAPL,2\n")
    assert "2 invalid values" in message
    assert "row 3 (line 4), field 'close'" in message and "row 4 (line 5), field 'date'" in message


def test_refuses_a_directory_and_a_symlink_outside_its_directory(tmp_path, prices_csv):
    with pytest.raises(ValueError, match="directory"):
        CsvPriceSource(tmp_path)
    outside = write(tmp_path / "secret.csv", GOOD)
    exports = tmp_path / "exports"
    exports.mkdir()
    (exports / "escape.csv").symlink_to(outside)
    with pytest.raises(ValueError, match="symbolic link pointing outside"):
        CsvPriceSource(exports / "escape.csv")
    (exports / "to_dir.csv").symlink_to(exports, target_is_directory=True)
    with pytest.raises(ValueError, match="directory"):
        CsvPriceSource(exports / "to_dir.csv")
    with pytest.raises(FileNotFoundError):
        CsvPriceSource(tmp_path / "missing.csv")
    # a link inside the same directory is fine
    write(exports / "2024.csv", GOOD)
    (exports / "latest.csv").symlink_to(exports / "2024.csv")
    assert not CsvPriceSource(exports / "latest.csv").fetch_prices(["AAPL"], "2024-01-02", "2024-01-02").frame.empty


def test_refuses_a_profiles_symlink_outside_its_directory(tmp_path):
    exports = tmp_path / "exports"
    exports.mkdir()
    path = write(exports / "prices.csv", GOOD)
    (exports / "prices.profiles.csv").symlink_to(write(tmp_path / "elsewhere.csv", "symbol\nAAPL\n"))
    with pytest.raises(ValueError, match="outside"):
        CsvPriceSource(path)


def test_profiles_from_the_derived_file(prices_csv):
    write(
        prices_csv.with_name("prices.profiles.csv"),
        "symbol,name,sector,industry,market_cap,currency\nAAPL,Apple Inc.,Information Technology,"
        "Technology Hardware,2.9e12,USD\nMSFT,Microsoft,,,,USD\n",
    )
    result = CsvPriceSource(prices_csv).fetch_profiles(["AAPL", "MSFT", "NOPE"])
    assert list(result.frame.columns) == list(PROFILE_COLUMNS)
    aapl, msft = result.frame.iloc[0], result.frame.iloc[1]
    assert (aapl["name"], aapl["sector"], aapl["market_cap"]) == ("Apple Inc.", "Information Technology", 2.9e12)
    assert msft["sector"] is None and np.isnan(msft["market_cap"])
    assert result.failures == {"NOPE": "no profile for NOPE in prices.profiles.csv"}


def test_profiles_missing_file_and_bad_rows(prices_csv):
    source = CsvPriceSource(prices_csv)
    result = source.fetch_profiles(["AAPL"])
    assert result.frame.empty and "no profiles file prices.profiles.csv" in result.failures["AAPL"]
    write(prices_csv.with_name("prices.profiles.csv"), "symbol,market_cap\nAAPL,lots\n")
    with pytest.raises(ValueError, match=r"row 1 \(line 2\), field 'market_cap'"):
        source.fetch_profiles(["AAPL"])


def test_fundamentals_are_empty_without_failures(prices_csv):
    result = CsvPriceSource(prices_csv).fetch_fundamentals(["AAPL"])
    assert result.frame.empty and result.failures == {}
    assert list(result.frame.columns) == ["symbol", "period_end", "metric", "value"]


def test_a_changed_file_is_read_again(prices_csv):
    source = CsvPriceSource(prices_csv)
    assert source.fetch_prices(["SPY"], "2024-01-02", "2024-01-02").failures
    write(prices_csv, "date,symbol,close\n2024-01-02,SPY,472.65\n")
    os.utime(prices_csv, ns=(1, 1_700_000_000_000_000_000))
    assert source.fetch_prices(["SPY"], "2024-01-02", "2024-01-02").frame["close"].tolist() == [472.65]


def test_price_source_spec(prices_csv):
    source = price_source(f"csv:{prices_csv}")
    # named by the file name only: two exports differ, and the directories (maybe private) stay out
    assert isinstance(source, CsvPriceSource) and source.name == "csv:prices.csv"
    assert source.fetch_prices(["AAPL"], "2024-01-02", "2024-01-03").frame.shape[0] == 2


def test_symbols_are_normalized_as_a_book_does(tmp_path):
    path = write(tmp_path / "p.csv", "date,symbol,close\n2024-01-02, aapl ,185.64\n2024-01-03,Aapl,184.25\n")
    write(tmp_path / "p.profiles.csv", "symbol,name\nbrk-b,Berkshire\n")
    source = CsvPriceSource(path)
    result = source.fetch_prices(["AAPL"], "2024-01-01", "2024-01-31")
    assert list(result.frame["symbol"]) == ["AAPL", "AAPL"] and result.failures == {}
    assert result.frame["close"].tolist() == [185.64, 184.25] and source.symbols() == ["AAPL"]
    assert source.fetch_profiles(["BRK-B"]).frame["name"].tolist() == ["Berkshire"]


def test_one_symbol_spelled_twice_on_a_date_is_refused(tmp_path):
    message = _error(tmp_path, "date,symbol,close\n2024-01-02,AAPL,1\n2024-01-02,aapl,1\n")
    for part in ["bad.csv", "row 2 (line 3)", "field 'symbol'", "'aapl'", "'AAPL'", "symbol='AAPL'", "date=2024-01-02"]:
        assert part in message, (part, message)


ACTIONS = """\
symbol,date,kind,value
aapl,2020-08-31,split,4
AAPL,2024-02-09,Dividend,0.24
MSFT,2024-02-14,dividend,0.75
OTHER,2024-02-14,dividend,1
"""


def test_actions_from_the_derived_file(prices_csv):
    write(prices_csv.with_name("prices.actions.csv"), ACTIONS)
    source = CsvPriceSource(prices_csv)
    result = source.fetch_actions(["AAPL", "MSFT", "NOPE"], "2020-01-01", "2024-12-31")
    got = [(r.symbol, r.date.date().isoformat(), r.kind, r.value, r.source) for r in result.frame.itertuples()]
    assert got == [
        ("AAPL", "2020-08-31", "split", 4.0, "csv:prices.csv"),
        ("AAPL", "2024-02-09", "dividend", 0.24, "csv:prices.csv"),
        ("MSFT", "2024-02-14", "dividend", 0.75, "csv:prices.csv"),
    ]
    assert result.failures == {"NOPE": "no rows in prices.csv for NOPE"}  # the file does not know it
    in_range = source.fetch_actions(["AAPL", "MSFT"], "2024-01-01", "2024-02-10")
    assert list(in_range.frame["kind"]) == ["dividend"] and in_range.failures == {}


def test_without_an_actions_file_no_symbol_has_actions(prices_csv):
    result = CsvPriceSource(prices_csv).fetch_actions(["AAPL", "NOPE"], "2024-01-01", "2024-12-31")
    assert result.frame.empty and list(result.frame.columns) == ["symbol", "date", "kind", "value", "source"]
    assert set(result.failures) == {"NOPE"}


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("AAPL,2024-02-09,bonus,1", ["field 'kind'", "'bonus'", "split", "dividend"]),
        ("AAPL,2024-02-09,split,0", ["field 'value'", "must be positive"]),
        ("AAPL,2024-02-09,dividend,", ["field 'value'", "is empty"]),
        ("AAPL,02/09/2024,dividend,0.2", ["field 'date'", "YYYY-MM-DD"]),
        (",2024-02-09,dividend,0.2", ["field 'symbol'", "is empty"]),
        ("aapl,2024-02-09,dividend,0.2", ["field 'symbol'", "'aapl'", "one symbol"]),
    ],
)
def test_a_bad_actions_line_is_refused_by_line(prices_csv, line, expected):
    write(prices_csv.with_name("prices.actions.csv"), f"symbol,date,kind,value\nAAPL,2024-02-09,dividend,0.2\n{line}\n")
    with pytest.raises(ValueError) as info:
        CsvPriceSource(prices_csv).fetch_actions(["AAPL"], "2024-01-01", "2024-12-31")
    message = str(info.value)
    for part in ["prices.actions.csv", "row 2 (line 3)", *expected]:
        assert part in message, (part, message)


def test_an_actions_symlink_outside_its_directory_is_refused(tmp_path):
    exports = tmp_path / "exports"
    exports.mkdir()
    path = write(exports / "prices.csv", GOOD)
    (exports / "prices.actions.csv").symlink_to(write(tmp_path / "elsewhere.csv", ACTIONS))
    with pytest.raises(ValueError, match="outside"):
        CsvPriceSource(path)
