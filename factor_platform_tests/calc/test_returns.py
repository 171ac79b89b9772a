"""simple_returns against a plain per-symbol loop, over a grid of shapes and NaN patterns."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from factor_platform.calc.returns import check_dates, simple_returns


def _reference(prices: pd.DataFrame) -> pd.DataFrame:
    """The definition, one symbol and one row at a time."""
    out = pd.DataFrame(np.nan, index=prices.index, columns=prices.columns)
    for col in prices.columns:
        last = None
        for i, value in enumerate(prices[col].to_numpy()):
            if math.isnan(value):
                continue
            if last is not None:
                out.iloc[i, out.columns.get_loc(col)] = value / last - 1.0
            last = value
    return out


def _prices(rng, rows, cols, nan_fraction):
    index = pd.bdate_range("2024-01-02", periods=rows)
    values = 50.0 * np.exp(np.cumsum(rng.normal(0, 0.02, (rows, cols)), axis=0))
    values[rng.random((rows, cols)) < nan_fraction] = np.nan
    return pd.DataFrame(values, index=index, columns=[f"S{i}" for i in range(cols)])


@pytest.mark.parametrize("rows, cols", [(1, 1), (2, 3), (30, 5), (120, 17)])
@pytest.mark.parametrize("nan_fraction", [0.0, 0.15, 0.6])
def test_matches_loop(rows, cols, nan_fraction):
    rng = np.random.default_rng(rows * 100 + cols + int(nan_fraction * 10))
    prices = _prices(rng, rows, cols, nan_fraction)
    got = simple_returns(prices)
    assert got.index.equals(prices.index) and list(got.columns) == list(prices.columns)
    assert_allclose(got.to_numpy(), _reference(prices).to_numpy(), rtol=1e-14, atol=0, equal_nan=True)


def test_gap_books_whole_move_on_first_priced_day():
    index = pd.bdate_range("2024-01-02", periods=6)
    prices = pd.DataFrame(
        {"A": [np.nan, 100.0, np.nan, np.nan, 110.0, 99.0], "B": [10.0, 11.0, 12.1, 12.1, np.nan, 13.31]}, index=index
    )
    got = simple_returns(prices)
    assert_allclose(got["A"], [np.nan, np.nan, np.nan, np.nan, 0.1, -0.1], rtol=1e-14, equal_nan=True)
    assert_allclose(got["B"], [np.nan, 0.1, 0.1, 0.0, np.nan, 0.1], rtol=1e-14, equal_nan=True)


def test_one_symbols_gaps_do_not_touch_another():
    rng = np.random.default_rng(7)
    prices = _prices(rng, 60, 3, 0.0)
    holed = prices.copy()
    holed.iloc[rng.random(60) < 0.4, 1] = np.nan
    a, b = simple_returns(prices), simple_returns(holed)
    pd.testing.assert_frame_equal(a[["S0", "S2"]], b[["S0", "S2"]])


def test_unsorted_index_is_rejected():
    prices = _prices(np.random.default_rng(1), 5, 2, 0.0)
    with pytest.raises(ValueError, match="sorted"):
        simple_returns(prices.iloc[::-1])
    with pytest.raises(ValueError, match="sorted"):
        simple_returns(pd.concat([prices, prices.iloc[[-1]]]))


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda f: f.reset_index(drop=True), "DatetimeIndex"),
        (lambda f: f.tz_localize("UTC"), "tz-naive"),
        (lambda f: f.set_axis(["S0", "S0"], axis=1), "duplicate columns"),
        (lambda f: f.assign(S0=-f["S0"]), "<= 0"),
        (lambda f: f.assign(S1=0.0), "<= 0"),
        (lambda f: f.assign(S1=np.inf), "infinite"),
        (lambda f: f.assign(S1="x"), "numeric"),
    ],
)
def test_bad_frames_are_rejected(mutate, message):
    prices = _prices(np.random.default_rng(2), 5, 2, 0.0)
    with pytest.raises(ValueError, match=message):
        simple_returns(mutate(prices))
    with pytest.raises(ValueError, match="DataFrame"):
        simple_returns(prices["S0"])


def test_check_dates_normalizes_to_sorted_unique_ns():
    got = check_dates(["2024-01-03", pd.Timestamp("2024-01-02"), np.datetime64("2024-01-03")])
    assert list(got) == [pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-03")]
    assert got.dtype == "datetime64[ns]"
    with pytest.raises(ValueError):
        check_dates([pd.Timestamp("2024-01-02", tz="UTC")])
    with pytest.raises(ValueError):
        check_dates(["not a date"])


def test_total_return_prices_add_each_dividend_back_on_its_ex_date():
    from factor_platform.calc.returns import total_return_prices

    index = pd.bdate_range("2024-01-01", periods=5)
    close = pd.DataFrame({"A": [10.0, 10.5, 10.2, np.nan, 10.4], "B": [5.0, 5.1, 5.2, 5.3, 5.4]}, index=index)
    cash = pd.DataFrame({"A": [0.0, 0.0, 0.3, 0.2, 0.0], "B": [0.0] * 5}, index=index)
    total = total_return_prices(close, cash)
    returns = simple_returns(total)
    # hand-worked: (10.2 + 0.3) / 10.5 - 1 = 0 on the ex-date; the unpriced day's 0.2 is added to the next price
    assert_allclose(returns["A"].to_numpy(), [np.nan, 0.05, 0.0, np.nan, (10.4 + 0.2) / 10.2 - 1], equal_nan=True)
    assert total["B"].equals(close["B"])  # a symbol without dividends keeps its close exactly
    assert total_return_prices(close, None).equals(close)
