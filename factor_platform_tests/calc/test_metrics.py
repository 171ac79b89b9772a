"""symbol_metrics against an independent per-symbol computation (each symbol's own priced rows)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from factor_platform.calc.metrics import METRIC_COLUMNS, symbol_metrics

VALUES = METRIC_COLUMNS[2:]


def panel(seed: int, rows: int, n_symbols: int, nan_fraction: float = 0.0):
    rng = np.random.default_rng(seed)
    index = pd.bdate_range("2022-01-03", periods=rows)
    prices = 80.0 * np.exp(np.cumsum(rng.normal(0.0003, 0.02, (rows, n_symbols)), axis=0))
    prices[rng.random(prices.shape) < nan_fraction] = np.nan
    columns = [f"S{i}" for i in range(n_symbols)]
    close = prices * (1.0 + rng.uniform(0.0, 0.05, prices.shape))  # raw close differs from P
    return pd.DataFrame(prices, index, columns), pd.DataFrame(close, index, columns)


def reference(prices: pd.DataFrame, close: pd.DataFrame, symbols, dates) -> pd.DataFrame:
    """One symbol at a time on its priced rows: explicit windows with numpy."""
    out = []
    for s in symbols:
        p = prices[s].dropna()
        c = close[s].reindex(p.index).to_numpy()
        values = p.to_numpy()
        daily = values[1:] / values[:-1] - 1.0  # daily[i - 1] = return on priced row i
        for d in pd.DatetimeIndex(dates):
            if d not in p.index:
                continue
            j = p.index.get_loc(d)
            row = {"symbol": s, "date": d}
            for k in (1, 5, 21, 63, 252):
                row[f"return_{k}d"] = values[j] / values[j - k] - 1.0 if j >= k else np.nan
            for k in (21, 63):
                window = daily[j - k : j]
                row[f"volatility_{k}d"] = np.std(window, ddof=1) * np.sqrt(252) if j >= k else np.nan
            window = c[j - 251 : j + 1] if j >= 251 else np.array([np.nan])
            row["high_52w"] = np.max(window)  # NaN if any close in the window is missing
            row["low_52w"] = np.min(window)
            out.append(row)
    return pd.DataFrame(out, columns=METRIC_COLUMNS)


def assert_matches(got: pd.DataFrame, expected: pd.DataFrame):
    keys = ["symbol", "date"]
    got = got.sort_values(keys).reset_index(drop=True)
    expected = expected.sort_values(keys).reset_index(drop=True)
    assert len(got) == len(expected)
    pd.testing.assert_frame_equal(got[keys], expected[keys], check_dtype=False)
    for col in VALUES:
        assert_allclose(got[col].to_numpy(), expected[col].to_numpy(), rtol=1e-10, atol=0, equal_nan=True, err_msg=col)


@pytest.mark.parametrize(
    "seed, rows, n_symbols, nan_fraction, n_dates",
    [(1, 10, 2, 0.0, 10), (2, 300, 3, 0.0, 40), (3, 330, 4, 0.1, 60), (4, 400, 2, 0.4, 100)],
)
def test_matches_reference(seed, rows, n_symbols, nan_fraction, n_dates):
    prices, close = panel(seed, rows, n_symbols, nan_fraction)
    symbols = list(prices.columns)
    dates = prices.index[-n_dates:]
    got = symbol_metrics(prices, close, symbols=symbols, dates=dates)
    assert_matches(got, reference(prices, close, symbols, dates))


def test_horizons_count_priced_rows_and_need_a_price_on_the_date():
    prices, close = panel(5, 300, 2)
    prices.iloc[-30::3, 1] = np.nan  # S1 misses every third of the last 30 sessions
    close.iloc[-30::3, 1] = np.nan
    dates = prices.index[-30:]
    got = symbol_metrics(prices, close, symbols=["S0", "S1"], dates=dates)
    s1 = got[got["symbol"] == "S1"].set_index("date")
    assert len(s1) == 20 and set(s1.index) == set(prices.index[-30:][prices["S1"].iloc[-30:].notna()])
    last = prices.index[-1]
    priced = prices["S1"].dropna()
    assert_allclose(s1.loc[last, "return_21d"], priced.iloc[-1] / priced.iloc[-22] - 1.0, rtol=1e-14)
    assert_allclose(s1.loc[last, "return_5d"], priced.iloc[-1] / priced.iloc[-6] - 1.0, rtol=1e-14)
    # gaps stretch the horizon in sessions: 21 priced rows back is more than 21 sessions back
    assert prices.index.get_loc(priced.index[-22]) < len(prices) - 22
    assert_matches(got, reference(prices, close, ["S0", "S1"], dates))


def test_one_symbols_gaps_do_not_change_another():
    prices, close = panel(6, 280, 3)
    dates = prices.index[-20:]
    before = symbol_metrics(prices, close, symbols=["S0", "S1", "S2"], dates=dates)
    holed = prices.copy()
    holed.loc[holed.index[np.random.default_rng(6).random(280) < 0.3], "S1"] = np.nan
    after = symbol_metrics(holed, close, symbols=["S0", "S1", "S2"], dates=dates)
    alone = symbol_metrics(prices, close, symbols=["S2", "S0"], dates=dates)
    keys = ["symbol", "date"]

    def others(frame):
        return frame[frame["symbol"] != "S1"].sort_values(keys).reset_index(drop=True)

    pd.testing.assert_frame_equal(others(before), others(after))
    pd.testing.assert_frame_equal(others(before), others(alone))


def test_no_look_ahead():
    prices, close = panel(7, 300, 2, 0.05)
    dates = prices.index[260:280]
    full = symbol_metrics(prices, close, symbols=["S0", "S1"], dates=dates)
    cut = symbol_metrics(prices.loc[: dates[-1]], close.loc[: dates[-1]], symbols=["S0", "S1"], dates=dates)
    pd.testing.assert_frame_equal(full, cut)


def test_short_history_is_nan_not_missing():
    prices, close = panel(8, 70, 1)
    got = symbol_metrics(prices, close, symbols=["S0"], dates=prices.index[[0, 5, 21, 69]]).set_index("date")
    assert len(got) == 4
    first = got.iloc[0]
    assert first[VALUES].isna().all()
    assert np.isnan(got.iloc[1]["return_21d"]) and np.isfinite(got.iloc[1]["return_5d"])
    assert np.isnan(got.iloc[1]["volatility_21d"])
    assert np.isfinite(got.iloc[2]["volatility_21d"]) and np.isnan(got.iloc[2]["volatility_63d"])
    assert np.isfinite(got.iloc[3]["volatility_63d"]) and np.isnan(got.iloc[3]["return_252d"])
    assert got[["high_52w", "low_52w"]].isna().all().all()


def test_high_low_use_close_and_need_252_rows():
    prices, close = panel(9, 260, 1)
    got = symbol_metrics(prices, close, symbols=["S0"], dates=prices.index[[250, 251, 259]]).set_index("date")
    assert got[["high_52w", "low_52w"]].iloc[0].isna().all()
    assert_allclose(got["high_52w"].iloc[1], close["S0"].iloc[:252].max(), rtol=0)
    assert_allclose(got["low_52w"].iloc[2], close["S0"].iloc[8:260].min(), rtol=0)
    assert close["S0"].iloc[8:260].max() > prices["S0"].iloc[8:260].max()  # close, not P


def test_frame_schema_and_dates_without_rows():
    prices, close = panel(10, 30, 2)
    saturday = prices.index[prices.index.day_of_week == 4][0] + pd.Timedelta(days=1)
    got = symbol_metrics(prices, close, symbols=["S1", "S0"], dates=[saturday, prices.index[-1], prices.index[-2]])
    assert list(got.columns) == METRIC_COLUMNS
    assert got["date"].dtype == "datetime64[ns]"
    assert all(got[c].dtype == np.float64 for c in VALUES)
    assert list(got["symbol"]) == ["S1", "S1", "S0", "S0"]
    assert list(got["date"]) == [prices.index[-2], prices.index[-1]] * 2
    empty = symbol_metrics(prices, close, symbols=[], dates=prices.index)
    assert empty.empty and list(empty.columns) == METRIC_COLUMNS


def test_bad_inputs_raise():
    prices, close = panel(11, 10, 2)
    with pytest.raises(ValueError, match="no column for symbols"):
        symbol_metrics(prices, close, symbols=["S9"], dates=prices.index)
    with pytest.raises(ValueError, match="no column for symbols"):
        symbol_metrics(prices, close[["S0"]], symbols=["S0", "S1"], dates=prices.index)
    with pytest.raises(ValueError, match="same index"):
        symbol_metrics(prices, close.iloc[1:], symbols=["S0"], dates=prices.index)
    with pytest.raises(ValueError, match="sorted"):
        symbol_metrics(prices.iloc[::-1], close.iloc[::-1], symbols=["S0"], dates=prices.index)
    with pytest.raises(ValueError, match="<= 0"):
        symbol_metrics(prices.assign(S0=0.0), close, symbols=["S0"], dates=prices.index)


def test_missing_close_inside_the_window_blanks_the_range_only():
    prices, close = panel(12, 300, 1)
    close.iloc[100, 0] = np.nan  # P priced that day (adj_close), raw close missing
    # the 252-row windows ending on rows 260 and 299 both hold row 100
    got = symbol_metrics(prices, close, symbols=["S0"], dates=prices.index[[260, 299]]).set_index("date")
    assert got[["high_52w", "low_52w"]].isna().all().all()
    assert got[["return_252d", "volatility_63d"]].notna().all().all()
    later = symbol_metrics(prices, close, symbols=["S0"], dates=prices.index[[299]])
    assert_matches(later, reference(prices, close, ["S0"], prices.index[[299]]))
