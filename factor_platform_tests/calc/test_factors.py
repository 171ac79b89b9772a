"""factor_exposures against statsmodels OLS and a scikit-learn ridge pipeline, window by window.

Every expected figure is re-fitted independently: for each (symbol, date, fit) the test builds the
window itself (rows <= date where the symbol and all the fit's ETFs have a return, the last
`window` of them) and fits it with the reference library.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from numpy.testing import assert_allclose
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from factor_platform.calc import factors as factors_module
from factor_platform.calc.factors import EXPOSURE_COLUMNS, FAILURE_COLUMNS, factor_exposures
from factor_platform.domain.factor_models import Regression, load_regressions

ETFS = ["SPY", "TLT", "VTV", "VUG", "MTUM", "QUAL", "IWM", "USMV"]
FLOATS = ["beta", "alpha", "r_squared", "std_error", "p_value"]

SMALL = [
    Regression("ols", {"market_beta": ("SPY",), "ir_beta": ("TLT",)}, window=20, min_obs=12),
    Regression("ridge", {"value": ("VTV",), "growth": ("VUG",), "size": ("IWM",)}, window=25, min_obs=15, alpha=0.7),
    Regression("spread", {"growth_value_spread": ("VUG", "VTV"), "size_spread": ("IWM", "SPY")}, window=30, min_obs=20),
]


def market(seed: int, rows: int, n_symbols: int, nan_fraction: float = 0.0, etf_nan_fraction: float = 0.0):
    """Wide returns: correlated ETFs and symbols driven by them, first row NaN like simple_returns."""
    rng = np.random.default_rng(seed)
    index = pd.bdate_range("2023-01-02", periods=rows)
    etf = rng.normal(0.0004, 0.01, (rows, len(ETFS)))
    etf[:, 2:] += 0.8 * etf[:, [0]]
    loadings = rng.normal(0.5, 0.4, (len(ETFS), n_symbols))
    sym = 0.001 + etf @ loadings + rng.normal(0, 0.012, (rows, n_symbols))
    sym[rng.random(sym.shape) < nan_fraction] = np.nan
    etf[rng.random(etf.shape) < etf_nan_fraction] = np.nan
    frame = pd.DataFrame(np.hstack([sym, etf]), index=index, columns=[f"S{i}" for i in range(n_symbols)] + ETFS)
    frame.iloc[0] = np.nan
    return frame


def reference(returns: pd.DataFrame, regressions, symbols, dates) -> pd.DataFrame:
    """statsmodels / scikit-learn fits of independently built windows (rows <= date)."""
    out = []
    for d in pd.DatetimeIndex(dates):
        past = returns.loc[:d]
        for s in symbols:
            y = past[s].to_numpy()
            for reg in regressions:
                if reg.method == "ridge":
                    x = np.column_stack([past[t[0]].to_numpy() for t in reg.factors.values()])
                    ok = ~np.isnan(y) & ~np.isnan(x).any(axis=1)
                    yw, xw = y[ok][-reg.window :], x[ok][-reg.window :]
                    if len(yw) < reg.min_obs:
                        continue
                    pipe = make_pipeline(StandardScaler(), Ridge(alpha=reg.alpha)).fit(xw, yw)
                    scaler, ridge = pipe[0], pipe[1]
                    beta = ridge.coef_ / scaler.scale_
                    alpha = ridge.intercept_ - (ridge.coef_ * scaler.mean_ / scaler.scale_).sum()
                    r2 = pipe.score(xw, yw)
                    for j, name in enumerate(reg.factors):
                        out.append((s, d, name, beta[j], alpha, r2, np.nan, np.nan, len(yw), "ridge"))
                    continue
                for name, tickers in reg.factors.items():
                    x = past[tickers[0]].to_numpy()
                    if reg.method == "spread":
                        x = x - past[tickers[1]].to_numpy()
                    ok = ~np.isnan(y) & ~np.isnan(x)
                    yw, xw = y[ok][-reg.window :], x[ok][-reg.window :]
                    if len(yw) < reg.min_obs:
                        continue
                    fit = sm.OLS(yw, sm.add_constant(xw)).fit()
                    out.append(
                        (
                            s,
                            d,
                            name,
                            fit.params[1],
                            fit.params[0],
                            fit.rsquared,
                            fit.bse[1],
                            fit.pvalues[1],
                            int(fit.nobs),
                            reg.method,
                        )
                    )
    return pd.DataFrame(out, columns=EXPOSURE_COLUMNS)


def assert_matches(got: pd.DataFrame, expected: pd.DataFrame, rtol=1e-8, atol=1e-12):
    keys = ["symbol", "date", "factor"]
    got = got.sort_values(keys).reset_index(drop=True)
    expected = expected.sort_values(keys).reset_index(drop=True)
    assert len(got) == len(expected)
    pd.testing.assert_frame_equal(got[keys], expected[keys], check_dtype=False)
    assert (got["method"].to_numpy() == expected["method"].to_numpy()).all()
    assert (got["n_obs"].to_numpy() == expected["n_obs"].to_numpy()).all()
    for col in FLOATS:
        assert_allclose(
            got[col].to_numpy(), expected[col].to_numpy(), rtol=rtol, atol=atol, equal_nan=True, err_msg=col
        )


@pytest.fixture(params=["running sums", "exact refit"])
def path(request, monkeypatch):
    """Run each case through the fast path and with every window re-fitted from its rows."""
    if request.param == "exact refit":
        monkeypatch.setattr(factors_module, "_SUMS_RTOL", 0.0)
    return request.param


@pytest.mark.parametrize(
    "seed, rows, n_symbols, nan_fraction, etf_nan_fraction, n_dates",
    [
        (1, 45, 3, 0.0, 0.0, 12),
        (2, 70, 4, 0.1, 0.0, 15),
        (3, 70, 3, 0.3, 0.05, 20),
        (4, 90, 2, 0.5, 0.0, 25),
    ],
)
def test_small_windows_match_references(path, seed, rows, n_symbols, nan_fraction, etf_nan_fraction, n_dates):
    returns = market(seed, rows, n_symbols, nan_fraction, etf_nan_fraction)
    symbols = [c for c in returns.columns if c.startswith("S")]
    dates = returns.index[-n_dates:]
    got, failures = factor_exposures(returns, SMALL, symbols=symbols, dates=dates)
    expected = reference(returns, SMALL, symbols, dates)
    assert len(expected) > 0
    assert_matches(got, expected)
    # every (symbol, factor) without a row on some date has a failure
    names = [n for reg in SMALL for n in reg.factors]
    present = set(zip(got["symbol"], got["date"], got["factor"], strict=False))
    missing = {(s, f) for s in symbols for d in dates for f in names if (s, d, f) not in present}
    assert set(zip(failures["symbol"], failures["stage"].str.removeprefix("factor:"), strict=False)) == missing


def test_contract_factors_match_references(path):
    regressions = load_regressions()
    returns = market(11, 260, 3, nan_fraction=0.05)
    symbols = ["S0", "S1", "S2", "SPY"]
    dates = returns.index[-40::13]
    got, failures = factor_exposures(returns, regressions, symbols=symbols, dates=dates)
    expected = reference(returns, regressions, symbols, dates)
    assert set(expected["factor"]) == {n for reg in regressions for n in reg.factors}
    # SPY on SPY: statsmodels' std_error is rounding noise (~1e-17) where ours is exactly 0
    spy_on_spy = (got["symbol"] == "SPY") & (got["factor"] == "market_beta")
    assert_allclose(got.loc[spy_on_spy, ["beta", "r_squared"]], 1.0, rtol=1e-12)
    expected_spy = (expected["symbol"] == "SPY") & (expected["factor"] == "market_beta")
    assert_matches(got[~spy_on_spy], expected[~expected_spy])
    assert failures.empty


def test_etf_regressed_on_itself_is_a_perfect_fit():
    returns = market(5, 80, 1)
    got, failures = factor_exposures(returns, SMALL[:1], symbols=["SPY"], dates=returns.index[-5:])
    spy = got[got["factor"] == "market_beta"]
    assert len(spy) == 5 and failures.empty
    assert_allclose(spy["beta"], 1.0, rtol=1e-12)
    assert_allclose(spy["alpha"], 0.0, atol=1e-15)
    assert_allclose(spy["r_squared"], 1.0, rtol=1e-12)
    assert (spy["std_error"] < 1e-12).all() and (spy["p_value"] < 1e-12).all()


def test_near_perfect_fits_are_refitted_and_match_statsmodels(monkeypatch):
    returns = market(6, 120, 2)
    rng = np.random.default_rng(6)
    returns["TWIN"] = returns["SPY"] + 1e-5 * rng.normal(size=len(returns))  # R^2 ~ 0.99999
    returns.iloc[0] = np.nan
    refitted = []
    original = factors_module._refit_exact

    def spy(*args, **kwargs):
        refitted.append(len(args[3]))
        return original(*args, **kwargs)

    monkeypatch.setattr(factors_module, "_refit_exact", spy)
    dates = returns.index[-30:]
    got, _ = factor_exposures(returns, SMALL, symbols=["S0", "TWIN"], dates=dates)
    assert sum(refitted) >= 30  # at least TWIN's market_beta windows took the exact path
    expected = reference(returns, SMALL, ["S0", "TWIN"], dates)
    assert (
        expected.loc[expected["symbol"].eq("TWIN") & expected["factor"].eq("market_beta"), "r_squared"] > 0.9999
    ).all()
    assert_matches(got, expected)


def test_windows_count_returns_not_sessions():
    returns = market(8, 80, 2)
    returns["GAPPY"] = returns["S0"]
    holes = returns.index[[50, 55, 56, 60, 70, 71, 72]]
    returns.loc[holes, "GAPPY"] = np.nan
    reg = [Regression("ols", {"market_beta": ("SPY",)}, window=20, min_obs=12)]
    d = returns.index[-1]
    got, _ = factor_exposures(returns, reg, symbols=["S0", "GAPPY"], dates=[d])
    gappy = got.set_index("symbol").loc["GAPPY"]
    assert gappy["n_obs"] == 20
    # the window: the last 20 sessions on which GAPPY has a return, spanning 26 sessions
    rows = returns.index[returns["GAPPY"].notna()][-20:]
    assert len(returns.loc[rows[0] :]) == 26
    fit = sm.OLS(returns.loc[rows, "GAPPY"].to_numpy(), sm.add_constant(returns.loc[rows, "SPY"].to_numpy())).fit()
    assert_allclose(gappy["beta"], fit.params[1], rtol=1e-10)
    assert_allclose(gappy["std_error"], fit.bse[1], rtol=1e-10)
    # and not the fit over the last 20 sessions with the missing ones dropped
    last20 = returns.iloc[-20:][["GAPPY", "SPY"]].dropna()
    calendar = sm.OLS(last20["GAPPY"].to_numpy(), sm.add_constant(last20["SPY"].to_numpy())).fit()
    assert abs(gappy["beta"] - calendar.params[1]) > 1e-6


def test_one_symbols_missing_days_do_not_change_another():
    returns = market(9, 90, 3)
    symbols = ["S0", "S1", "S2"]
    dates = returns.index[-20:]
    before, _ = factor_exposures(returns, SMALL, symbols=symbols, dates=dates)
    holed = returns.copy()
    holed.loc[holed.index[np.random.default_rng(9).random(90) < 0.3], "S1"] = np.nan
    after, _ = factor_exposures(holed, SMALL, symbols=symbols, dates=dates)
    alone, _ = factor_exposures(returns, SMALL, symbols=["S2", "S0"], dates=dates)
    keys = ["symbol", "date", "factor"]

    def others(frame):
        return frame[frame["symbol"] != "S1"].sort_values(keys).reset_index(drop=True)

    pd.testing.assert_frame_equal(others(before), others(after), rtol=1e-13)
    pd.testing.assert_frame_equal(others(before), others(alone), rtol=1e-13)
    assert not np.allclose(
        before[before["symbol"] == "S1"].sort_values(keys)["beta"],
        after[after["symbol"] == "S1"].sort_values(keys)["beta"],
    )


def test_no_look_ahead():
    returns = market(10, 100, 3, nan_fraction=0.1)
    symbols = ["S0", "S1", "S2"]
    early = returns.index[60:70]
    full, full_fail = factor_exposures(returns, SMALL, symbols=symbols, dates=early)
    cut, cut_fail = factor_exposures(returns.loc[: early[-1]], SMALL, symbols=symbols, dates=early)
    later = returns.copy()
    later.iloc[71:] = later.iloc[71:] * 50 + 0.3  # wildly different future
    changed, _ = factor_exposures(later, SMALL, symbols=symbols, dates=early)
    pd.testing.assert_frame_equal(full, cut, rtol=1e-13)
    pd.testing.assert_frame_equal(full, changed, rtol=1e-13)
    pd.testing.assert_frame_equal(full_fail, cut_fail)


def test_dates_between_rows_use_rows_on_or_before():
    returns = market(12, 60, 2)
    friday = returns.index[returns.index.day_of_week == 4][-2]
    saturday = friday + pd.Timedelta(days=1)
    assert saturday not in returns.index
    on_friday, _ = factor_exposures(returns, SMALL, symbols=["S0", "S1"], dates=[friday])
    on_saturday, _ = factor_exposures(returns, SMALL, symbols=["S0", "S1"], dates=[saturday])
    assert (on_saturday["date"] == saturday).all()
    pd.testing.assert_frame_equal(on_friday.drop(columns="date"), on_saturday.drop(columns="date"))


def test_too_few_returns_no_row_and_a_failure():
    returns = market(13, 60, 2)
    returns.loc[: returns.index[44], "S1"] = np.nan  # S1 has returns from row 45 on: 15 by the end
    reg = [Regression("ols", {"market_beta": ("SPY",)}, window=20, min_obs=12)]
    dates = returns.index[-10:]  # S1 has 6..15 returns on these dates: fails on the first six
    got, failures = factor_exposures(returns, reg, symbols=["S0", "S1"], dates=dates)
    s1 = got[got["symbol"] == "S1"]
    assert list(s1["date"]) == list(dates[6:]) and list(s1["n_obs"]) == [12, 13, 14, 15]
    assert len(got[got["symbol"] == "S0"]) == 10
    assert failures.to_dict("records") == [
        {
            "symbol": "S1",
            "stage": "factor:market_beta",
            "date": dates[5],
            "error": f"market_beta: 11 returns in the 20-return window on {dates[5]:%Y-%m-%d}, need 12",
        }
    ]


def test_missing_etf_no_row_and_a_failure_naming_it():
    returns = market(14, 60, 2).drop(columns=["TLT"])
    returns["VTV"] = np.nan
    dates = returns.index[-3:]
    got, failures = factor_exposures(returns, SMALL, symbols=["S0", "S1"], dates=dates)
    assert set(got["factor"]) == {"market_beta", "size_spread"}  # ridge and VUG-VTV need VTV
    by_stage = failures.set_index(["symbol", "stage"])["error"]
    assert by_stage[("S0", "factor:ir_beta")] == "ir_beta: factor ETF TLT has no prices"
    assert by_stage[("S1", "factor:growth")] == "growth: factor ETF VTV has no returns in the loaded range"
    assert by_stage[("S1", "factor:growth_value_spread")].startswith("growth_value_spread: factor ETF VTV")
    assert len(failures) == 2 * 5 and (failures["date"] == dates[-1]).all()


def test_constant_symbol_return_is_a_failure():
    returns = market(15, 50, 1)
    returns["FLAT"] = 0.0
    returns.iloc[0] = np.nan
    got, failures = factor_exposures(returns, SMALL, symbols=["FLAT", "S0"], dates=returns.index[-2:])
    assert (got["symbol"] == "S0").all() and len(got) == 2 * 7
    assert set(failures["symbol"]) == {"FLAT"} and len(failures) == 7
    assert failures["error"].str.contains("no variance").all()


def test_frame_schema():
    returns = market(16, 50, 2)
    got, failures = factor_exposures(returns, SMALL, symbols=["S1", "S0"], dates=returns.index[-3:])
    assert list(got.columns) == EXPOSURE_COLUMNS and list(failures.columns) == FAILURE_COLUMNS
    assert got["date"].dtype == "datetime64[ns]" and got["n_obs"].dtype == np.int64
    assert all(got[c].dtype == np.float64 for c in FLOATS)
    assert got[["beta", "alpha", "r_squared"]].notna().all().all()
    ols = got["method"] != "ridge"
    assert got.loc[ols, ["std_error", "p_value"]].notna().all().all()
    assert got.loc[~ols, ["std_error", "p_value"]].isna().all().all()
    assert not got.duplicated(["symbol", "date", "factor"]).any()
    assert list(dict.fromkeys(got["factor"])) == [n for reg in SMALL for n in reg.factors]
    assert list(dict.fromkeys(got["symbol"])) == ["S1", "S0"]
    empty, none = factor_exposures(returns, SMALL, symbols=[], dates=returns.index[-3:])
    assert empty.empty and list(empty.columns) == EXPOSURE_COLUMNS and none.empty
    assert list(none.columns) == FAILURE_COLUMNS and empty["date"].dtype == "datetime64[ns]"


def test_bad_inputs_raise():
    returns = market(17, 30, 1)
    with pytest.raises(ValueError, match="no column for symbols"):
        factor_exposures(returns, SMALL, symbols=["NOPE"], dates=returns.index[-1:])
    with pytest.raises(ValueError, match="sorted"):
        factor_exposures(returns.iloc[::-1], SMALL, symbols=["S0"], dates=returns.index[-1:])
    with pytest.raises(ValueError, match="defined twice"):
        factor_exposures(returns, SMALL + SMALL[:1], symbols=["S0"], dates=returns.index[-1:])
    with pytest.raises(ValueError, match="Regression"):
        factor_exposures(returns, [{"method": "ols"}], symbols=["S0"], dates=returns.index[-1:])
    with pytest.raises(ValueError, match="tz-naive"):
        factor_exposures(returns, SMALL, symbols=["S0"], dates=[pd.Timestamp("2023-02-01", tz="UTC")])
