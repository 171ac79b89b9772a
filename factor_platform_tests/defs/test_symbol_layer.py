"""The symbol layer through Dagster: figures against statsmodels, bookkeeping against the instance."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from factor_platform.domain import sessions
from factor_platform.domain.factor_models import factor_tickers, load_regressions
from factor_platform.layers.names import SYMBOL_DAY_ASSETS
from factor_platform.planning.planner import PlannedRun, plan_materialization
from factor_platform.planning.rectangles import Rectangle
from factor_platform.running.execution import materialize
from factor_platform.running.runs import execute_run, load_definitions
from factor_platform.sources.sample import true_betas
from factor_platform_tests.defs.conftest import DIALECTS, TEST_END, TEST_START

STOCKS = ["AAA", "BBB", "CCC"]
ETFS = factor_tickers(load_regressions())


def _days(lo=TEST_START, hi=TEST_END):
    return [d.date() for d in sessions.sessions_in_range(lo, hi)]


def _dump(db, table):
    frame = db.read(table)
    return frame.sort_values(list(frame.columns[:3])).reset_index(drop=True)


def _ols_from_db(db, symbol, x_symbol, day, window=90):
    """The contract's market beta recomputed independently: prices from the DB, statsmodels OLS."""
    prices = db.read("prices", {"symbol": [symbol, x_symbol], "date": (dt.date(2000, 1, 1), day)})
    prices["P"] = prices["adj_close"].fillna(prices["close"])
    wide = prices.pivot(index="date", columns="symbol", values="P")
    returns = pd.DataFrame({s: wide[s].dropna().pct_change() for s in (symbol, x_symbol)}).dropna().tail(window)
    return sm.OLS(returns[symbol].to_numpy(), sm.add_constant(returns[x_symbol].to_numpy())).fit()


def _materialize_stocks(db, instance, env, _folder) -> dict:
    env.setenv("FACTOR_PLATFORM_PRICE_SOURCE", "sample")
    return materialize(db, start=TEST_START, end=TEST_END, symbols=STOCKS, instance=instance)


@pytest.fixture(params=DIALECTS)
def materialized(request, build_once, copy_of_build, monkeypatch):
    """STOCKS materialized over [TEST_START, TEST_END], once per module and dialect: this test's own copy
    (database, Dagster instance) and the outcome of that materialize."""
    monkeypatch.setenv("FACTOR_PLATFORM_PRICE_SOURCE", "sample")
    db, instance = copy_of_build("stocks", request.param, _materialize_stocks)
    return db, instance, build_once("stocks", request.param, _materialize_stocks).value


@pytest.mark.slow
def test_materialize_computes_exact_figures_and_only_missing_partitions(materialized):
    db, instance, outcome = materialized
    assert outcome["failures"] == []
    days = _days()
    expected = {f"{d.isoformat()}|{s}" for d in days for s in STOCKS + ETFS}
    for asset in SYMBOL_DAY_ASSETS:
        assert instance.get_materialized_partitions(dg.AssetKey(asset)) == expected, asset
    assert instance.get_materialized_partitions(dg.AssetKey("company_profiles")) == set(STOCKS + ETFS)

    # Every OLS figure on the last session equals statsmodels on prices read back from the database.
    rows = db.read("symbol_factor_exposures", {"date": TEST_END, "factor": "market_beta"}).set_index("symbol")
    for symbol in STOCKS:
        fit = _ols_from_db(db, symbol, "SPY", TEST_END)
        row = rows.loc[symbol]
        np.testing.assert_allclose(
            [row.beta, row.alpha, row.r_squared, row.std_error, row.p_value, row.n_obs],
            [fit.params[1], fit.params[0], fit.rsquared, fit.bse[1], fit.pvalues[1], fit.nobs],
            rtol=1e-8,
            atol=1e-12,
        )
        # The sample source's planted beta is recovered within four standard errors.
        assert abs(row.beta - true_betas(symbol)["market_beta"]) < 4 * row.std_error
    assert set(db.read("symbol_factor_exposures", {"symbol": "AAA", "date": TEST_END})["factor"]) == {
        name for reg in load_regressions() for name in reg.factors
    }

    # Nothing is missing any more: the plan is empty and a re-run changes no row.
    before = {t: _dump(db, t) for t in ("prices", "symbol_factor_exposures", "symbol_metrics")}
    plan = plan_materialization(instance, db, start=TEST_START, end=TEST_END, symbols=STOCKS)
    assert plan.runs == []
    again = materialize(db, start=TEST_START, end=TEST_END, symbols=STOCKS, instance=instance)
    assert again["runs"] == 0
    for table, frame in before.items():
        pd.testing.assert_frame_equal(_dump(db, table), frame)


