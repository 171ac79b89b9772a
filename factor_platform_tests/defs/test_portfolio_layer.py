"""The portfolio layer through Dagster, every figure against a loop written here from the contract."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from factor_platform.domain import sessions
from factor_platform.domain.stress_scenarios import load_stress_scenarios
from factor_platform.layers.books import import_portfolio
from factor_platform.running.execution import materialize
from factor_platform_tests.defs.conftest import DIALECTS, TEST_END, TEST_START, Snapshot

DAYS = sessions.sessions_in_range(TEST_START, TEST_END)
EXIT = DAYS[5].date()


def _build(db, instance, env, folder) -> None:
    env.setenv("FACTOR_PLATFORM_PRICE_SOURCE", "sample")
    csv = folder / "book.csv"
    csv.write_text(
        "symbol,quantity,position_type,investment_class,entry_price,entry_date,exit_date,exit_price\n"
        f"AAA,100,LONG,PUBLIC,50,{TEST_START},,\n"
        f"BBB,40,SHORT,PUBLIC,80,{DAYS[2].date()},,\n"
        f"CCC,30,LONG,PUBLIC,20,{TEST_START},{EXIT},25\n"
    )
    import_portfolio(db, csv, portfolio_id="book", equity=100_000)
    outcome = materialize(db, start=TEST_START, end=TEST_END, portfolios=["book"], instance=instance)
    assert outcome["failures"] == []


@pytest.fixture(scope="module", params=DIALECTS)
def built(request, build_once) -> Snapshot:
    """The book materialized once per dialect, for the tests that only read it (`built.db`)."""
    return build_once("book", request.param, _build)


@pytest.fixture
def built_copy(built, copy_of_build, monkeypatch):
    """A copy of `built` (the analytics database and the Dagster instance), for a test that changes it."""
    monkeypatch.setenv("FACTOR_PLATFORM_PRICE_SOURCE", "sample")
    return copy_of_build("book", built.db.dialect, _build)


def _prices(db):
    rows = db.read("prices", {"symbol": ["AAA", "BBB", "CCC"], "date": (TEST_START, TEST_END)})
    rows["P"] = rows["adj_close"].fillna(rows["close"])
    return rows.pivot(index="date", columns="symbol", values="P")


def test_snapshots_follow_the_contract_day_by_day(built):
    db = built.db
    P = _prices(db)
    lots = [
        ("AAA", 100, 50.0, DAYS[0], None, None),
        ("BBB", -40, 80.0, DAYS[2], None, None),
        ("CCC", 30, 20.0, DAYS[0], pd.Timestamp(EXIT), 25.0),
    ]
    equity, cumulative, expected = 100_000.0, 0.0, []
    for i, d in enumerate(DAYS):
        pnl, long_, short, n = 0.0, 0.0, 0.0, 0
        for sym, q, entry, start, exit_, exit_price in lots:
            if d < start:
                continue
            if exit_ is not None and d >= exit_:
                if i > 0 and DAYS[i - 1] < exit_:  # closed on d: exit price against yesterday's
                    pnl += q * (exit_price - P.loc[DAYS[i - 1], sym])
                continue
            n += 1
            pnl += q * (P.loc[d, sym] - (entry if d == start else P.loc[DAYS[i - 1], sym]))
            value = q * P.loc[d, sym]
            long_, short = (long_ + value, short) if value > 0 else (long_, short + value)
        previous = equity
        cumulative += pnl
        equity = 100_000.0 + cumulative
        expected.append(
            (
                d,
                pnl,
                pnl / previous,
                cumulative,
                equity,
                long_,
                short,
                long_ - short,
                long_ + short,
                equity - (long_ + short),
                n,
            )
        )
    want = pd.DataFrame(
        expected,
        columns=[
            "date",
            "daily_pnl",
            "daily_return",
            "cumulative_pnl",
            "equity",
            "long_exposure",
            "short_exposure",
            "gross_exposure",
            "net_exposure",
            "cash",
            "n_positions",
        ],
    )
    got = db.read("portfolio_snapshots", {"portfolio_id": "book"}).sort_values("date").reset_index(drop=True)
    assert got["is_complete"].all()
    for column in want.columns[1:]:
        np.testing.assert_allclose(
            got[column].to_numpy(float), want[column].to_numpy(float), rtol=1e-9, atol=1e-6, err_msg=column
        )


def test_factor_exposures_use_signed_exposure_for_every_factor_and_stress_follows(built):
    db = built.db
    day = TEST_END
    values = db.read("position_values", {"portfolio_id": "book", "date": day})
    positions = db.read("positions", {"portfolio_id": "book"})[["position_id", "symbol"]]
    values = values.merge(positions, on="position_id")
    equity = db.read("portfolio_snapshots", {"portfolio_id": "book", "date": day})["equity"].iloc[0]
    betas = db.read("symbol_factor_exposures", {"symbol": ["AAA", "BBB"], "date": day})
    got = db.read("portfolio_factor_exposures", {"portfolio_id": "book", "date": day}).set_index("factor")
    for factor, group in betas.groupby("factor"):
        beta = sum(
            row.exposure / equity * group.loc[group["symbol"] == row.symbol, "beta"].iloc[0]
            for row in values.itertuples()
        )
        np.testing.assert_allclose(got.loc[factor, "beta"], beta, rtol=1e-9, err_msg=factor)
        np.testing.assert_allclose(got.loc[factor, "exposure_dollar"], beta * equity, rtol=1e-9)
    # The short's interest-rate beta enters with its sign, never through |market value|.
    short = values[values["symbol"] == "BBB"].iloc[0]
    assert short.exposure < 0
    bbb_ir = betas[(betas.symbol == "BBB") & (betas.factor == "ir_beta")]["beta"].iloc[0]
    aaa = values[values["symbol"] == "AAA"].iloc[0]
    aaa_ir = betas[(betas.symbol == "AAA") & (betas.factor == "ir_beta")]["beta"].iloc[0]
    np.testing.assert_allclose(
        got.loc["ir_beta", "beta"], (aaa.exposure * aaa_ir + short.exposure * bbb_ir) / equity, rtol=1e-9
    )

    stress = db.read("stress_results", {"portfolio_id": "book", "date": day}).set_index("scenario")
    scenarios = load_stress_scenarios()
    assert len(stress) == len(scenarios) >= 15
    for scenario in scenarios:
        pnl = sum(got.loc[f, "exposure_dollar"] * shock for f, shock in scenario.shocks.items() if f in got.index)
        np.testing.assert_allclose(stress.loc[scenario.name, "pnl"], pnl, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(stress.loc[scenario.name, "pnl_pct"], pnl / equity, rtol=1e-9, atol=1e-12)


def test_concentration_is_on_absolute_exposure(built):
    db = built.db
    values = db.read("position_values", {"portfolio_id": "book", "date": TEST_END})
    weights = values["exposure"].abs() / values["exposure"].abs().sum()
    risk = db.read("portfolio_risk", {"portfolio_id": "book", "date": TEST_END}).iloc[0]
    np.testing.assert_allclose(risk.hhi, (weights**2).sum(), rtol=1e-12)
    np.testing.assert_allclose(risk.effective_n, 1 / (weights**2).sum(), rtol=1e-12)
    np.testing.assert_allclose(risk.top3_weight, weights.sort_values(ascending=False).head(3).sum(), rtol=1e-12)


def test_a_changed_book_deletes_its_figures_and_the_next_materialize_recomputes_them(built_copy, tmp_path):
    import dagster as dg

    from factor_platform.layers.names import PORTFOLIO_ASSETS as TABLES

    db, postgres_instance = built_copy
    before = db.read("position_values", {"portfolio_id": "book", "date": TEST_END}).set_index("position_id")
    csv = tmp_path / "book.csv"
    csv.write_text(  # AAA doubled, CCC gone
        "symbol,quantity,position_type,investment_class,entry_price,entry_date,exit_date,exit_price\n"
        f"AAA,200,LONG,PUBLIC,50,{TEST_START},,\n"
        f"BBB,40,SHORT,PUBLIC,80,{DAYS[2].date()},,\n"
    )
    outcome = import_portfolio(db, csv, portfolio_id="book", equity=100_000)
    assert outcome["status"] == "updated" and outcome["invalidated_rows"] > 0
    assert all(db.count_by(t, "portfolio_id") == {} for t in TABLES)  # deleted with the book, in its transaction
    # Dagster still records every partition as materialized; the empty tables are what counts.
    assert len(postgres_instance.get_materialized_partitions(dg.AssetKey("portfolio_snapshots"))) == len(DAYS)

    again = materialize(db, start=TEST_START, end=TEST_END, portfolios=["book"], instance=postgres_instance)
    assert again["failures"] == [] and again["partitions"] == len(DAYS) * len(TABLES)
    after = db.read("position_values", {"portfolio_id": "book", "date": TEST_END}).set_index("position_id")
    assert after.loc["book:1", "market_value"] == pytest.approx(2 * before.loc["book:1", "market_value"])  # AAA
    assert sorted(after.index) == ["book:1", "book:2"]
    assert len(db.read("portfolio_snapshots", {"portfolio_id": "book"})) == len(DAYS)
    # and the next materialize has nothing left to do
    assert (
        materialize(db, start=TEST_START, end=TEST_END, portfolios=["book"], instance=postgres_instance)["partitions"]
        == 0
    )
