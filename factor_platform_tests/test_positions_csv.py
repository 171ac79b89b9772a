"""Positions CSV: every rule of contract §2, one bad row at a time, and a fuzz of mutated files."""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from factor_platform.domain.positions import OPTIONAL_COLUMNS, POSITION_COLUMNS, REQUIRED_COLUMNS
from factor_platform.domain.positions_csv import PositionsCsvError, Problem, parse_positions_csv
from factor_platform.domain.symbols import SYMBOL_PATTERN, InvalidPortfolioIdError, validate_symbol

TODAY = dt.date(2025, 6, 30)
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS

# One row of every kind (values as a user writes them).
STOCK = {
    "symbol": "AAPL",
    "quantity": "100",
    "position_type": "LONG",
    "investment_class": "PUBLIC",
    "entry_price": "150.25",
    "entry_date": "2024-01-02",
    "sector": "Technology",
}
SHORT = {
    "symbol": "TSLA",
    "quantity": "10",
    "position_type": "SHORT",
    "investment_class": "PUBLIC",
    "entry_price": "250",
    "entry_date": "2024-02-01",
    "exit_date": "2024-03-01",
    "exit_price": "180.5",
}
CALL = {
    "symbol": "AAPL250117C00150000",
    "quantity": "2",
    "position_type": "LC",
    "investment_class": "OPTIONS",
    "entry_price": "12.5",
    "entry_date": "2024-03-15",
    "underlying": "AAPL",
    "strike": "150",
    "expiration": "2025-01-17",
}
PUT = {
    "symbol": "SPY_PUT_450",
    "quantity": "3",
    "position_type": "sp",
    "investment_class": "options",
    "entry_price": "4.1",
    "entry_date": "2024-04-01",
    "underlying": "SPY",
    "strike": "450",
    "expiration": "2024-12-20",
    "option_type": "put",
}
PRIVATE = {
    "symbol": "ACME-PRIV",
    "quantity": "1000",
    "position_type": "LONG",
    "investment_class": "PRIVATE",
    "entry_price": "10",
    "entry_date": "2023-06-30",
    "manual_market_value": "12500.5",
}
GOOD_ROWS = [STOCK, SHORT, CALL, PUT, PRIVATE]


def to_csv(rows, columns=COLUMNS, *, line_end="\n") -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=line_end)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row.get(column, "") for column in columns])
    return buffer.getvalue()


def parse(source, **kwargs) -> pd.DataFrame:
    kwargs.setdefault("portfolio_id", "main")
    kwargs.setdefault("today", TODAY)
    return parse_positions_csv(source, **kwargs)


def problems_of(source, **kwargs) -> PositionsCsvError:
    with pytest.raises(PositionsCsvError) as info:
        parse(source, **kwargs)
    assert info.value.problems, "an error without problems"
    return info.value


# ----------------------------------------------------------------------------- good files


def test_a_good_file_gives_the_positions_table():
    frame = parse(to_csv(GOOD_ROWS))
    assert list(frame.columns) == list(POSITION_COLUMNS)
    assert frame["position_id"].tolist() == ["main:1", "main:2", "main:3", "main:4", "main:5"]
    assert (frame["portfolio_id"] == "main").all()
    assert frame["symbol"].tolist() == ["AAPL", "TSLA", "AAPL250117C00150000", "SPY_PUT_450", "ACME-PRIV"]
    assert frame["position_type"].tolist() == ["LONG", "SHORT", "LC", "SP", "LONG"]
    assert frame["investment_class"].tolist() == ["PUBLIC", "PUBLIC", "OPTIONS", "OPTIONS", "PRIVATE"]
    assert frame["quantity"].tolist() == [100.0, 10.0, 2.0, 3.0, 1000.0]
    assert frame["entry_price"].tolist() == [150.25, 250.0, 12.5, 4.1, 10.0]
    assert frame["entry_date"].tolist() == [
        pd.Timestamp(d) for d in ["2024-01-02", "2024-02-01", "2024-03-15", "2024-04-01", "2023-06-30"]
    ]
    assert frame["exit_date"].isna().tolist() == [True, False, True, True, True]
    assert frame.loc[1, "exit_date"] == pd.Timestamp("2024-03-01") and frame.loc[1, "exit_price"] == 180.5
    assert frame["underlying"].tolist() == [None, None, "AAPL", "SPY", None]
    assert frame.loc[2, "strike"] == 150.0 and frame.loc[3, "strike"] == 450.0
    assert frame.loc[2, "expiration"] == pd.Timestamp("2025-01-17")
    # option_type is derived when absent and normalized when given.
    assert frame["option_type"].tolist() == [None, None, "CALL", "PUT", None]
    assert frame["manual_market_value"].isna().tolist() == [True, True, True, True, False]
    assert frame.loc[4, "manual_market_value"] == 12500.5
    assert frame["sector"].tolist() == ["Technology", None, None, None, None]
    dtypes = frame.dtypes.astype(str).to_dict()
    for column in ("entry_date", "exit_date", "expiration"):
        assert dtypes[column] == "datetime64[ns]"
    for column in ("quantity", "entry_price", "exit_price", "strike", "manual_market_value"):
        assert dtypes[column] == "float64"
    for column in ("position_id", "portfolio_id", "symbol", "underlying", "option_type", "sector"):
        assert dtypes[column] == "object"


