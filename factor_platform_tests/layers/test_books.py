"""read_books normalizes every book in one pass: each book equals the one built from its own rows alone."""

from __future__ import annotations

import pandas as pd
import pytest

from factor_platform.domain.book import Book
from factor_platform.domain.positions import normalize_positions
from factor_platform.layers.books import import_portfolio, read_books

BOOKS = {
    "stocks": "AAA,10,LONG,PUBLIC,50,2025-06-02,,,,,,,,\nBBB,5,SHORT,PUBLIC,20,2025-06-03,2025-06-10,21,,,,,,\n",
    "options": "AAA250919C00055000,2,LC,OPTIONS,3.5,2025-06-02,,,AAA,55,2025-09-19,CALL,,\n"
    "CCC,1,LONG,PUBLIC,10,2025-06-04,,,,,,,,Energy\n",
    "private": "FUND1,1,LONG,PRIVATE,1000,2025-06-02,,,,,,,1200,\nAAA,3,LONG,PUBLIC,50,2025-06-05,,,,,,,,\n",
}
HEADER = (
    "symbol,quantity,position_type,investment_class,entry_price,entry_date,exit_date,exit_price,"
    "underlying,strike,expiration,option_type,manual_market_value,sector\n"
)


def test_every_book_in_one_pass_equals_each_book_alone(database, tmp_path):
    for pid, rows in BOOKS.items():
        path = tmp_path / f"{pid}.csv"
        path.write_text(HEADER + rows)
        import_portfolio(database, path, portfolio_id=pid)
    portfolios = database.read("portfolios").set_index("portfolio_id")
    stored = database.read("positions")

    books = read_books(database)

    assert list(books) == list(BOOKS)
    for pid, book in books.items():
        alone = Book.from_rows(
            {"portfolio_id": pid, **portfolios.loc[pid].to_dict()}, stored[stored["portfolio_id"] == pid]
        )
        pd.testing.assert_frame_equal(book.positions, alone.positions, check_exact=True)
        assert (book.inception, book.version, book.starting_equity) == (
            alone.inception,
            alone.version,
            alone.starting_equity,
        )
        market = alone.positions[alone.positions["investment_class"] != "PRIVATE"]
        assert book.held_symbols == sorted(set(market["symbol"]) | set(market["underlying"].dropna()))
    assert books["options"].held_symbols == ["AAA", "AAA250919C00055000", "CCC"]
    assert books["private"].held_symbols == ["AAA"]


def test_position_ids_are_unique_within_a_book_not_across_books():
    rows = pd.DataFrame(
        {
            "position_id": ["1", "1", "2"],
            "portfolio_id": ["a", "b", "b"],
            "symbol": ["AAA", "AAA", "BBB"],
            "quantity": [1.0, 2.0, 3.0],
            "position_type": "LONG",
            "investment_class": "PUBLIC",
            "entry_price": 10.0,
            "entry_date": pd.Timestamp("2025-06-02"),
        }
    )
    assert len(normalize_positions(rows, books="portfolio_id")) == 3
    with pytest.raises(ValueError, match=r"position_id not unique: \['1'\]"):
        normalize_positions(rows)
    with pytest.raises(ValueError, match=r"position_id not unique: \['2'\]"):
        normalize_positions(pd.concat([rows, rows.tail(1)]), books="portfolio_id")
