"""Black–Scholes and realized volatility against independent formulas written here."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from scipy.stats import norm

from factor_platform.calc.options import black_scholes, rolling_realized_volatility, year_fraction


def reference_bs(S, K, T, sigma, call, r=0.0, q=0.0):
    """Textbook Black–Scholes–Merton, scalar, with scipy.stats.norm."""
    d1 = (math.log(S / K) + (r - q + sigma**2 / 2) * T) / (sigma * math.sqrt(T))
    d2 = d1 - sigma * math.sqrt(T)
    if call:
        price = S * math.exp(-q * T) * norm.cdf(d1) - K * math.exp(-r * T) * norm.cdf(d2)
        delta = math.exp(-q * T) * norm.cdf(d1)
    else:
        price = K * math.exp(-r * T) * norm.cdf(-d2) - S * math.exp(-q * T) * norm.cdf(-d1)
        delta = -math.exp(-q * T) * norm.cdf(-d1)
    return price, delta


GRID = [
    # S, K, T, sigma, r, q
    (100.0, 100.0, 30 / 365, 0.25, 0.0, 0.0),
    (100.0, 90.0, 0.5, 0.40, 0.03, 0.0),
    (100.0, 120.0, 2.0, 0.15, 0.05, 0.02),
    (42.0, 40.0, 1 / 365, 0.80, 0.0, 0.01),
    (250.0, 300.0, 0.25, 0.35, -0.005, 0.0),
]


@pytest.mark.parametrize("S,K,T,sigma,r,q", GRID)
@pytest.mark.parametrize("call", [True, False])
def test_black_scholes_matches_textbook_formula(S, K, T, sigma, r, q, call):
    price, delta = black_scholes(S, K, T, sigma, is_call=call, rate=r, dividend_yield=q)
    want_price, want_delta = reference_bs(S, K, T, sigma, call, r, q)
    assert_allclose(price, want_price, rtol=1e-12, atol=1e-12)
    assert_allclose(delta, want_delta, rtol=1e-12, atol=1e-12)


def test_black_scholes_is_vectorized_and_satisfies_put_call_parity():
    rng = np.random.default_rng(7)
    n = 500
    S = rng.uniform(20, 200, n)
    K = S * rng.uniform(0.7, 1.3, n)
    T = rng.uniform(1 / 365, 3, n)
    sigma = rng.uniform(0.05, 1.0, n)
    r, q = 0.02, 0.01
    call, call_delta = black_scholes(S, K, T, sigma, is_call=True, rate=r, dividend_yield=q)
    put, put_delta = black_scholes(S, K, T, sigma, is_call=False, rate=r, dividend_yield=q)
    assert call.shape == (n,)
    assert_allclose(call - put, S * np.exp(-q * T) - K * np.exp(-r * T), atol=1e-9)
    assert_allclose(call_delta - put_delta, np.exp(-q * T), atol=1e-12)
    # delta is the derivative of the price in spot
    h = 1e-4 * S
    up, _ = black_scholes(S + h, K, T, sigma, is_call=True, rate=r, dividend_yield=q)
    down, _ = black_scholes(S - h, K, T, sigma, is_call=True, rate=r, dividend_yield=q)
    assert_allclose(call_delta, (up - down) / (2 * h), atol=1e-6)
    # a mixed is_call array prices each element by its own kind
    mixed, _ = black_scholes(S, K, T, sigma, is_call=np.arange(n) % 2 == 0, rate=r, dividend_yield=q)
    assert_allclose(mixed, np.where(np.arange(n) % 2 == 0, call, put))


def test_on_and_after_expiry_value_is_intrinsic_with_unit_delta():
    S = np.array([110.0, 90.0, 100.0, 110.0, 90.0, 100.0])
    K = 100.0
    calls = np.array([True, True, True, False, False, False])
    for T in (0.0, -5 / 365):
        price, delta = black_scholes(S, K, T, np.nan, is_call=calls)  # sigma is not needed
        assert_allclose(price, [10.0, 0.0, 0.0, 0.0, 10.0, 0.0])
        assert_allclose(delta, [1.0, 0.0, 0.0, 0.0, -1.0, 0.0])


def test_zero_volatility_is_the_limit_of_the_formula():
    price, delta = black_scholes([110.0, 90.0], 100.0, 0.5, 0.0, is_call=True, rate=0.02)
    assert_allclose(price, [110.0 - 100.0 * math.exp(-0.01), 0.0])
    assert_allclose(delta, [1.0, 0.0])
    near, _ = black_scholes([110.0, 90.0], 100.0, 0.5, 1e-6, is_call=True, rate=0.02)
    assert_allclose(price, near, atol=1e-8)


def test_nan_inputs_propagate_and_bad_inputs_raise():
    price, delta = black_scholes([np.nan, 100.0], 100.0, 0.5, [0.2, np.nan], is_call=True)
    assert np.isnan(price).all() and np.isnan(delta).all()
    with pytest.raises(ValueError, match="strike"):
        black_scholes(100.0, 0.0, 0.5, 0.2, is_call=True)
    with pytest.raises(ValueError, match="sigma"):
        black_scholes(100.0, 100.0, 0.5, -0.2, is_call=True)


def test_year_fraction_counts_calendar_days_over_365():
    got = year_fraction(
        pd.to_datetime(["2024-01-02", "2024-03-01", "2024-03-01"]),
        pd.to_datetime(["2024-01-31", "2024-03-01", "2024-02-01"]),
    )
    assert_allclose(got, [29 / 365, 0.0, -29 / 365])


def reference_volatility(history, window, min_obs):
    """Sample std of the last `window` returns of the priced values of `history`, x sqrt(252)."""
    kept = [p for p in history if not np.isnan(p)]
    returns = [kept[k] / kept[k - 1] - 1 for k in range(1, len(kept))][-window:]
    if len(returns) < min_obs:
        return np.nan
    mean = sum(returns) / len(returns)
    return math.sqrt(sum((r - mean) ** 2 for r in returns) / (len(returns) - 1)) * math.sqrt(252)


@pytest.mark.parametrize("window, min_obs", [(63, None), (63, 40), (10, 10)])
def test_rolling_realized_volatility_counts_returns_and_matches_a_loop(window, min_obs):
    rng = np.random.default_rng(4)
    index = pd.bdate_range("2023-01-02", periods=150)
    frame = pd.DataFrame(
        100 * np.exp(np.cumsum(rng.normal(0, 0.015, (150, 3)), axis=0)), index=index, columns=["A", "B", "C"]
    )
    frame.iloc[[70, 71, 90], 0] = np.nan
    frame.iloc[:30, 1] = np.nan
    frame.iloc[:140, 2] = np.nan  # too short a history for any window here but the last
    rolled = rolling_realized_volatility(frame, window=window, min_obs=min_obs)
    need = window if min_obs is None else min_obs
    checked = 0
    for column in frame.columns:
        for t in range(len(index)):
            got = rolled[column].iloc[t]
            if np.isnan(frame[column].iloc[t]):
                assert np.isnan(got)
                continue
            want = reference_volatility(frame[column].iloc[: t + 1].tolist(), window, need)
            if np.isnan(want):
                assert np.isnan(got), (column, t)
            else:
                checked += 1
                assert got == pytest.approx(want, rel=1e-9), (column, t)
    assert checked > 100
    if window == 63 and min_obs is None:
        # B's first price is on row 30, so its 63rd return is on row 93
        assert np.isnan(rolled["B"].iloc[92]) and not np.isnan(rolled["B"].iloc[93])
        # after A's missing rows 70-71 the window still holds 63 returns (rows 10..72 less two)
        want = np.std(frame["A"].dropna().pct_change().loc[: index[72]].iloc[-63:], ddof=1) * math.sqrt(252)
        assert rolled["A"].iloc[72] == pytest.approx(want, rel=1e-12)


def test_rolling_realized_volatility_of_a_day_does_not_depend_on_where_the_history_starts():
    """Each figure is its own window's: the portfolio layer's roll forward reads less history than the roll
    from inception and must get the same bits (a running sum, like pandas' rolling std, does not)."""
    rng = np.random.default_rng(7)
    index = pd.bdate_range("2020-01-01", periods=1500)
    frame = pd.DataFrame({"A": 100 * np.exp(np.cumsum(rng.normal(0, 0.02, 1500)))}, index=index)
    whole = rolling_realized_volatility(frame)
    later = rolling_realized_volatility(frame.iloc[1234:])
    assert later["A"].notna().sum() > 200
    pd.testing.assert_series_equal(later["A"].dropna(), whole["A"].loc[later["A"].dropna().index], check_exact=True)
