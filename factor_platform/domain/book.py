"""A portfolio's book: its row of `portfolios` and its positions, validated once.

The import builds one from a parsed CSV, and the planner, the sensor, the portfolio layer and the
report build theirs from the stored rows (`layers.books.read_books`): all of them ask the same
object for the symbols the book holds, its inception and its version.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property

import pandas as pd

from factor_platform.domain import sessions
from factor_platform.domain.positions import normalize_positions
from factor_platform.domain.symbols import validate_symbol


@dataclass(frozen=True, eq=False)
class Book:
    portfolio_id: str
    positions: pd.DataFrame  # normalize_positions(): every column of the contract, dates as datetime64
    inception: dt.date  # the first session on or after the earliest entry date
    starting_equity: float
    # Counts the imports that changed the book (1 = first import); NULL in the table when another
    # application wrote the row. A new version is new work: the sensor's run keys carry it.
    version: int | None = None
    created_at: pd.Timestamp | None = None  # when the portfolio was first imported (the sensor's onboarding key)

    @classmethod
    def from_rows(cls, portfolio, positions: pd.DataFrame, *, normalized: bool = False) -> Book:
        """From a `portfolios` row (a mapping or a one-row frame's record) and the portfolio's positions
        (`normalized`: normalize_positions' output already, e.g. of every book at once)."""
        version = portfolio.get("book_version")
        return cls(
            portfolio_id=portfolio["portfolio_id"],
            positions=positions.reset_index(drop=True) if normalized else normalize_positions(positions),
            inception=pd.Timestamp(portfolio["inception_date"]).date(),
            starting_equity=float(portfolio["starting_equity"]),
            version=None if version is None or pd.isna(version) else int(version),
            created_at=portfolio.get("created_at"),
        )

    @classmethod
    def imported(cls, portfolio_id: str, positions: pd.DataFrame, *, starting_equity: float, calendar: str) -> Book:
        """A book from a parsed positions file, before it is stored: validated for the valuation, its
        inception the first session on or after the earliest entry date (the position counts from there)."""
        normalized = normalize_positions(positions)
        inception = sessions.session_on_or_after(normalized["entry_date"].min().date(), calendar)
        return cls(
            portfolio_id=portfolio_id, positions=normalized, inception=inception, starting_equity=float(starting_equity)
        )

    @cached_property
    def market_positions(self) -> pd.DataFrame:
        """Positions priced from market data (PUBLIC and OPTIONS, not PRIVATE)."""
        return self.positions[self.positions["investment_class"] != "PRIVATE"]

    @cached_property
    def held_symbols(self) -> list[str]:
        """Symbols with market data behind the book: public holdings, option contracts and their underlyings."""
        market = (
            self.positions["investment_class"].to_numpy() != "PRIVATE"
        )  # on arrays: the sensor asks every book each tick
        named = set(self.positions["symbol"].to_numpy()[market])
        named |= {u for u in self.positions["underlying"].to_numpy()[market] if not pd.isna(u)}
        return sorted({validate_symbol(s) for s in named})

    @property
    def run_key_part(self) -> str:
        """What identifies this book in a run key: a changed book is a new run."""
        return f"v{self.version}" if self.version is not None else "v-"
