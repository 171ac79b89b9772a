"""The one safe pattern for symbols and portfolio ids (partition keys, SQL parameters)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factor_platform.domain.symbols import (
    OCC_OPTION_PATTERN,
    PORTFOLIO_ID_PATTERN,
    SYMBOL_PATTERN,
    InvalidPortfolioIdError,
    InvalidSymbolError,
    is_option_symbol,
    parse_occ_symbol,
    validate_portfolio_id,
    validate_symbol,
)

# What Dagster refuses in (multi-)partition keys, plus what is dangerous in SQL, shells and CSV.
FORBIDDEN = set("|,[]'\"`; /\\\n\r\t\x00%*()<>{}:@#$&!?~+")


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("AAPL", "AAPL"),
        ("  aapl ", "AAPL"),
        ("BRK-B", "BRK-B"),
        ("brk.b", "BRK.B"),
        ("^GSPC", "^GSPC"),
        ("EURUSD=X", "EURUSD=X"),
        ("ES=F", "ES=F"),
        ("AAPL250117C00150000", "AAPL250117C00150000"),
        ("7203.T", "7203.T"),
        ("BF_B", "BF_B"),
        ("A" * 32, "A" * 32),
    ],
)
def test_valid_symbols_are_normalized(raw, expected):
    assert validate_symbol(raw) == expected
    assert SYMBOL_PATTERN.match(expected)


@pytest.mark.parametrize(
    "raw, why",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("A|B", "'|'"),
        ("A,B", "','"),
        ("A'B", '"\'"'),
        ('A"B', "'\"'"),
        ("A B", "' '"),
        ("A/B", "'/'"),
        ("A;DROP TABLE prices", "';'"),
        ("AAPL'; DROP TABLE positions;--", "';'"),
        ("A[0]", "'['"),
        ("A...B", "consecutive dots"),
        ("A..B", "consecutive dots"),
        ("ÄPFEL", "non-ASCII"),
        ("straße", "non-ASCII"),  # "ß".upper() == "SS": must be refused, not transliterated
        ("ﬀ", "non-ASCII"),
        ("ＡＡＰＬ", "non-ASCII"),
        ("A" * 33, "longer than 32"),
        ("-A", "start with"),
        (".A", "start with"),
        ("^", "start with"),
        ("^^A", "start with"),
        ("AAPL\n", None),  # stripped, so valid; see below
    ],
)
def test_invalid_symbols_are_refused_with_the_reason(raw, why):
    if why is None:
        assert validate_symbol(raw) == "AAPL"
        return
    with pytest.raises(InvalidSymbolError) as info:
        validate_symbol(raw)
    message = str(info.value)
    assert why in message
    assert isinstance(info.value, ValueError)


def test_newline_inside_a_symbol_is_refused():
    with pytest.raises(InvalidSymbolError):
        validate_symbol("AA\nPL")
    # "$" would match before a trailing newline; the pattern must not.
    assert SYMBOL_PATTERN.match("AAPL\n") is None


@pytest.mark.parametrize("raw", [None, 12, b"AAPL", ["AAPL"]])
def test_non_strings_are_refused(raw):
    with pytest.raises(InvalidSymbolError, match="must be a string"):
        validate_symbol(raw)


def test_message_names_the_symbol_but_stays_short():
    with pytest.raises(InvalidSymbolError) as info:
        validate_symbol("A|" + "B" * 10_000)
    assert "'A|BBB" in str(info.value)
    assert len(str(info.value)) < 200


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_any_text_is_either_a_safe_symbol_or_refused(raw):
    try:
        symbol = validate_symbol(raw)
    except InvalidSymbolError:
        return
    assert SYMBOL_PATTERN.match(symbol)
    assert 1 <= len(symbol) <= 32
    assert symbol.isascii() and symbol == symbol.upper() == symbol.strip()
    assert not FORBIDDEN & set(symbol)
    assert "..." not in symbol
    assert validate_symbol(symbol) == symbol  # idempotent


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ABCXYZabcz0189.-^=_|,'\" /;é", max_size=36))
def test_symbol_like_text_is_either_a_safe_symbol_or_refused(raw):
    try:
        symbol = validate_symbol(raw)
    except InvalidSymbolError as exc:
        assert repr(raw)[:20] in str(exc)
        return
    assert SYMBOL_PATTERN.match(symbol)
    assert not FORBIDDEN & set(symbol)
    assert symbol == raw.strip().upper()


@pytest.mark.parametrize("raw", ["main", "Fund_A", "fund-2024.q1", "X", "a" * 64])
def test_valid_portfolio_ids_keep_their_case(raw):
    assert validate_portfolio_id(f" {raw} ") == raw


@pytest.mark.parametrize(
    "raw, why",
    [
        ("", "empty"),
        ("a|b", "'|'"),
        ("a,b", "','"),
        ("a b", "' '"),
        ("a/b", "'/'"),
        ("a:b", "':'"),
        ("a^b", "'^'"),
        ("a...b", "consecutive dots"),
        ("_main", "start with"),
        ("fonds-é", "non-ASCII"),
        ("a" * 65, "longer than 64"),
        (None, "must be a string"),
    ],
)
def test_invalid_portfolio_ids_are_refused(raw, why):
    with pytest.raises(InvalidPortfolioIdError) as info:
        validate_portfolio_id(raw)
    assert why in str(info.value)
    assert isinstance(info.value, InvalidSymbolError) and isinstance(info.value, ValueError)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=70))
def test_any_text_is_either_a_safe_portfolio_id_or_refused(raw):
    try:
        portfolio_id = validate_portfolio_id(raw)
    except InvalidPortfolioIdError:
        return
    assert PORTFOLIO_ID_PATTERN.match(portfolio_id)
    assert not FORBIDDEN & set(portfolio_id)
    assert "..." not in portfolio_id


def test_occ_option_symbols():
    occ = parse_occ_symbol("AAPL250117C00150000")
    assert occ is not None
    assert (occ.root, occ.expiration, occ.option_type, occ.strike) == ("AAPL", dt.date(2025, 1, 17), "CALL", 150.0)
    spx = parse_occ_symbol("SPXW240621P05212500")
    assert spx is not None and spx.option_type == "PUT" and spx.strike == 5212.5
    assert OCC_OPTION_PATTERN.match("AAPL250117C00150000")
    assert is_option_symbol("AAPL250117C00150000")
    for not_an_option in ["AAPL", "^GSPC", "AAPL250230C00150000", "AAPL250117X00150000", "AAPL250117C0015000", 42]:
        assert not is_option_symbol(not_an_option)