def test_only_the_required_columns_are_needed():
    frame = parse(to_csv([STOCK, SHORT | {"exit_date": "", "exit_price": ""}], REQUIRED_COLUMNS))
    assert len(frame) == 2
    assert frame["exit_date"].isna().all() and frame["sector"].isna().all()


def test_two_rows_with_the_same_symbol_and_entry_date_are_two_lots():
    frame = parse(to_csv([STOCK, STOCK | {"quantity": "50", "entry_price": "151"}]))
    assert frame["position_id"].tolist() == ["main:1", "main:2"]
    assert frame["quantity"].tolist() == [100.0, 50.0]


def test_an_entry_date_that_is_not_a_session_is_valid():
    rows = [STOCK | {"entry_date": "2024-07-04"}, STOCK | {"entry_date": "2024-07-06"}]  # holiday, Saturday
    frame = parse(to_csv(rows))
    assert frame["entry_date"].tolist() == [pd.Timestamp("2024-07-04"), pd.Timestamp("2024-07-06")]


def test_reimporting_gives_the_same_ids_and_empty_rows_keep_the_numbering():
    text = to_csv([STOCK]) + ",,,,,,,,,,,,,\n" + to_csv([SHORT]).split("\n", 1)[1] + "\n"
    first, second = parse(text), parse(text)
    pd.testing.assert_frame_equal(first, second)
    # position P:n is on spreadsheet row n + 1: the empty row 3 is skipped but counted.
    assert first["position_id"].tolist() == ["main:1", "main:3"]


def test_tolerated_forms():
    text = to_csv(GOOD_ROWS, line_end="\r\n")
    text = text.replace("symbol,quantity", " Symbol , QUANTITY", 1)
    frame = parse(("\ufeff" + text).encode("utf-8"))  # BOM, CRLF, header case and spaces
    assert len(frame) == 5
    spaced = to_csv(
        [STOCK | {"symbol": " aapl ", "quantity": " 1e2 ", "position_type": "long", "investment_class": "Public"}]
    )
    frame = parse(spaced)
    assert (frame.loc[0, "symbol"], frame.loc[0, "quantity"], frame.loc[0, "position_type"]) == ("AAPL", 100.0, "LONG")
    quoted = to_csv([STOCK | {"sector": 'Consumer, "Cyclical"'}])
    assert parse(quoted).loc[0, "sector"] == 'Consumer, "Cyclical"'


def test_rows_are_records_as_a_spreadsheet_shows_them():
    # A quoted field spanning two lines is one row: the next row is still row 3.
    error = problems_of(to_csv([STOCK | {"sector": "two\nlines"}, STOCK | {"quantity": "-1"}]))
    assert [(p.row, p.field) for p in error.problems] == [(2, "sector"), (3, "quantity")]


def test_a_path_is_read_and_named_in_the_message(tmp_path):
    path = tmp_path / "positions.csv"
    path.write_text(to_csv(GOOD_ROWS), encoding="utf-8")
    assert len(parse(path)) == 5
    assert len(parse(str(path))) == 5
    path.write_text(to_csv([STOCK | {"quantity": "-5"}]), encoding="utf-8")
    error = problems_of(path)
    assert str(path) in str(error)
    assert "row 2, field quantity: must be a positive number, got '-5'" in str(error)


