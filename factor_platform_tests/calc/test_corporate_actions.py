"""A book across a split and a dividend (docs/contract-additions.md "Accounting across actions"),
on hand-worked cases: shares held × price as traded, and the dividend cash on its ex-date."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from factor_platform.calc.corporate_actions import basis_mismatches, dividend_events, to_stored_basis
from factor_platform.calc.portfolio import signed_quantity, snapshots, value_positions
from factor_platform.domain.positions import normalize_positions
from factor_platform_tests.calc.test_portfolio import S, frame, position, prices

SPLIT = pd.DataFrame({"symbol": ["AAA"], "date": [S[2]], "value": [4.0]})
DIVIDEND = pd.DataFrame({"symbol": ["BBB"], "date": [S[2]], "value": [0.5]})


def test_a_position_entered_before_a_split_holds_ratio_times_the_shares_at_the_stored_price():
    book = frame(
        position(1, "AAA", 100, 100.0, S[0]),
        position(2, "AAA", 10, 26.0, S[2]),
        position(3, "AAA", 20, 100.0, S[0], exit_date=S[1], exit_price=104.0),
    )
    stored = to_stored_basis(book, SPLIT)
    assert stored["quantity"].tolist() == [400.0, 10.0, 80.0]  # entered on the ex-date: already post-split
    assert stored["entry_price"].tolist() == [25.0, 26.0, 25.0]
    assert stored["exit_price"].iloc[2] == 26.0  # sold before the split at 104 as traded = 26 on the stored basis
    assert to_stored_basis(book, SPLIT.iloc[:0]) is book


def test_split_day_books_no_fake_return_and_equity_is_shares_times_traded_price():
    # traded: 100, 104, 26 (= 104 / 4, flat), 27; stored (split-adjusted) close: 25, 26, 26, 27
    book = to_stored_basis(frame(position(1, "AAA", 100, 100.0, S[0])), SPLIT)
    close = prices(AAA=[25.0, 26.0, 26.0, 27.0])
    values = value_positions(book, close, S[:4])
    assert values["market_value"].tolist() == [10_000.0, 10_400.0, 10_400.0, 10_800.0]
    snaps, _ = snapshots(book, values, S[:4], starting_equity=20_000.0, inception_date=S[0])
    assert snaps["daily_pnl"].tolist() == [0.0, 400.0, 0.0, 400.0]
    assert snaps["equity"].iloc[-1] == 20_000.0 + 100 * 4 * 27.0 - 100 * 100.0


def test_an_option_strike_follows_the_split_of_its_underlying():
    book = frame(
        position(
            1,
            "AAA240621C00100000",
            2,
            5.0,
            S[0],
            position_type="LC",
            investment_class="OPTIONS",
            underlying="AAA",
            strike=100.0,
            expiration="2024-06-21",
            option_type="CALL",
        )
    )
    stored = to_stored_basis(book, SPLIT)
    assert (stored["quantity"].iloc[0], stored["strike"].iloc[0], stored["entry_price"].iloc[0]) == (8.0, 25.0, 1.25)


def test_a_short_pays_and_a_long_receives_the_dividend_on_the_ex_date_only_if_held_into_it():
    book = normalize_positions(
        frame(
            position(1, "BBB", 50, 40.0, S[0], position_type="SHORT"),
            position(2, "BBB", 10, 40.5, S[2]),  # bought on the ex-date: no dividend
            position(3, "BBB", 20, 40.0, S[0], exit_date=S[2], exit_price=40.5),  # sold on the ex-date: paid
            position(4, "BBB", 5, 40.0, S[0], exit_date=S[1], exit_price=41.0),  # sold before it: nothing
        )
    )
    events = dividend_events(book, DIVIDEND, signed_quantity(book))
    assert events[["position_id", "pnl"]].values.tolist() == [[1, -25.0], [3, 10.0]]
    assert (events["date"] == S[2]).all() and (events["event"] == "dividend").all()


def test_dividend_is_pnl_on_its_ex_date_and_the_price_drop_is_offset():
    book = frame(position(1, "BBB", 100, 40.0, S[0]))
    close = prices(BBB=[40.0, 41.0, 40.5, 40.5])  # ex-date S[2]: 41 - 0.5 cash = 40.5
    values = value_positions(book, close, S[:4])
    snaps, pnl = snapshots(book, values, S[:4], starting_equity=10_000.0, inception_date=S[0], dividends=DIVIDEND)
    assert snaps["daily_pnl"].tolist() == [0.0, 100.0, 0.0, 0.0]
    assert pnl.loc[pnl["event"] == "dividend", "pnl"].tolist() == [50.0]
    without, _ = snapshots(book, values, S[:4], starting_equity=10_000.0, inception_date=S[0])
    assert without["daily_pnl"].tolist() == [0.0, 100.0, -50.0, 0.0]


def test_a_dividend_off_the_calendar_is_booked_on_the_next_session_and_none_after_the_last():
    book = frame(position(1, "BBB", 100, 40.0, S[0]))
    close = prices(BBB=[40.0, 40.0, 40.0])
    values = value_positions(book, close, S[:3])
    odd = pd.DataFrame({"symbol": ["BBB", "BBB"], "date": [pd.Timestamp("2024-01-13"), S[5]], "value": [1.0, 9.0]})
    # 2024-01-13 is a Saturday: booked on the next session of S[:3]? It is after S[2] = 2024-01-10: dropped
    snaps, _ = snapshots(book, values, S[:3], starting_equity=0.0, inception_date=S[0], dividends=odd)
    assert snaps["daily_pnl"].sum() == 0.0
    saturday = pd.DataFrame({"symbol": ["BBB"], "date": [pd.Timestamp("2024-01-06")], "value": [1.0]})
    late = frame(position(1, "BBB", 100, 40.0, "2024-01-05"))
    snaps, _ = snapshots(
        late, value_positions(late, close, S[:3]), S[:3], starting_equity=0.0, inception_date=S[0], dividends=saturday
    )
    assert snaps["daily_pnl"].tolist() == [100.0, 0.0, 0.0]


@pytest.mark.parametrize("kind", ["long", "short"])
def test_books_without_actions_are_unchanged(kind):
    book = frame(position(1, "CCC", 10, 20.0, S[0], position_type="LONG" if kind == "long" else "SHORT"))
    close = prices(CCC=[20.0, 21.0, 19.5])
    values = value_positions(book, close, S[:3])
    plain, _ = snapshots(book, values, S[:3], starting_equity=1_000.0, inception_date=S[0])
    other = pd.DataFrame({"symbol": ["ZZZ"], "date": [S[1]], "value": [3.0]})
    with_other, _ = snapshots(
        to_stored_basis(book, other), values, S[:3], starting_equity=1_000.0, inception_date=S[0], dividends=other
    )
    pd.testing.assert_frame_equal(plain, with_other)
    assert np.isfinite(plain["equity"]).all()


def test_an_options_volatility_comes_from_total_returns_not_from_the_ex_date_drop_of_close():
    book = frame(
        position(
            1,
            "BBB240621C00040000",
            1,
            2.0,
            S[0],
            position_type="LC",
            investment_class="OPTIONS",
            underlying="BBB",
            strike=40.0,
            expiration="2024-06-21",
            option_type="CALL",
        )
    )
    close = prices(BBB=[40.0, 40.4, 40.2, 36.5, 36.8, 37.0])  # a 3.6 dividend goes ex on S[3]
    total = prices(BBB=[40.0, 40.4, 40.2, 40.1, 40.42, 40.66])
    kw = dict(vol_window=4, vol_min_obs=4)
    mark = lambda **more: value_positions(book, close, S[:6], **kw, **more)["price"].iloc[-1]  # noqa: E731
    assert mark(returns_from=total) == pytest.approx(mark(returns_from=total * 2.0), rel=1e-12)  # returns, not levels
    assert mark(returns_from=close) == mark()  # the default is the valuation prices
    assert mark(returns_from=total) < mark()  # the ex-date drop is not volatility


def test_a_book_entered_on_another_basis_than_the_prices_is_named_with_its_factor():
    book = frame(
        position(1, "AAA", 100, 100.0, S[0]), position(2, "BBB", 10, 26.0, S[0]), position(3, "CCC", 5, 9.0, S[1])
    )
    traded = pd.DataFrame(
        {
            "symbol": ["AAA", "BBB", "CCC"],
            "date": [S[0], S[0], S[1]],
            "low": [24.0, 25.0, np.nan],
            "high": [26.0, 27.0, np.nan],
            "close": [25.0, 26.5, 10.0],
        }
    )
    found = basis_mismatches(book, traded)  # AAA's prices are ÷ 4 (a split the source re-based silently)
    assert found["position_id"].tolist() == [book["position_id"].iloc[0]]
    assert found["factor"].tolist() == [pytest.approx(4.0)]
    assert basis_mismatches(
        to_stored_basis(book, pd.DataFrame({"symbol": ["AAA"], "date": [S[1]], "value": [4.0]})), traded
    ).empty  # with the split known, the book is on the prices' basis
    assert basis_mismatches(book, traded.iloc[:0]).empty  # no price on the entry session: not judged
    odd = frame(position(4, "AAA", 100, 185.5, S[0]))  # 7.4× the close: far outside, but no split's factor
    assert basis_mismatches(odd, traded).empty
