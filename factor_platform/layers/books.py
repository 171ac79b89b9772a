"""Books in and out of the database: the import of a positions file, and the stored books as `Book`s.

Import: validate the whole file, then write it in one transaction. Re-importing the same file
changes nothing; a changed file replaces the portfolio's positions (ids are
`<portfolio>:<row ordinal>`), a position that disappeared is deleted, and the book's version goes
up by one. The figures computed from the old book (the portfolio layer's tables) are deleted in
the same transaction: the planner and the sensor then see the portfolio as not computed and
compute it again.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from factor_platform.domain.book import Book
from factor_platform.domain.positions import normalize_positions
from factor_platform.domain.positions_csv import parse_positions_csv
from factor_platform.domain.symbols import validate_portfolio_id
from factor_platform.layers.history import forget_spans
from factor_platform.layers.names import PORTFOLIO_ASSETS as DERIVED_TABLES
from factor_platform.storage import Database

DEFAULT_STARTING_EQUITY = 1_000_000.0


def _same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    if len(a) != len(b):
        return False
    cols = list(b.columns)
    left = a[cols].sort_values("position_id").reset_index(drop=True)
    right = b[cols].sort_values("position_id").reset_index(drop=True)
    return left.astype(str).equals(right.astype(str))


def import_portfolio(
    db: Database,
    path: Path,
    *,
    portfolio_id: str,
    name: str | None = None,
    equity: float | None = None,
    calendar: str = "XNYS",
) -> dict:
    portfolio_id = validate_portfolio_id(portfolio_id)
    if equity is not None and not (equity > 0 and equity < float("inf")):
        raise ValueError(f"equity {equity}: expected a positive amount")
    positions = parse_positions_csv(path, portfolio_id=portfolio_id)
    existing = db.read("portfolios", {"portfolio_id": portfolio_id})
    old_positions = db.read("positions", {"portfolio_id": portfolio_id})
    book = Book.imported(
        portfolio_id,
        positions,
        calendar=calendar,
        starting_equity=equity
        if equity is not None
        else (float(existing["starting_equity"].iloc[0]) if len(existing) else DEFAULT_STARTING_EQUITY),
    )
    inception = book.inception
    row = {
        "portfolio_id": portfolio_id,
        "name": name or (existing["name"].iloc[0] if len(existing) else portfolio_id),
        "starting_equity": book.starting_equity,
        "inception_date": pd.Timestamp(inception),
        "created_at": existing["created_at"].iloc[0] if len(existing) else pd.Timestamp.now(tz="UTC").tz_localize(None),
    }
    unchanged_portfolio = (
        len(existing)
        and all(str(existing[k].iloc[0]) == str(v) for k, v in row.items() if k != "created_at")
        and (name is None or name == existing["name"].iloc[0])
    )
    invalidated = 0
    version = existing["book_version"].iloc[0] if len(existing) else None
    version = 0 if version is None or pd.isna(version) else int(version)
    if unchanged_portfolio and _same(old_positions, positions):
        status = "unchanged"
    else:
        version += 1
        row["book_version"] = version
        with db.begin() as conn:
            db.upsert("portfolios", pd.DataFrame([row]), conn=conn)
            db.replace("positions", positions, {"portfolio_id": portfolio_id}, conn=conn)
            if len(existing):
                invalidated = sum(db.delete(t, {"portfolio_id": portfolio_id}, conn=conn) for t in DERIVED_TABLES)
                forget_spans(db, DERIVED_TABLES, portfolio_id, conn=conn)
        status = "updated" if len(existing) else "created"
    return {
        "portfolio_id": portfolio_id,
        "status": status,
        "positions": len(positions),
        "inception_date": inception,
        "invalidated_rows": invalidated,
        "book_version": version,
    }


def read_books(
    db: Database, portfolio_ids: list[str] | None = None, *, problems: dict[str, str] | None = None, conn=None
) -> dict[str, Book]:
    """The stored books of `portfolio_ids` (all when None), by id, in the order of `portfolios`
    (created_at, then id), in the transaction `conn` when given. A book the valuation cannot use (rows another application wrote) raises
    ValueError naming it, or, with `problems` given, is left out and its reason recorded there."""
    where = None if portfolio_ids is None else {"portfolio_id": list(portfolio_ids)}
    portfolios = db.read("portfolios", where, conn=conn).sort_values(["created_at", "portfolio_id"])
    if portfolios.empty:
        return {}
    positions = db.read("positions", {"portfolio_id": portfolios["portfolio_id"].tolist()}, conn=conn)
    try:  # every book in one pass (the sensor reads them all each tick)
        positions, normalized = normalize_positions(positions, books="portfolio_id"), True
    except ValueError:  # a book the valuation cannot use: book by book, to name it and keep the others
        normalized = False
    by_portfolio = dict(tuple(positions.groupby("portfolio_id", sort=False)))
    empty = positions.iloc[0:0]
    books = {}
    for row in portfolios.to_dict("records"):
        pid = row["portfolio_id"]
        try:
            books[pid] = Book.from_rows(row, by_portfolio.get(pid, empty), normalized=normalized)
        except ValueError as error:
            if problems is None:
                raise ValueError(f"portfolio {pid!r}: {error}") from error
            problems[pid] = str(error)
    return books


def read_book(db: Database, portfolio_id: str) -> Book:
    """One stored book; ValueError when the portfolio is not in `portfolios`."""
    books = read_books(db, [portfolio_id])
    if portfolio_id not in books:
        raise ValueError(f"portfolio {portfolio_id!r} is not in the portfolios table")
    return books[portfolio_id]