def test_a_missing_file_is_a_problem_not_a_crash(tmp_path):
    error = problems_of(tmp_path / "nope.csv")
    assert error.problems[0].row == 0 and "cannot be read" in str(error)


def test_the_portfolio_id_is_validated():
    with pytest.raises(InvalidPortfolioIdError):
        parse(to_csv(GOOD_ROWS), portfolio_id="a|b")


# ----------------------------------------------------------------------------- bad rows


BAD_ROWS = [
    # (row, field, expected words in the reason)
    (STOCK | {"symbol": ""}, "symbol", "is required"),
    (STOCK | {"symbol": "A|B"}, "symbol", "'|'"),
    (STOCK | {"symbol": "A,B"}, "symbol", "','"),
    (STOCK | {"symbol": "A'B"}, "symbol", '"\'"'),
    (STOCK | {"symbol": "AAPL; DROP TABLE positions"}, "symbol", "';'"),
    (STOCK | {"symbol": "ÄPFEL"}, "symbol", "non-ASCII"),
    (STOCK | {"symbol": "A" * 40}, "symbol", "longer than 32"),
    (PRIVATE | {"symbol": "acme private"}, "symbol", "' '"),
    (STOCK | {"quantity": ""}, "quantity", "is required"),
    (STOCK | {"quantity": "-5"}, "quantity", "must be a positive number, got '-5'"),
    (STOCK | {"quantity": "0"}, "quantity", "positive"),
    (STOCK | {"quantity": "abc"}, "quantity", "plain notation"),
    (STOCK | {"quantity": "1,000"}, "quantity", "thousands separators"),
    (STOCK | {"quantity": "0x10"}, "quantity", "plain notation"),
    (STOCK | {"quantity": "nan"}, "quantity", "plain notation"),
    (STOCK | {"quantity": "inf"}, "quantity", "plain notation"),
    (STOCK | {"quantity": "1e400"}, "quantity", "at most"),
    (STOCK | {"quantity": "1_000"}, "quantity", "plain notation"),
    (STOCK | {"quantity": "$100"}, "quantity", "plain notation"),
    (STOCK | {"quantity": "١٢"}, "quantity", "plain notation"),  # Arabic-Indic digits: float() would take them
    (STOCK | {"position_type": "BUY"}, "position_type", "must be one of LONG, SHORT, LC, LP, SC, SP"),
    (STOCK | {"position_type": ""}, "position_type", "is required"),
    (STOCK | {"position_type": "ſhort"}, "position_type", "must be one of"),  # "ſ".upper() == "S"
    (STOCK | {"investment_class": "EQUITY"}, "investment_class", "PUBLIC, OPTIONS, PRIVATE"),
    (STOCK | {"position_type": "LC"}, "position_type", "needs investment_class OPTIONS"),
    (PRIVATE | {"position_type": "SP"}, "position_type", "needs investment_class OPTIONS"),
    (CALL | {"position_type": "LONG"}, "position_type", "option rows use LC, LP, SC or SP"),
    (STOCK | {"entry_price": ""}, "entry_price", "is required"),
    (STOCK | {"entry_price": "-1"}, "entry_price", "non-negative"),
    (STOCK | {"entry_price": "0"}, "entry_price", "positive for PUBLIC"),
    (STOCK | {"entry_date": ""}, "entry_date", "is required"),
    (STOCK | {"entry_date": "01/02/2024"}, "entry_date", "YYYY-MM-DD"),
    (STOCK | {"entry_date": "2024-1-2"}, "entry_date", "YYYY-MM-DD"),
    (STOCK | {"entry_date": "20240102"}, "entry_date", "YYYY-MM-DD"),
    (STOCK | {"entry_date": "2024-01-02T00:00"}, "entry_date", "YYYY-MM-DD"),
    (STOCK | {"entry_date": "2024-02-30"}, "entry_date", "not a calendar date"),
    (STOCK | {"entry_date": "1989-12-29"}, "entry_date", "before 1990-01-01"),
    (STOCK | {"entry_date": "2025-07-01"}, "entry_date", "in the future"),
    (SHORT | {"exit_date": "2024-01-31"}, "exit_date", "before entry_date 2024-02-01"),
    (SHORT | {"exit_date": "2025-07-01"}, "exit_date", "in the future"),
    (SHORT | {"exit_date": "03/01/2024"}, "exit_date", "YYYY-MM-DD"),
    (SHORT | {"exit_price": ""}, "exit_price", "required when exit_date is given"),
    (SHORT | {"exit_date": ""}, "exit_date", "required when exit_price is given"),
    (SHORT | {"exit_price": "-3"}, "exit_price", "non-negative"),
    (CALL | {"underlying": ""}, "underlying", "required for OPTIONS"),
    (CALL | {"underlying": "AA PL"}, "underlying", "' '"),
    (CALL | {"strike": ""}, "strike", "required for OPTIONS"),
    (CALL | {"strike": "0"}, "strike", "positive"),
    (CALL | {"strike": "-150"}, "strike", "positive"),
    (CALL | {"expiration": ""}, "expiration", "required for OPTIONS"),
    (CALL | {"expiration": "Jan 2025"}, "expiration", "YYYY-MM-DD"),
    (PUT | {"expiration": "2024-03-01"}, "expiration", "before entry_date"),
    (PUT | {"symbol": "spy"}, "symbol", "not its underlying SPY"),
    (PUT | {"option_type": "CALL"}, "option_type", "disagrees with position_type SP"),
    (CALL | {"option_type": "PUT"}, "option_type", "disagrees with position_type LC"),
    (PUT | {"option_type": "P"}, "option_type", "CALL, PUT"),
    (CALL | {"position_type": "LP"}, "symbol", "is a CALL"),  # the OCC symbol says call
    (CALL | {"strike": "155"}, "symbol", "strike 150"),
    (CALL | {"expiration": "2025-01-24"}, "symbol", "expires 2025-01-17"),
    (STOCK | {"underlying": "AAPL"}, "underlying", "only for OPTIONS"),
    (STOCK | {"strike": "100"}, "strike", "only for OPTIONS"),
    (PRIVATE | {"expiration": "2025-01-17"}, "expiration", "only for OPTIONS"),
    (STOCK | {"option_type": "CALL"}, "option_type", "only for OPTIONS"),
    (PRIVATE | {"manual_market_value": ""}, "manual_market_value", "required for PRIVATE"),
    (PRIVATE | {"manual_market_value": "0"}, "manual_market_value", "positive"),
    (PRIVATE | {"manual_market_value": "12,500"}, "manual_market_value", "thousands separators"),
    (STOCK | {"manual_market_value": "100"}, "manual_market_value", "only for PRIVATE"),
    (STOCK | {"sector": "x" * 65}, "sector", "longer than 64"),
    (STOCK | {"sector": "Tech\x00"}, "sector", "control characters"),
]


