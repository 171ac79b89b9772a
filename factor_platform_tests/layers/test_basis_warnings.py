"""The portfolio layer's basis warnings (symbol_failures, stage `basis:<portfolio>`): a position entered on
another basis than the prices is warned once per portfolio and symbol while it lasts, the warnings of two
portfolios are their own, and a book whose entry is corrected closes its warning on the next run."""

from __future__ import annotations

import datetime as dt

import pytest

from factor_platform.domain import sessions
from factor_platform.domain.factor_models import factor_tickers, load_regressions
from factor_platform.layers.books import import_portfolio
from factor_platform.layers.names import PORTFOLIO_ASSETS
from factor_platform.layers.portfolio import basis_stage, update_portfolios
from factor_platform.layers.prices import update_prices
from factor_platform.sources.sample import SampleSource, traded_price

INCEPTION = dt.date(2026, 3, 2)
DAYS = [d.date() for d in sessions.sessions_in_range(INCEPTION, dt.date(2026, 3, 13))]
HOLDINGS = ["AAA", "BBB", "CCC"]
HEADER = "symbol,quantity,position_type,investment_class,entry_price,entry_date\n"


def _import(db, folder, portfolio_id: str, prices: dict[str, float]) -> None:
    path = folder / f"{portfolio_id}.csv"
    path.write_text(HEADER + "".join(f"{s},100,LONG,PUBLIC,{p},{INCEPTION}\n" for s, p in prices.items()))
    import_portfolio(db, path, portfolio_id=portfolio_id, equity=1_000_000)


def _warnings(db):
    rows = db.read("symbol_failures", {"stage": [basis_stage("one"), basis_stage("two")]})
    return {(r.stage, r.symbol): (r.attempts, r.status) for r in rows.itertuples(index=False)}


@pytest.fixture
def priced(database):
    update_prices(
        database,
        SampleSource(),
        HOLDINGS + factor_tickers(load_regressions()),
        [dt.date(2025, 10, 1), DAYS[-1]],
        calendar="XNYS",
    )
    return database


def test_basis_warnings_are_recorded_once_per_portfolio_and_closed_when_the_book_is_corrected(priced, tmp_path):
    db = priced
    close = {s: traded_price(s, INCEPTION) for s in HOLDINGS}
    _import(db, tmp_path, "one", {"AAA": close["AAA"] * 4, "BBB": close["BBB"], "CCC": close["CCC"] / 2})
    _import(db, tmp_path, "two", {"AAA": close["AAA"], "BBB": close["BBB"] * 4})
    tables = list(PORTFOLIO_ASSETS)
    update_portfolios(db, ["one", "two"], DAYS[:3], tables)
    expected = {
        (basis_stage("one"), "AAA"): (1, "open"),
        (basis_stage("one"), "CCC"): (1, "open"),
        (basis_stage("two"), "BBB"): (1, "open"),
    }
    assert _warnings(db) == expected
    stored = db.read("symbol_failures", {"stage": [basis_stage("one")], "symbol": ["AAA"]})
    assert "one: position one:1 entered at" in stored["error"].iloc[0]
    assert stored["date"].iloc[0].date() == DAYS[2]

    update_portfolios(db, ["one", "two"], DAYS[3:5], tables)  # the same mismatches: recorded once, not again
    assert _warnings(db) == expected
    update_portfolios(db, ["one"], DAYS[5:6], tables[:3])  # a subset of the tables settles no warning
    assert _warnings(db) == expected

    _import(db, tmp_path, "one", {"AAA": close["AAA"], "BBB": close["BBB"], "CCC": close["CCC"] / 2})
    update_portfolios(db, ["one", "two"], DAYS[5:6], tables)  # AAA corrected in one: closed there only
    assert _warnings(db) == {(basis_stage("one"), "CCC"): (1, "open"), (basis_stage("two"), "BBB"): (1, "open")}
