"""The symbol analytics from one read of the prices: factor exposures and metrics computed together write
the rows each writes alone, to the bit, and each reads the very panel `price_panel` builds for it alone —
with an option (no betas), a symbol listed inside the lookback, a symbol whose hole leaves it enough history
for the betas but not for the metrics (only the metrics re-read its older prices), a split and a dividend."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from factor_platform.domain import sessions
from factor_platform.domain.factor_models import LOOKBACK_SESSIONS, factor_tickers, load_regressions
from factor_platform.layers.panels import price_panel, price_panels
from factor_platform.layers.prices import update_prices
from factor_platform.layers.symbols import (
    METRICS_LOOKBACK,
    SYMBOL_ANALYTICS,
    update_factor_exposures,
    update_symbol_analytics,
    update_symbol_metrics,
)
from factor_platform.sources.sample import SampleSource

FIRST, LAST = dt.date(2026, 7, 1), dt.date(2026, 7, 31)
DAYS = [d.date() for d in sessions.sessions_in_range(FIRST, LAST)]
START = sessions.sessions_before(FIRST, LOOKBACK_SESSIONS, "XNYS")
OPTION = "AAA261218C00100000"
# MID: 200 priced sessions before FIRST in the lookback, older ones behind a hole (betas need 181, metrics 253).
MID_HOLE = (START, sessions.sessions_before(FIRST, 201, "XNYS"))
NEWCO_LISTED = dt.date(2026, 4, 1)
STOCKS = ["AAA", "KO", "NVDA", "MID", "NEWCO"]
SYMBOLS = [*STOCKS, OPTION]
BETAS_MIN_HISTORY = max(r.window for r in load_regressions()) + 1


@pytest.fixture
def priced(database):
    update_prices(
        database,
        SampleSource(),
        SYMBOLS + factor_tickers(load_regressions()),
        [dt.date(2024, 6, 3), LAST],
        calendar="XNYS",
    )
    database.delete("prices", {"symbol": ["MID"], "date": MID_HOLE})
    # The sample source has no market price for the contract: a vendor's, from January on.
    aaa = database.read("prices", {"symbol": ["AAA"], "date": (dt.date(2026, 1, 2), LAST)})
    database.upsert("prices", aaa.assign(symbol=OPTION, close=aaa["close"] / 20, adj_close=None))
    database.delete("prices", {"symbol": ["NEWCO"], "date": (dt.date(2000, 1, 1), NEWCO_LISTED - dt.timedelta(days=1))})
    return database


def _dump(db) -> dict[str, pd.DataFrame]:
    tables = [*SYMBOL_ANALYTICS, "symbol_failures"]
    frames = {t: db.read(t) for t in tables}
    frames["symbol_failures"] = frames["symbol_failures"].drop(columns=["first_seen", "last_seen"], errors="ignore")
    return {t: f.sort_values(list(f.columns)).reset_index(drop=True) for t, f in frames.items()}


def _clear(db) -> None:
    for table in [*SYMBOL_ANALYTICS, "symbol_failures"]:
        db.delete(table, {"symbol": SYMBOLS + factor_tickers(load_regressions())})


SPAN = dict(first_date=FIRST, last_date=LAST, lookback_sessions=LOOKBACK_SESSIONS, calendar="XNYS")


def _assert_as_alone(db, wanted) -> list:
    together = price_panels(db, wanted, **SPAN)
    for (symbols, min_history), panel in zip(wanted, together, strict=True):
        alone = price_panel(db, symbols, min_history=min_history, **SPAN)
        pd.testing.assert_frame_equal(panel.prices, alone.prices, check_exact=True)
        pd.testing.assert_frame_equal(panel.close, alone.close, check_exact=True)
        pd.testing.assert_frame_equal(panel.actions, alone.actions, check_exact=True)
    return together


def test_each_table_reads_the_panel_it_reads_alone(priced):
    targets = [s for s in SYMBOLS if s != OPTION] + factor_tickers(load_regressions())
    betas, metrics = _assert_as_alone(priced, [(targets, BETAS_MIN_HISTORY), (SYMBOLS, METRICS_LOOKBACK)])
    # The cases are there: only the metrics' panel reaches behind MID's hole, both re-read NEWCO (in vain).
    assert metrics.prices.index[0] < pd.Timestamp(START) == betas.prices.index[0]
    assert metrics.prices.loc[: pd.Timestamp(START), "MID"].notna().any()
    assert betas.prices.loc[: pd.Timestamp(MID_HOLE[1]), "MID"].isna().all()
    # The nightly's case: the betas' symbols among the metrics' (the ETFs too), the same rows of them:
    # the betas take the metrics panel's columns. And a request twice.
    run = [s for s in SYMBOLS if s != "MID"] + factor_tickers(load_regressions())
    targets = [s for s in run if s != OPTION]
    _assert_as_alone(priced, [(targets, BETAS_MIN_HISTORY), (run, METRICS_LOOKBACK), (targets, BETAS_MIN_HISTORY)])


def test_together_writes_the_rows_each_writes_alone(priced):
    update_factor_exposures(priced, DAYS, SYMBOLS, calendar="XNYS")
    unpriced = update_symbol_metrics(priced, DAYS, SYMBOLS, calendar="XNYS").unpriced
    alone = _dump(priced)
    _clear(priced)
    update = update_symbol_analytics(priced, DAYS, SYMBOLS, SYMBOL_ANALYTICS, calendar="XNYS")
    together = _dump(priced)
    assert len(alone["symbol_factor_exposures"]) and len(alone["symbol_metrics"])
    assert {"MID", "NEWCO", OPTION} <= set(alone["symbol_metrics"]["symbol"])
    for table, frame in alone.items():
        pd.testing.assert_frame_equal(together[table], frame, check_exact=True, obj=table)
    assert update.metrics.unpriced == unpriced
    assert update.factors.written == len(alone["symbol_factor_exposures"])
    # Each alone through the shared function: the other table is left as it is.
    _clear(priced)
    assert update_symbol_analytics(priced, DAYS, SYMBOLS, ["symbol_metrics"], calendar="XNYS").factors is None
    pd.testing.assert_frame_equal(_dump(priced)["symbol_metrics"], alone["symbol_metrics"], check_exact=True)
    assert priced.read("symbol_factor_exposures").empty


def test_unknown_table_is_refused(priced):
    with pytest.raises(ValueError, match="prices"):
        update_symbol_analytics(priced, DAYS, SYMBOLS, ["prices"], calendar="XNYS")