@pytest.mark.parametrize("bad, field, words", BAD_ROWS)
def test_every_bad_row_is_named_with_its_field_and_nothing_is_returned(bad, field, words):
    error = problems_of(to_csv([STOCK, bad, PRIVATE]))  # the bad row is spreadsheet row 3
    message = str(error)
    assert f"row 3, field {field}: " in message
    assert words in message
    assert any(p.row == 3 and p.field == field and words in p.reason for p in error.problems)
    assert all(p.row == 3 for p in error.problems), error.problems
    assert isinstance(error, ValueError)


def test_every_problem_of_every_row_is_listed():
    rows = [
        STOCK | {"quantity": "-5"},
        STOCK,
        SHORT | {"entry_date": "01/02/2024", "position_type": "SELL"},
        CALL | {"strike": ""},
    ]
    error = problems_of(to_csv(rows))
    assert [(p.row, p.field) for p in error.problems] == [
        (2, "quantity"),
        (4, "position_type"),
        (4, "entry_date"),
        (5, "strike"),
    ]
    for problem in error.problems:
        assert str(problem) in str(error)
    assert str(error.problems[0]) == "row 2, field quantity: must be a positive number, got '-5'"
    assert str(error).startswith("positions CSV: 4 problems")


def test_the_message_stays_readable_with_thousands_of_problems():
    error = problems_of(to_csv([STOCK | {"quantity": "x"}] * 2000))
    assert len(error.problems) == 2000
    assert "and 1900 more" in str(error)


