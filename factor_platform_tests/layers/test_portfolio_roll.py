"""The portfolio layer rolls a nightly forward from the stored snapshot before it: the figures of the roll
from inception (valuation and P&L to the bit), through a split, a dividend, a close, an option, a private
holding, a symbol listed inside the lookback, and a symbol with a hole in its prices (rolled from inception
while the hole is inside the lookback: the pairs' correlation windows reach past it)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from factor_platform.domain import sessions
from factor_platform.domain.factor_models import factor_tickers, load_regressions
from factor_platform.layers import portfolio as portfolio_layer
from factor_platform.layers.books import import_portfolio, read_books
from factor_platform.layers.invalidation import Stale, mark_stale
from factor_platform.layers.names import PORTFOLIO_ASSETS, PORTFOLIO_STALE_ASSET
from factor_platform.layers.portfolio import PortfolioErrors, Roll, roll_starts, update_portfolios
from factor_platform.layers.prices import update_prices
from factor_platform.layers.symbols import update_factor_exposures
from factor_platform.sources.sample import SampleSource, traded_price

INCEPTION = dt.date(2025, 9, 2)
END = dt.date(2026, 7, 31)
DAYS = [d.date() for d in sessions.sessions_in_range(INCEPTION, END)]
ROLLED = [d for d in DAYS if d >= dt.date(2026, 6, 5)]  # NVDA splits 4:1 on 2026-06-10, KO goes ex on 2026-06-15
# BBB has no prices for 7 weeks: 90 common returns of a pair with BBB reach back past the lookback of a
# roll up to 2026-07-17, the first session whose 100-session lookback starts after the hole.
HOLE = (dt.date(2026, 1, 1), dt.date(2026, 2, 20))
CLEAR = dt.date(2026, 7, 17)
LISTED = dt.date(2026, 4, 1)  # NEWCO's first price: a short history, wholly inside every roll's lookback
HOLDINGS = ["AAA", "BBB", "CCC", "KO", "NVDA", "NEWCO"]
BOOKS = ["roll", "plain"]
EXACT = ["position_values", "portfolio_snapshots", "portfolio_sector_weights", "portfolio_factor_exposures"]


def _book(db, folder, *, bbb_quantity: int = 40) -> None:
    strike = round(traded_price("AAA", INCEPTION))
    exit_day = dt.date(2026, 6, 24)
    rows = [
        f"AAA,100,LONG,PUBLIC,{traded_price('AAA', INCEPTION)},{INCEPTION},,,,,,",
        f"BBB,{bbb_quantity},SHORT,PUBLIC,{traded_price('BBB', DAYS[3])},{DAYS[3]},,,,,,",
        f"CCC,30,LONG,PUBLIC,{traded_price('CCC', INCEPTION)},{INCEPTION},{exit_day},"
        f"{traded_price('CCC', exit_day)},,,,",
        f"KO,200,LONG,PUBLIC,{traded_price('KO', INCEPTION)},{INCEPTION},,,,,,",
        f"NVDA,50,LONG,PUBLIC,{traded_price('NVDA', INCEPTION)},{INCEPTION},,,,,,",
        f"NEWCO,70,LONG,PUBLIC,{traded_price('NEWCO', LISTED)},{LISTED},,,,,,",
        f"AAA261218C{strike * 1000:08d},2,LC,OPTIONS,5,{INCEPTION},,,AAA,{strike},2026-12-18,",
        f"ACME-PRIV,1000,LONG,PRIVATE,10,{INCEPTION},,,,,,12500",
    ]
    csv = folder / "book.csv"
    csv.write_text(
        "symbol,quantity,position_type,investment_class,entry_price,entry_date,exit_date,exit_price,"
        "underlying,strike,expiration,manual_market_value\n" + "\n".join(rows) + "\n"
    )
    import_portfolio(db, csv, portfolio_id="roll", equity=1_000_000)
    plain = folder / "plain.csv"  # no BBB: rolls forward from the first span on, beside "roll"
    plain.write_text(csv.read_text().splitlines()[0] + "\n" + "\n".join(rows[3:5]) + "\n")
    import_portfolio(db, plain, portfolio_id="plain", equity=500_000)


@pytest.fixture
def priced(database, tmp_path):
    update_prices(
        database,
        SampleSource(),
        HOLDINGS + factor_tickers(load_regressions()),
        [dt.date(2025, 1, 2), END],
        calendar="XNYS",
    )
    database.delete("prices", {"symbol": ["BBB"], "date": HOLE})
    database.delete("prices", {"symbol": ["NEWCO"], "date": (dt.date(2000, 1, 1), LISTED - dt.timedelta(days=1))})
    update_factor_exposures(database, ROLLED, HOLDINGS, calendar="XNYS")
    _book(database, tmp_path)
    return database


def _roll(db, first: dt.date) -> Roll:
    return roll_starts(db, read_books(db, ["roll"]), first, calendar="XNYS")["roll"]


def _stored(db) -> dict[str, pd.DataFrame]:
    out = {}
    for table in PORTFOLIO_ASSETS:
        rows = db.read(table, {"portfolio_id": BOOKS, "date": (ROLLED[0], ROLLED[-1])})
        keys = [
            c
            for c in ("portfolio_id", "date", "position_id", "factor", "symbol_a", "symbol_b", "sector", "scenario")
            if c in rows
        ]
        out[table] = rows.drop(columns=["computed_at"], errors="ignore").sort_values(keys).reset_index(drop=True)
    return out


def test_rolling_forward_gives_the_figures_of_the_roll_from_inception(priced):
    db = priced
    tables = list(PORTFOLIO_ASSETS)
    assert _roll(db, ROLLED[0]) == Roll(INCEPTION)  # nothing stored
    update_portfolios(db, BOOKS, DAYS[: DAYS.index(ROLLED[0])], tables)
    spans = [ROLLED[i : i + 1] for i in range(6)] + [ROLLED[i : i + 5] for i in range(6, len(ROLLED), 5)]
    for span in spans:  # one session at a time through the split and the dividend, then a week at a time
        update = update_portfolios(db, BOOKS, span, tables)
        expected = span[0] if span[0] >= CLEAR else INCEPTION
        assert update.rolled_from == {"roll": expected, "plain": span[0]}, span[0]
    rolled = _stored(db)
    assert rolled["portfolio_snapshots"]["date"].dt.date.tolist() == ROLLED * 2
    assert (
        rolled["portfolio_correlations"]["symbol_a"].eq("BBB").any()
        or rolled["portfolio_correlations"]["symbol_b"].eq("BBB").any()
    )

    for table in tables:
        db.delete(table, {"portfolio_id": BOOKS})
    assert _roll(db, ROLLED[0]) == Roll(INCEPTION)
    assert update_portfolios(db, BOOKS, ROLLED, tables).rolled_from == {"roll": INCEPTION, "plain": INCEPTION}
    from_inception = _stored(db)
    for table in tables:
        assert len(rolled[table]) > 0, table
        if table in EXACT:
            pd.testing.assert_frame_equal(rolled[table], from_inception[table], check_exact=True, obj=table)
        else:
            pd.testing.assert_frame_equal(rolled[table], from_inception[table], rtol=1e-13, obj=table)


def test_a_stale_or_missing_snapshot_rolls_from_inception(priced, tmp_path):
    db = priced
    update_portfolios(db, ["roll"], DAYS[:60], list(PORTFOLIO_ASSETS))
    stored = db.read("portfolio_snapshots", {"portfolio_id": ["roll"], "date": (DAYS[59], DAYS[59])})
    assert _roll(db, DAYS[60]) == Roll(DAYS[60], float(stored["cumulative_pnl"].iloc[0]))
    assert _roll(db, DAYS[61]) == Roll(INCEPTION)  # a hole before it
    assert _roll(db, DAYS[0]) == Roll(INCEPTION)
    with db.begin() as conn:
        mark_stale(db, conn, [Stale(PORTFOLIO_STALE_ASSET, "roll", DAYS[59], "a late price")])
    assert _roll(db, DAYS[60]) == Roll(INCEPTION)
    db.delete("stale_partitions", {"key": ["roll"]})
    _book(db, tmp_path, bbb_quantity=41)  # a changed book drops its figures
    assert _roll(db, DAYS[60]) == Roll(INCEPTION)


def test_one_portfolio_that_fails_blocks_no_other(priced, monkeypatch):
    db = priced
    valuation = portfolio_layer.value_positions

    def broken_for_roll(positions, *args, **kwargs):
        if positions["position_id"].str.startswith("roll:").any():
            raise ValueError("a book the valuation cannot use")
        return valuation(positions, *args, **kwargs)

    monkeypatch.setattr(portfolio_layer, "value_positions", broken_for_roll)
    with pytest.raises(PortfolioErrors, match="roll: ValueError: a book the valuation cannot use") as raised:
        update_portfolios(db, BOOKS, ROLLED[:2], list(PORTFOLIO_ASSETS))
    assert set(raised.value.errors) == {"roll"}
    written = db.read("portfolio_snapshots", {"portfolio_id": BOOKS})
    assert written["portfolio_id"].tolist() == ["plain", "plain"]
