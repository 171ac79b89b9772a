"""Re-basings, restatements and late rows of re-read prices, on hand-worked histories (also rounded to cents)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from factor_platform.calc.price_history import (
    compare_history,
    fits,
    price_tick,
    rebase,
    rebasing_factor,
    split_ratio,
    unexplained_breaks,
)

DAYS = pd.bdate_range("2024-03-04", periods=6)
TOL = 1e-6


def rows(close, adj=None, volume=None, days=DAYS):
    return pd.DataFrame(
        {
            "date": days[: len(close)],
            "open": close,
            "high": close,
            "low": close,
            "close": close,
            "adj_close": adj if adj is not None else [np.nan] * len(close),
            "volume": pd.array(volume if volume is not None else [1000] * len(close), dtype="Int64"),
        }
    )


STORED = rows([100.0, 102.0, 104.0, 98.0, 100.0], adj=[99.0, 101.0, 103.0, 97.0, 99.0])
RNG = np.random.default_rng(7)
RAW = 40 * np.cumprod(1 + 0.02 * RNG.standard_normal(250))  # prices as traded, full precision


def test_a_split_re_based_into_history_changes_levels_but_no_return():
    fetched = STORED.assign(close=STORED["close"] / 4, adj_close=STORED["adj_close"] / 4)
    change = compare_history(STORED, fetched, tolerance=TOL)
    assert (change.close_factor, change.adj_factor) == (pytest.approx(0.25), pytest.approx(0.25))
    assert change.rebased and change.returns_from is None and change.levels_from == DAYS[0]


def test_a_dividend_re_based_into_adj_close_leaves_close_and_returns_alone():
    change = compare_history(STORED, STORED.assign(adj_close=STORED["adj_close"] * 0.98), tolerance=TOL)
    assert (change.close_factor, change.adj_factor, change.returns_from, change.levels_from) == (
        1.0,
        pytest.approx(0.98),
        None,
        None,
    )


def test_one_corrected_close_changes_returns_and_levels_from_that_day():
    fetched = STORED.copy()
    fetched.loc[2, "close"] *= 1.03
    change = compare_history(STORED, fetched, tolerance=TOL)
    assert (change.close_factor, change.rebased, change.returns_from, change.levels_from) == (
        1.0,
        False,
        DAYS[2],
        DAYS[2],
    )


def test_a_late_row_inside_the_stored_span_changes_returns_from_its_day_and_later_sessions_are_new():
    stored = STORED.drop(index=2)
    fetched = pd.concat([STORED, rows([101.0], days=DAYS[5:])], ignore_index=True)
    change = compare_history(stored, fetched, tolerance=TOL)
    assert (change.returns_from, change.levels_from, change.rebased) == (DAYS[2], DAYS[2], False)
    assert compare_history(STORED, fetched, tolerance=TOL).returns_from is None  # DAYS[5] is after the store


def test_a_row_the_source_stops_returning_is_kept_and_is_no_change():
    change = compare_history(STORED, STORED.drop(index=[1]), tolerance=TOL)
    assert (change.returns_from, change.levels_from) == (None, None)


def test_tiny_noise_is_nothing_but_any_return_change_above_it_is_a_change():
    assert (
        compare_history(STORED, STORED.assign(close=STORED["close"] * (1 + 1e-15)), tolerance=TOL).returns_from is None
    )
    fetched = STORED.copy()
    fetched.loc[4, "close"] *= 1 + 1e-9  # below the detection tolerance, but the store mirrors the source
    assert compare_history(STORED, fetched, tolerance=TOL).returns_from == DAYS[4]


def test_price_tick_reads_the_vendors_rounding():
    assert price_tick([123.45, 0.5, 10.0]) == 0.01
    assert price_tick([123.456, 7.0]) == pytest.approx(0.001)
    assert price_tick(RAW) == 0.0
    assert price_tick([np.nan]) == 0.0


def test_a_rounded_re_basing_fits_its_factor_within_the_ticks_and_nothing_tighter():
    old, new = np.round(RAW, 2), np.round(RAW / 4, 2)
    assert fits(old, new, 0.25, tolerance=TOL).all()
    assert not (np.abs(new - old * 0.25) <= TOL * new).all()  # a flat relative tolerance would call it restated
    assert rebasing_factor(old, new, tolerance=TOL) == pytest.approx(0.25, rel=1e-3)
    assert rebasing_factor(old, old, tolerance=TOL) == 1.0


@pytest.mark.parametrize("ratio", [2.0, 3.0, 4.0, 5.0, 7.0, 10.0, 1.5, 0.1, 0.2, 20.0])
@pytest.mark.parametrize("decimals", [2, 4, None])
def test_split_ratio_recovers_clean_splits_within_the_vendors_rounding(ratio, decimals):
    def vendor(x):
        return x if decimals is None else np.round(x, decimals)

    old, new = vendor(RAW), vendor(RAW / ratio)
    assert split_ratio(old, new, tolerance=TOL) == pytest.approx(ratio)
    assert split_ratio(old, new, explained=ratio, tolerance=TOL) == 1.0  # a known split explains it
    if ratio == 4.0:
        assert split_ratio(old, new, explained=2.0, tolerance=TOL) == pytest.approx(2.0)  # two 2:1, one known


def test_an_unclean_factor_is_no_split():
    assert split_ratio(RAW, RAW * 0.37, tolerance=TOL) is None
    assert split_ratio(np.round(RAW, 2), np.round(RAW * 0.2503, 2), tolerance=TOL) is None


def test_rebase_scales_prices_by_their_factors_and_volume_inversely():
    out = rebase(STORED, close_factor=0.25, adj_factor=0.5)
    assert out["close"].tolist() == [25.0, 25.5, 26.0, 24.5, 25.0]
    assert out["open"].tolist() == out["close"].tolist() and out["adj_close"].iloc[0] == 49.5
    assert out["volume"].tolist() == [4000] * 5 and str(out["volume"].dtype) == "Int64"
    assert STORED["close"].iloc[0] == 100.0  # the input is not modified


def test_unexplained_breaks_flag_moves_beyond_the_threshold_on_sessions_without_an_action():
    close = pd.DataFrame(
        {
            "AAA": [100.0, 104.0, 26.0, 27.0, 27.0],
            "BBB": [10.0, 10.0, 21.0, 21.0, 10.4],
            "CCC": [50.0, 51.0, 50.0, 49.0, 50.0],
            "DDD": [10.0, 13.5, 13.5, 8.0, 8.0],
        },
        index=DAYS[:5],
    )
    actions = pd.DataFrame({"symbol": ["AAA"], "date": [DAYS[2]]})
    found = unexplained_breaks(close, actions, threshold=0.4)
    assert list(zip(found["symbol"], found["date"])) == [("BBB", DAYS[2]), ("BBB", DAYS[4]), ("DDD", DAYS[3])]
    assert found["return"].tolist() == pytest.approx([1.1, 10.4 / 21 - 1, 8 / 13.5 - 1])
    assert len(unexplained_breaks(close, actions.iloc[:0], threshold=0.4)) == 4
    assert len(unexplained_breaks(close, actions, threshold=0.6)) == 1  # only BBB's +110 %