# ----------------------------------------------------------------------------- header and file


def test_a_missing_required_column_is_a_header_problem():
    columns = tuple(c for c in COLUMNS if c != "entry_date")
    error = problems_of(to_csv([STOCK], columns))
    assert [(p.row, p.field) for p in error.problems] == [(1, "entry_date")]
    assert "row 1, field entry_date: required column is missing" in str(error)


def test_an_unknown_column_is_named_and_a_near_miss_suggested():
    text = to_csv([STOCK], REQUIRED_COLUMNS).replace("quantity", "qty", 1)
    error = problems_of(text)
    assert "row 1, field qty: unknown column (did you mean 'quantity'?)" in str(error)
    assert (1, "quantity") in [(p.row, p.field) for p in error.problems]
    error = problems_of(to_csv([STOCK | {"notes": "x"}], COLUMNS + ("notes",)))
    assert "row 1, field notes: unknown column" in str(error)


def test_a_duplicate_column_is_a_problem():
    error = problems_of(to_csv([STOCK], REQUIRED_COLUMNS + ("Symbol",)))
    assert "row 1, field symbol: column appears more than once" in str(error)


def test_a_semicolon_file_gets_a_hint():
    text = to_csv([STOCK], REQUIRED_COLUMNS).replace(",", ";")
    assert "separated by semicolons" in str(problems_of(text))


def test_a_ragged_row_is_a_problem():
    text = to_csv([STOCK], REQUIRED_COLUMNS) + "MSFT,1,LONG,PUBLIC,300\n"
    error = problems_of(text)
    assert "row 3: has 5 fields but the header has 6" in str(error)


def test_an_unnamed_column_is_tolerated_only_when_empty():
    text = to_csv([STOCK], REQUIRED_COLUMNS + ("",))
    assert len(parse(text)) == 1
    text = text.rstrip("\n") + "oops\n"
    assert "row 2, field column 7: has a value ('oops')" in str(problems_of(text))


@pytest.mark.parametrize("text", ["", "\n", "\ufeff", "\n" + to_csv([STOCK])])
def test_an_empty_file_or_header_is_a_problem(text):
    error = problems_of(text.encode("utf-8"))
    assert error.problems[0].row == 1 and "header" in str(error)


def test_a_header_without_rows_has_no_positions():
    error = problems_of(to_csv([]))
    assert [(p.row, p.reason) for p in error.problems] == [(1, "no positions: the file has a header but no data rows")]
    assert "no positions" in str(problems_of(to_csv([]) + ",,,,\n\n"))


def test_undecodable_bytes_are_named_by_row_and_field():
    data = to_csv([STOCK, STOCK | {"sector": "Tech@"}]).encode("utf-8").replace(b"Tech@", b"Tech\xff")
    error = problems_of(data)
    assert [(p.row, p.field) for p in error.problems] == [(3, "sector")]
    assert "not valid UTF-8" in str(error)
    latin1 = to_csv([STOCK | {"symbol": "Ä"}]).encode("latin-1")
    assert "row 2, field symbol: is not valid UTF-8" in str(problems_of(latin1))


def test_a_utf16_file_is_refused_with_advice():
    error = problems_of(to_csv([STOCK]).encode("utf-16"))
    assert error.problems == [Problem(0, "", "is UTF-16 text; save it as CSV UTF-8 (comma delimited)")]
    assert str(error).splitlines()[1].strip().startswith("file: is UTF-16")


def test_broken_quoting_is_named_by_row():
    text = to_csv([STOCK]) + 'MSFT,"1,LONG,PUBLIC,300,2024-01-02\n'
    error = problems_of(text)
    assert error.problems[-1].row == 3 and "not valid CSV" in str(error)


def test_too_many_bytes_is_refused_before_reading(tmp_path):
    text = to_csv(GOOD_ROWS)
    error = problems_of(text, max_bytes=100)
    assert error.problems[0].row == 0 and "more than the limit of 100 bytes" in str(error)
    path = tmp_path / "big.csv"
    path.write_text(text)
    assert "more than the limit" in str(problems_of(path, max_bytes=100))
    assert len(parse(path, max_bytes=len(text))) == 5