def test_no_look_ahead_and_rerun_is_identical(analytics, postgres_instance):
    """A date's figures are the same whether computed before or after later prices exist."""
    db, instance = analytics, postgres_instance
    early_end = _days()[4]
    materialize(db, start=TEST_START, end=early_end, symbols=["AAA"], instance=instance)
    early = {t: db.read(t, {"date": (TEST_START, early_end)}) for t in ("symbol_factor_exposures", "symbol_metrics")}
    materialize(db, start=TEST_START, end=TEST_END, symbols=["AAA"], instance=instance)
    assert db.max_date("prices") == TEST_END  # later prices now exist
    # Re-materialize the early rectangle with the later prices present.
    defs = load_definitions()
    run = PlannedRun("symbol_layer_job", tuple(SYMBOL_DAY_ASSETS), Rectangle(TEST_START, early_end, ("AAA",)))
    assert execute_run(defs, instance, run).success
    for table, frame in early.items():
        pd.testing.assert_frame_equal(db.read(table, {"date": (TEST_START, early_end)}), frame)


def test_a_symbol_missing_days_moves_no_other_symbol(materialized):
    db, instance, _ = materialized  # AAA and BBB (and CCC) materialized
    reference = db.read("symbol_factor_exposures", {"symbol": "AAA"})
    # BBB loses ten sessions of prices; AAA's figures must not move, BBB's windows reach further back.
    gap = sessions.sessions_in_range(dt.date(2025, 4, 1), dt.date(2025, 4, 14))
    db.delete("prices", {"symbol": "BBB", "date": (gap[0].date(), gap[-1].date())})
    defs = load_definitions()
    run = PlannedRun("symbol_layer_job", ("symbol_factor_exposures",), Rectangle(TEST_START, TEST_END, ("AAA", "BBB")))
    assert execute_run(defs, instance, run).success
    pd.testing.assert_frame_equal(db.read("symbol_factor_exposures", {"symbol": "AAA"}), reference)
    bbb = db.read("symbol_factor_exposures", {"symbol": "BBB", "factor": "market_beta", "date": TEST_END}).iloc[0]
    fit = _ols_from_db(db, "BBB", "SPY", TEST_END)
    assert bbb.n_obs == 90
    np.testing.assert_allclose(bbb.beta, fit.params[1], rtol=1e-8)


def test_missing_factor_etf_gives_no_row_and_a_failure(materialized):
    db, instance, _ = materialized  # AAA (and BBB, CCC) materialized
    db.delete("prices", {"symbol": "TLT"})
    defs = load_definitions()
    run = PlannedRun("symbol_layer_job", ("symbol_factor_exposures",), Rectangle(TEST_END, TEST_END, ("AAA",)))
    assert execute_run(defs, instance, run).success
    factors = set(db.read("symbol_factor_exposures", {"symbol": "AAA", "date": TEST_END})["factor"])
    assert "ir_beta" not in factors and "market_beta" in factors
    failures = db.read("symbol_failures", {"symbol": "AAA", "stage": "factor:ir_beta"})
    assert len(failures) == 1 and "TLT" in failures["error"].iloc[0]


def test_failed_symbol_is_recorded_retried_and_blocks_no_one(analytics, postgres_instance, monkeypatch):
    db, instance = analytics, postgres_instance
    monkeypatch.setenv("FACTOR_PLATFORM_MAX_ATTEMPTS", "2")
    first = materialize(db, start=TEST_END, end=TEST_END, symbols=["AAA", "FAILCO"], instance=instance)
    assert any(f.startswith("FAILCO prices") for f in first["failures"])
    assert db.read("symbol_factor_exposures", {"symbol": "AAA", "date": TEST_END}).shape[0] == 12
    row = db.read("symbol_failures", {"symbol": "FAILCO", "stage": "prices"}).iloc[0]
    assert (row.attempts, row.status) == (1, "open")
    # The next run retries it although Dagster has its partitions; the limit then marks it skipped.
    materialize(db, start=TEST_END, end=TEST_END, symbols=["AAA", "FAILCO"], instance=instance)
    row = db.read("symbol_failures", {"symbol": "FAILCO", "stage": "prices"}).iloc[0]
    assert (row.attempts, row.status) == (2, "skipped")
    third = materialize(db, start=TEST_END, end=TEST_END, symbols=["AAA", "FAILCO"], instance=instance)
    assert third["runs"] == 0  # skipped: no more fetches
