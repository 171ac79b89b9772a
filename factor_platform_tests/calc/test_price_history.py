"""Re-basing vs restatement of re-read prices, on hand-worked overlaps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from factor_platform.calc.price_history import common_factor, rebase, reconcile, unexplained_breaks

DAYS = pd.bdate_range("2024-03-04", periods=5)
TOL = 1e-6


def rows(close, adj=None, volume=None):
    return pd.DataFrame({
        "date": DAYS[: len(close)], "open": close, "high": close, "low": close, "close": close,
        "adj_close": adj if adj is not None else [np.nan] * len(close),
        "volume": pd.array(volume if volume is not None else [1000] * len(close), dtype="Int64"),
    })


STORED = rows([100.0, 102.0, 104.0, 98.0, 100.0], adj=[99.0, 101.0, 103.0, 97.0, 99.0])


def test_a_split_re_based_into_history_is_one_common_factor_and_no_restatement():
    fetched = STORED.assign(close=STORED["close"] / 4, adj_close=STORED["adj_close"] / 4)
    result = reconcile(STORED, fetched, tolerance=TOL)
    assert (result.close_factor, result.adj_factor, result.restated_dates) == (pytest.approx(0.25), pytest.approx(0.25), [])
    assert result.rebased and result.changed_from is None


def test_a_dividend_re_based_into_adj_close_leaves_close_alone():
    fetched = STORED.assign(adj_close=STORED["adj_close"] * 0.98)
    result = reconcile(STORED, fetched, tolerance=TOL)
    assert (result.close_factor, result.adj_factor, result.rebased) == (1.0, pytest.approx(0.98), True)


def test_one_corrected_close_is_a_restatement_of_that_day():
    fetched = STORED.copy()
    fetched.loc[2, "close"] *= 1.03
    result = reconcile(STORED, fetched, tolerance=TOL)
    assert (result.close_factor, result.rebased, result.restated_dates) == (1.0, False, [DAYS[2]])


def test_a_split_the_old_export_had_on_its_ex_date_but_not_in_history_is_both():
    # stored: pre-split history, the ex-date DAYS[2] already post-split (a fake -75 % return stored)
    stored = rows([100.0, 104.0, 26.0, 27.0, 26.5])
    fetched = rows([25.0, 26.0, 26.0, 27.0, 26.5])
    result = reconcile(stored, fetched, tolerance=TOL)
    assert result.close_factor == pytest.approx(0.25)
    assert result.changed_from == DAYS[2] and result.restated_dates == list(DAYS[2:])


def test_a_value_present_on_one_side_only_is_restated_and_tiny_noise_is_nothing():
    fetched = STORED.assign(close=STORED["close"] * (1 + 1e-9))
    fetched.loc[4, "adj_close"] = np.nan
    result = reconcile(STORED, fetched, tolerance=TOL)
    assert (result.close_factor, result.adj_factor, result.restated_dates) == (1.0, 1.0, [DAYS[4]])


def test_common_factor_prefers_the_earliest_run_of_equal_ratios():
    assert common_factor(np.array([1.03, 0.5, 0.5, 1.0]), TOL) == 0.5
    assert common_factor(np.array([0.7]), TOL) == 0.7
    assert common_factor(np.array([np.nan, 1.0 + 1e-9]), TOL) == 1.0


def test_rebase_scales_prices_by_their_factors_and_volume_inversely():
    out = rebase(STORED, close_factor=0.25, adj_factor=0.5)
    assert out["close"].tolist() == [25.0, 25.5, 26.0, 24.5, 25.0]
    assert out["open"].tolist() == out["close"].tolist() and out["adj_close"].iloc[0] == 49.5
    assert out["volume"].tolist() == [4000] * 5 and str(out["volume"].dtype) == "Int64"
    assert STORED["close"].iloc[0] == 100.0  # the input is not modified


def test_unexplained_breaks_flag_split_sized_moves_on_sessions_without_a_split():
    close = pd.DataFrame({"AAA": [100.0, 104.0, 26.0, 27.0, 27.0], "BBB": [10.0, 10.0, 21.0, 21.0, 10.4],
                          "CCC": [50.0, 51.0, 50.0, 49.0, 50.0]}, index=DAYS)
    splits = pd.DataFrame({"symbol": ["AAA"], "date": [DAYS[2]], "value": [4.0]})
    found = unexplained_breaks(close, splits)
    assert list(zip(found["symbol"], found["date"])) == [("BBB", DAYS[2]), ("BBB", DAYS[4])]
    assert found["return"].tolist() == pytest.approx([1.1, 10.4 / 21 - 1])
    assert len(unexplained_breaks(close, splits.iloc[:0])) == 3