def test_too_many_rows_stops_early():
    text = to_csv([STOCK] * 11)
    error = problems_of(text, max_rows=10)
    assert [str(p) for p in error.problems] == ["file: has more than 10 data rows (the limit); split it"]
    assert len(parse(text, max_rows=11)) == 11
    # Rows beyond the limit are not validated: the limit problem is the only one.
    error = problems_of(to_csv([STOCK] * 10 + [STOCK | {"quantity": "-1"}] * 5), max_rows=10)
    assert len(error.problems) == 1


def test_a_large_file_is_fast_enough():
    rows = [STOCK | {"quantity": str(i + 1)} for i in range(20_000)]
    frame = parse(to_csv(rows))
    assert len(frame) == 20_000 and frame["position_id"].iloc[-1] == "main:20000"


# ----------------------------------------------------------------------------- fuzz

NASTY = [
    "",
    " ",
    "0",
    "-0",
    "-1",
    "-5",
    "1e400",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "1,000",
    "0x1A",
    "1_0",
    "١٢",
    "12.5.3",
    ".5",
    "5.",
    "+3",
    "1e-400",
    "999999999999999999",
    "LONG",
    "long",
    "SHORT",
    "LC",
    "lp",
    "SC",
    "SP",
    "BUY",
    "PUBLIC",
    "options",
    "PRIVATE",
    "CALL",
    "put",
    "C",
    "2024-01-02",
    "2024-02-30",
    "2024-1-2",
    "01/02/2024",
    "1989-12-31",
    "2099-01-01",
    "2025-06-30",
    "2025-07-01",
    "2024-12-20",
    "AAPL",
    "aapl",
    "A|B",
    "A,B",
    'A"B',
    "A'B",
    "A B",
    "A/B",
    "A;B",
    "'; DROP TABLE positions; --",
    "Robert'); DROP TABLE x;--",
    "ÄPFEL",
    "ß",
    "ﬀ",
    "\u00a0AAPL",
    "\x00",
    "A\nB",
    "\r",
    "^GSPC",
    "BRK.B",
    "ES=F",
    "A..B",
    "A" * 33,
    "AAPL250117C00150000",
    "AAPL250117P00150000",
    "SPY",
    "x" * 70,
    "\udcff",
]
field_values = st.one_of(
    st.sampled_from(NASTY),
    st.text(max_size=12),
    st.integers(-10, 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.dates(dt.date(1980, 1, 1), dt.date(2030, 12, 31)).map(dt.date.isoformat),
)


_BOM = b"\xef\xbb\xbf"


@st.composite
def mutated_files(draw) -> bytes:
    rows = [dict(draw(st.sampled_from(GOOD_ROWS))) for _ in range(draw(st.integers(1, 6)))]
    columns = list(COLUMNS)
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(
            st.sampled_from(
                ["set", "set", "set", "drop_column", "rename_column", "add_column", "duplicate_row", "drop_row"]
            )
        )
        if kind == "set":
            row = draw(st.sampled_from(rows))
            row[draw(st.sampled_from(COLUMNS))] = draw(field_values)
        elif kind == "drop_column":
            columns.remove(draw(st.sampled_from(columns)))
        elif kind == "rename_column":
            columns[draw(st.integers(0, len(columns) - 1))] = draw(st.sampled_from(["qty", "Symbol", "", "a|b"]))
        elif kind == "add_column":
            columns.append(draw(st.sampled_from(["notes", "symbol", ""])))
        elif kind == "duplicate_row":
            rows.append(dict(draw(st.sampled_from(rows))))
        elif kind == "drop_row" and len(rows) > 1:
            rows.pop(draw(st.integers(0, len(rows) - 1)))
    text = to_csv(rows, tuple(columns))
    data = text.encode("utf-8", errors="surrogateescape")
    if draw(st.booleans()) and draw(st.booleans()):  # raw damage: quotes, delimiters, bad bytes
        at = draw(st.integers(0, len(data)))
        junk = draw(st.sampled_from([b'"', b",", b"\n", b"\r\n", b"\xff", b"\xc3", b"\x00", b";", b'""', _BOM]))
        data = data[:at] + junk + data[at:]
    return data


def assert_positions_invariants(frame: pd.DataFrame, portfolio_id: str) -> None:
    """Every rule of contract §2, checked on the output independently of the parser."""
    assert list(frame.columns) == list(POSITION_COLUMNS)
    assert len(frame) >= 1
    assert frame["position_id"].is_unique
    assert all(re.fullmatch(rf"{portfolio_id}:[1-9][0-9]*", p) for p in frame["position_id"])
    assert (frame["portfolio_id"] == portfolio_id).all()
    for column in ("entry_date", "exit_date", "expiration"):
        assert str(frame[column].dtype) == "datetime64[ns]"
    for column in ("quantity", "entry_price", "exit_price", "strike", "manual_market_value"):
        assert frame[column].dtype == np.float64
    implied = {"LC": "CALL", "SC": "CALL", "LP": "PUT", "SP": "PUT"}
    for r in frame.itertuples(index=False):
        assert SYMBOL_PATTERN.match(r.symbol) and validate_symbol(r.symbol) == r.symbol
        assert not set("|,'\" ;/") & set(r.symbol)
        assert r.position_type in {"LONG", "SHORT", "LC", "LP", "SC", "SP"}
        assert r.investment_class in {"PUBLIC", "OPTIONS", "PRIVATE"}
        assert math.isfinite(r.quantity) and r.quantity > 0
        assert math.isfinite(r.entry_price) and r.entry_price >= 0
        assert pd.Timestamp("1990-01-01") <= r.entry_date <= pd.Timestamp(TODAY)
        assert pd.isna(r.exit_date) == pd.isna(r.exit_price)
        if not pd.isna(r.exit_date):
            assert r.entry_date <= r.exit_date <= pd.Timestamp(TODAY)
            assert math.isfinite(r.exit_price) and r.exit_price >= 0
        if r.investment_class == "OPTIONS":
            assert r.position_type in implied and r.option_type == implied[r.position_type]
            assert SYMBOL_PATTERN.match(r.underlying) and r.underlying != r.symbol
            assert math.isfinite(r.strike) and r.strike > 0
            assert not pd.isna(r.expiration) and r.expiration >= r.entry_date
        else:
            assert r.position_type in {"LONG", "SHORT"}
            assert r.underlying is None and r.option_type is None
            assert pd.isna(r.strike) and pd.isna(r.expiration)
        if r.investment_class == "PUBLIC":
            assert r.entry_price > 0
        if r.investment_class == "PRIVATE":
            assert math.isfinite(r.manual_market_value) and r.manual_market_value > 0
        else:
            assert pd.isna(r.manual_market_value)
        assert r.sector is None or (isinstance(r.sector, str) and r.sector.isprintable() and len(r.sector) <= 64)


ROW_LEVEL_REASONS = ("fields but the header has", "not valid CSV", "header", "separated by", "no positions")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_files())
def test_a_mutated_file_is_either_valid_positions_or_problems_with_row_and_field(data):
    try:
        frame = parse(data, portfolio_id="fz")
    except PositionsCsvError as error:
        message = str(error)
        assert error.problems
        for index, problem in enumerate(error.problems):
            assert isinstance(problem.row, int) and problem.row >= 0
            assert isinstance(problem.field, str) and isinstance(problem.reason, str) and problem.reason
            if problem.row and not problem.field:  # only whole-row problems may lack a field
                assert any(w in problem.reason for w in ROW_LEVEL_REASONS), problem
            if index < 100:
                assert str(problem) in message
        return
    assert_positions_invariants(frame, "fz")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from(GOOD_ROWS), min_size=1, max_size=8))
def test_good_rows_always_parse_and_round_trip(rows):
    frame = parse(to_csv(rows), portfolio_id="fz")
    assert_positions_invariants(frame, "fz")
    assert len(frame) == len(rows)
    # Writing the frame back as a CSV and reading it again changes nothing.
    out = frame.drop(columns=["position_id", "portfolio_id"]).copy()
    for column in ("entry_date", "exit_date", "expiration"):
        out[column] = out[column].dt.strftime("%Y-%m-%d")
    again = parse(out.to_csv(index=False), portfolio_id="fz")
    pd.testing.assert_frame_equal(frame, again)
