"""Valuation and P&L (contract §4) on hand-worked cases, with the numbers worked out here."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from factor_platform.calc.portfolio import (
    SNAPSHOT_COLUMNS,
    VALUE_COLUMNS,
    snapshots,
    value_positions,
)

# Mon 8 Jan 2024 .. Fri 26 Jan 2024, without Mon 15 Jan (Martin Luther King Day).
S = pd.bdate_range("2024-01-08", "2024-01-26").drop(pd.Timestamp("2024-01-15"))
EQUITY = 1_000_000.0


def position(position_id, symbol, quantity, entry_price, entry_date, **fields):
    row = {
        "position_id": position_id,
        "portfolio_id": "P1",
        "symbol": symbol,
        "position_type": "LONG",
        "investment_class": "PUBLIC",
        "quantity": float(quantity),
        "entry_price": float(entry_price),
        "entry_date": pd.Timestamp(entry_date),
        "exit_date": pd.NaT,
        "exit_price": np.nan,
        "underlying": None,
        "strike": np.nan,
        "expiration": pd.NaT,
        "option_type": None,
        "manual_market_value": np.nan,
        "sector": None,
    }
    for key, value in fields.items():
        row[key] = pd.Timestamp(value) if key in ("exit_date", "expiration") else value
    return row


def frame(*rows):
    return pd.DataFrame(list(rows))


def prices(sessions=S, **columns):
    """Wide P frame; each column lists prices from the first session on (None = no price)."""
    data = {
        k: pd.Series([np.nan if v is None else v for v in vals], index=sessions[: len(vals)])
        for k, vals in columns.items()
    }
    return pd.DataFrame(data, index=sessions, dtype=float)


def run(positions, wide, sessions=S, inception=None, **kwargs):
    values = value_positions(positions, wide, sessions, **kwargs)
    snaps, pnl = snapshots(positions, values, sessions, starting_equity=EQUITY, inception_date=inception or sessions[0])
    return values, snaps.set_index("date"), pnl


def rows_of(values, position_id):
    return values.loc[values["position_id"] == position_id].set_index("date")


def test_output_columns():
    values, snaps, pnl = run(frame(position(1, "AAA", 1, 10, S[0])), prices(AAA=[10, 11]))
    assert list(values.columns) == VALUE_COLUMNS
    assert list(snaps.reset_index().columns) == SNAPSHOT_COLUMNS
    assert list(pnl.columns) == ["position_id", "date", "pnl", "event"]
    assert values["date"].dtype == "datetime64[ns]"


def test_open_and_close_on_the_same_day_books_exit_minus_entry_once():
    positions = frame(
        # entry and exit on the session S[2]: never counts, books 10 x (105 - 100) = 50 on S[2]
        position(1, "AAA", 10, 100, S[2], exit_date=S[2], exit_price=105),
        # entry Sat 13 Jan, exit Sun 14 Jan, next session Tue 16 Jan: books -4 x (52 - 50) = -8 there
        position(2, "BBB", 4, 50, "2024-01-13", position_type="SHORT", exit_date="2024-01-14", exit_price=52),
    )
    values, snaps, pnl = run(positions, prices(AAA=[99, 101, 103, 104, 107, 108], BBB=[49, 48, 47, 46, 45, 51, 53]))
    assert values.empty  # neither counts on any session
    assert snaps.loc[S[2], "daily_pnl"] == pytest.approx(50.0)
    assert snaps.loc[pd.Timestamp("2024-01-16"), "daily_pnl"] == pytest.approx(-8.0)
    assert snaps["daily_pnl"].sum() == pytest.approx(42.0)
    assert (snaps["n_positions"] == 0).all()
    assert snaps.loc[S[-1], "equity"] == pytest.approx(EQUITY + 42.0)
    assert sorted(pnl["event"]) == ["open_close", "open_close"]


def test_close_later_books_exit_price_against_the_last_price():
    # LONG 10 @ 100 on S[0]; P = 101, 103, 102 then exit on S[3] at 104 (P on S[3] = 999 is not used).
    positions = frame(position(1, "AAA", 10, 100, S[0], exit_date=S[3], exit_price=104))
    values, snaps, _ = run(positions, prices(AAA=[101, 103, 102, 999, 998]))
    assert list(rows_of(values, 1).index) == list(S[:3])  # not counted on the exit session
    expected = [10 * (101 - 100), 10 * (103 - 101), 10 * (102 - 103), 10 * (104 - 102)]
    assert snaps["daily_pnl"].iloc[:4].tolist() == pytest.approx(expected)
    assert (snaps["daily_pnl"].iloc[4:] == 0).all()
    assert snaps["n_positions"].iloc[:5].tolist() == [1, 1, 1, 0, 0]
    assert snaps.loc[S[3], "cumulative_pnl"] == pytest.approx(10 * (104 - 100))
    # S[1]: equity 1e6 + 30, long exposure 10 x 103
    assert snaps.loc[S[1], "equity"] == pytest.approx(EQUITY + 30)
    assert snaps.loc[S[1], "cash"] == pytest.approx(EQUITY + 30 - 1030)
    assert snaps.loc[S[1], "daily_return"] == pytest.approx(20 / (EQUITY + 10))
    assert snaps.loc[S[0], "daily_return"] == pytest.approx(10 / EQUITY)
    assert snaps.loc[S[3], "long_exposure"] == 0.0


def test_exit_on_a_non_session_closes_on_the_next_session():
    # counts Fri 12 Jan (Sat 13 is the exit date), closes on Tue 16 Jan: 10 x (95 - P_Fri 90)
    positions = frame(position(1, "AAA", 10, 80, S[3], exit_date="2024-01-13", exit_price=95))
    values, snaps, _ = run(positions, prices(AAA=[70, 75, 85, 88, 90, 300]))
    assert list(rows_of(values, 1).index) == [S[3], S[4]]
    assert snaps.loc[S[3], "daily_pnl"] == pytest.approx(10 * (88 - 80))
    assert snaps.loc[S[4], "daily_pnl"] == pytest.approx(10 * (90 - 88))
    assert snaps.loc[pd.Timestamp("2024-01-16"), "daily_pnl"] == pytest.approx(10 * (95 - 90))


def test_short_position_signs():
    # SHORT 5 @ 50: P 48 then 51 -> +10 then -15; value -5 x 51 = -255
    values, snaps, _ = run(frame(position(1, "SSS", 5, 50, S[0], position_type="SHORT")), prices(SSS=[48, 51]))
    assert snaps["daily_pnl"].iloc[:2].tolist() == pytest.approx([10.0, -15.0])
    day = rows_of(values, 1).loc[S[1]]
    assert day["market_value"] == pytest.approx(-255.0)
    assert day["exposure"] == pytest.approx(-255.0)
    snap = snaps.loc[S[1]]
    assert snap["short_exposure"] == pytest.approx(-255.0)
    assert snap["long_exposure"] == 0.0
    assert snap["gross_exposure"] == pytest.approx(255.0)
    assert snap["net_exposure"] == pytest.approx(-255.0)
    assert snap["equity"] == pytest.approx(EQUITY - 5)
    assert snap["cash"] == pytest.approx(EQUITY - 5 + 255)
    assert snap["daily_return"] == pytest.approx(-15 / (EQUITY + 10))


def test_gap_in_prices_is_stale_incomplete_and_the_first_priced_day_books_the_move():
    positions = frame(
        position(1, "GAP", 10, 99, S[0]),  # P: 100, -, -, 106, 105
        position(2, "NEW", 1, 28, S[1]),  # no price on its entry day, then 30
    )
    values, snaps, pnl = run(positions, prices(GAP=[100, None, None, 106, 105], NEW=[None, None, 30, 31, 32]))
    gap = rows_of(values, 1)
    assert gap.loc[S[1:3], "has_price"].tolist() == [False, False]
    assert gap.loc[S[1:3], "price_source"].tolist() == ["stale", "stale"]
    assert gap.loc[S[1:3], "price"].tolist() == [100.0, 100.0]  # valued at its last price
    assert gap.loc[S[1:3], "market_value"].tolist() == [1000.0, 1000.0]
    new = rows_of(values, 2)
    assert new.loc[S[1], "price"] == 28.0 and not new.loc[S[1], "has_price"]  # entry price before a first price
    # day P&L: S0 10 x (100-99); S1 0; S2 NEW 1 x (30-28); S3 GAP 10 x (106-100) + NEW 1; S4 -10 + 1
    assert snaps["daily_pnl"].iloc[:5].tolist() == pytest.approx([10.0, 0.0, 2.0, 61.0, -9.0])
    assert snaps["is_complete"].iloc[:5].tolist() == [True, False, False, True, True]
    assert snaps.loc[S[1], "missing_symbols"] == ["GAP", "NEW"]
    assert snaps.loc[S[2], "missing_symbols"] == ["GAP"]
    assert snaps.loc[S[3], "missing_symbols"] == []
    assert snaps["n_positions"].iloc[:5].tolist() == [1, 2, 2, 2, 2]  # still counted while stale
    assert snaps.loc[S[1], "long_exposure"] == pytest.approx(1000 + 28)
    gap_pnl = pnl.loc[pnl["position_id"] == 1].set_index("date")["pnl"]
    assert gap_pnl.loc[S[3]] == pytest.approx(60.0)


def test_entry_on_a_non_session_counts_from_the_next_session():
    # entry Sat 13 Jan at 201: Fri 12 (200) is not counted; Tue 16 (205) books 205 - 201
    values, snaps, _ = run(frame(position(1, "AAA", 1, 201, "2024-01-13")), prices(AAA=[190, 192, 195, 198, 200, 205]))
    assert rows_of(values, 1).index[0] == pd.Timestamp("2024-01-16")
    assert snaps.loc[S[4], "n_positions"] == 0 and snaps.loc[S[4], "daily_pnl"] == 0.0
    assert snaps.loc[pd.Timestamp("2024-01-16"), "daily_pnl"] == pytest.approx(4.0)


def test_two_lots_of_the_same_symbol_and_date_are_both_kept():
    positions = frame(position(1, "AAA", 10, 50, S[0]), position(2, "AAA", 5, 50, S[0]))
    values, snaps, _ = run(positions, prices(AAA=[51, 52]))
    assert len(values.loc[values["date"] == S[1]]) == 2
    assert snaps.loc[S[1], "n_positions"] == 2
    assert snaps.loc[S[1], "long_exposure"] == pytest.approx(15 * 52)
    assert snaps["daily_pnl"].iloc[:2].tolist() == pytest.approx([15.0, 15.0])


def test_private_asset_is_flat_at_its_manual_value():
    # 2 units, manual value 1000 -> P = 500; entry 450 -> day one books 2 x (500 - 450) = 100, then nothing
    positions = frame(position(1, "FUND", 2, 450, S[0], investment_class="PRIVATE", manual_market_value=1000.0))
    values, snaps, _ = run(positions, prices(OTHER=[1, 2, 3]))
    rows = rows_of(values, 1)
    assert (rows["price"] == 500.0).all() and (rows["market_value"] == 1000.0).all()
    assert (rows["exposure"] == 1000.0).all() and (rows["price_source"] == "manual").all()
    assert rows["has_price"].all()
    assert snaps["daily_pnl"].tolist() == pytest.approx([100.0] + [0.0] * (len(S) - 1))
    assert snaps["is_complete"].all()


def test_snapshots_continue_after_all_positions_closed_and_start_at_inception():
    positions = frame(position(1, "AAA", 10, 100, S[2], exit_date=S[4], exit_price=110))
    values, snaps, _ = run(positions, prices(AAA=[90, 95, 100, 105, 108, 109]), inception=S[1])
    assert list(snaps.index) == list(S[1:])  # the lookback session S[0] has no snapshot
    after = snaps.loc[S[5] :]
    assert len(after) == len(S) - 5
    assert (after["n_positions"] == 0).all() and (after["daily_pnl"] == 0).all()
    assert (after["equity"] == EQUITY + 100).all() and after["is_complete"].all()
    assert (after["gross_exposure"] == 0).all() and (after["cash"] == EQUITY + 100).all()


def test_missing_exit_price_books_nothing_and_flags_the_closing_day():
    positions = frame(position(1, "AAA", 10, 100, S[0], exit_date=S[2]))
    _, snaps, _ = run(positions, prices(AAA=[101, 102, 103]))
    assert snaps.loc[S[2], "daily_pnl"] == 0.0
    assert not snaps.loc[S[2], "is_complete"] and snaps.loc[S[2], "missing_symbols"] == ["AAA"]


# --- options -----------------------------------------------------------------------------------

LONG_S = pd.bdate_range("2023-06-01", periods=120)


def underlying_path():
    rng = np.random.default_rng(11)
    return 100 * np.exp(np.cumsum(rng.normal(0.0, 0.02, len(LONG_S))))


def reference_option(spot_history, t, expiration, strike, call):
    """BS price and delta on session t from the last 63 simple returns, written out independently."""
    window = spot_history[t - 63 : t + 1]
    returns = [window[k] / window[k - 1] - 1 for k in range(1, len(window))]
    mean = sum(returns) / len(returns)
    sigma = math.sqrt(sum((r - mean) ** 2 for r in returns) / (len(returns) - 1)) * math.sqrt(252)
    S0, T = spot_history[t], (expiration - LONG_S[t]).days / 365
    d1 = (math.log(S0 / strike) + sigma**2 / 2 * T) / (sigma * math.sqrt(T))
    d2 = d1 - sigma * math.sqrt(T)
    if call:
        return S0 * norm.cdf(d1) - strike * norm.cdf(d2), norm.cdf(d1)
    return strike * norm.cdf(-d2) - S0 * norm.cdf(-d1), norm.cdf(d1) - 1


def test_option_valued_by_black_scholes_on_the_underlying_and_by_its_own_price_when_there_is_one():
    spot = underlying_path()
    expiration = LONG_S[100] + pd.Timedelta(days=20)
    contract = [None] * len(LONG_S)
    contract[93] = 7.5
    wide = prices(LONG_S, XYZ=list(spot), XYZ_C=contract)
    positions = frame(
        position(
            1,
            "XYZ_C",
            2,
            3.0,
            LONG_S[90],
            position_type="LC",
            investment_class="OPTIONS",
            underlying="XYZ",
            strike=100.0,
            expiration=expiration,
            option_type="CALL",
        ),
        position(
            2,
            "XYZ_P",
            3,
            2.0,
            LONG_S[90],
            position_type="SP",
            investment_class="OPTIONS",
            underlying="XYZ",
            strike=95.0,
            expiration=expiration,
        ),
    )
    values, snaps, _ = run(positions, wide, LONG_S, inception=LONG_S[90])
    call, put = rows_of(values, 1), rows_of(values, 2)
    for t in (90, 91, 92, 94, 95):
        price, delta = reference_option(spot, t, expiration, 100.0, True)
        row = call.loc[LONG_S[t]]
        assert row["price_source"] == "model"
        assert row["price"] == pytest.approx(price, rel=1e-10)
        assert row["delta"] == pytest.approx(delta, rel=1e-10)
        assert row["market_value"] == pytest.approx(2 * 100 * price, rel=1e-10)
        assert row["exposure"] == pytest.approx(2 * 100 * delta * spot[t], rel=1e-10)
        assert row["underlying_price"] == pytest.approx(spot[t])
        p_price, p_delta = reference_option(spot, t, expiration, 95.0, False)
        p_row = put.loc[LONG_S[t]]
        assert p_row["market_value"] == pytest.approx(-3 * 100 * p_price, rel=1e-10)
        # short put: -3 x 100 x (negative delta) x S > 0
        assert p_row["exposure"] == pytest.approx(-3 * 100 * p_delta * spot[t], rel=1e-10)
        assert p_row["exposure"] > 0
    # the contract's own price on LONG_S[93]; delta still Black–Scholes
    day = call.loc[LONG_S[93]]
    _, delta93 = reference_option(spot, 93, expiration, 100.0, True)
    assert day["price_source"] == "market" and day["price"] == 7.5
    assert day["delta"] == pytest.approx(delta93, rel=1e-10)
    assert day["exposure"] == pytest.approx(200 * delta93 * spot[93], rel=1e-10)
    # P&L of the call: opened at 3.0, then price moves; 7.5 on day 93 is the reference of day 94
    model = {t: reference_option(spot, t, expiration, 100.0, True)[0] for t in (90, 91, 92, 94)}
    call_pnl = {t: 200 * (model[t] - (3.0 if t == 90 else model[t - 1])) for t in (90, 91, 92)}
    call_pnl[93] = 200 * (7.5 - model[92])
    call_pnl[94] = 200 * (model[94] - 7.5)
    put_model = {t: reference_option(spot, t, expiration, 95.0, False)[0] for t in range(90, 95)}
    for t in range(90, 95):
        put_pnl = -300 * (put_model[t] - (2.0 if t == 90 else put_model[t - 1]))
        assert snaps.loc[LONG_S[t], "daily_pnl"] == pytest.approx(call_pnl[t] + put_pnl, rel=1e-9)


def test_option_without_enough_underlying_history_is_stale_not_dropped():
    spot = underlying_path()
    positions = frame(
        position(
            1,
            "XYZ_C",
            1,
            3.0,
            LONG_S[10],
            position_type="LC",
            investment_class="OPTIONS",
            underlying="XYZ",
            strike=100.0,
            expiration=LONG_S[-1],
        )
    )
    values, snaps, _ = run(positions, prices(LONG_S, XYZ=list(spot)), LONG_S)
    rows = rows_of(values, 1)
    assert len(rows) == len(LONG_S) - 10
    assert rows.loc[LONG_S[62], "price_source"] == "stale" and rows.loc[LONG_S[62], "price"] == 3.0
    assert rows.loc[LONG_S[63], "price_source"] == "model"  # the 63rd return arrives on session 63
    assert not snaps.loc[LONG_S[62], "is_complete"] and snaps.loc[LONG_S[62], "missing_symbols"] == ["XYZ"]
    assert snaps.loc[LONG_S[63], "is_complete"]


def test_option_on_and_after_expiry_is_intrinsic():
    # short put K=100 expiring on S[2]; underlying 95 on S[2] and 97 on S[3]
    positions = frame(
        position(
            1,
            "P100",
            1,
            4.0,
            S[2],
            position_type="SP",
            investment_class="OPTIONS",
            underlying="UND",
            strike=100.0,
            expiration=S[2],
        ),
        position(
            2,
            "C120",
            2,
            0.5,
            S[2],
            position_type="LC",
            investment_class="OPTIONS",
            underlying="UND",
            strike=120.0,
            expiration=S[1],
        ),
    )
    values, snaps, _ = run(positions, prices(UND=[98, 96, 95, 97]))
    put, call = rows_of(values, 1), rows_of(values, 2)
    assert put.loc[S[2], "price"] == 5.0 and put.loc[S[2], "delta"] == -1.0
    assert put.loc[S[2], "market_value"] == -500.0
    assert put.loc[S[2], "exposure"] == pytest.approx(-1 * 100 * -1 * 95)
    assert put.loc[S[3], "price"] == 3.0 and put.loc[S[3], "price_source"] == "model"
    assert (call.loc[S[2] : S[3], "price"] == 0.0).all() and (call.loc[S[2] : S[3], "exposure"] == 0.0).all()
    # S[2]: put -100 x (5 - 4) = -100, call 200 x (0 - 0.5) = -100; S[3]: put -100 x (3 - 5) = +200
    assert snaps.loc[S[2], "daily_pnl"] == pytest.approx(-200.0)
    assert snaps.loc[S[3], "daily_pnl"] == pytest.approx(200.0)


# --- against a plain loop ----------------------------------------------------------------------


def reference_snapshots(positions, wide, sessions):
    """The contract's P&L rule, one position and one session at a time (PUBLIC only)."""
    out = pd.DataFrame(0.0, index=sessions, columns=["pnl", "long", "short", "n", "missing"])
    for p in positions.itertuples():
        sign = -1.0 if p.position_type == "SHORT" else 1.0
        ref, closed = p.entry_price, False
        for d in sessions:
            counts = p.entry_date <= d and (pd.isna(p.exit_date) or d < p.exit_date)
            if counts:
                price = wide.at[d, p.symbol]
                if np.isnan(price):
                    out.at[d, "missing"] += 1
                else:
                    out.at[d, "pnl"] += sign * p.quantity * (price - ref)
                    ref = price
                value = sign * p.quantity * ref
                out.at[d, "long" if value > 0 else "short"] += value
                out.at[d, "n"] += 1
            elif pd.notna(p.exit_date) and d >= p.exit_date and not closed:
                out.at[d, "pnl"] += sign * p.quantity * (p.exit_price - ref)
                closed = True
    return out


def test_random_public_portfolio_matches_the_plain_loop():
    rng = np.random.default_rng(5)
    sessions = pd.bdate_range("2024-02-01", periods=60).drop(pd.Timestamp("2024-02-19"))
    symbols = ["A", "B", "C", "D"]
    wide = pd.DataFrame(50 + np.cumsum(rng.normal(0, 1, (len(sessions), 4)), axis=0), index=sessions, columns=symbols)
    wide = wide.mask(rng.random(wide.shape) < 0.15)
    calendar_days = pd.date_range(sessions[0], sessions[-1])
    rows = []
    for k in range(25):
        entry = calendar_days[rng.integers(0, len(calendar_days) - 5)]
        exit_date = entry + pd.Timedelta(days=int(rng.integers(0, 30))) if rng.random() < 0.6 else pd.NaT
        rows.append(
            position(
                k,
                symbols[k % 4],
                int(rng.integers(1, 20)),
                float(rng.uniform(40, 60)),
                entry,
                position_type="SHORT" if rng.random() < 0.4 else "LONG",
                exit_date=exit_date,
                exit_price=float(rng.uniform(40, 60)) if pd.notna(exit_date) else np.nan,
            )
        )
    positions = frame(*rows)
    _, snaps, pnl = run(positions, wide, sessions)
    want = reference_snapshots(positions, wide, sessions)
    np.testing.assert_allclose(snaps["daily_pnl"], want["pnl"], atol=1e-9)
    np.testing.assert_allclose(snaps["long_exposure"], want["long"], atol=1e-9)
    np.testing.assert_allclose(snaps["short_exposure"], want["short"], atol=1e-9)
    np.testing.assert_array_equal(snaps["n_positions"], want["n"].astype(int))
    np.testing.assert_array_equal(snaps["is_complete"], want["missing"] == 0)
    np.testing.assert_allclose(snaps["equity"], EQUITY + want["pnl"].cumsum(), atol=1e-8)
    assert pnl["pnl"].sum() == pytest.approx(snaps["cumulative_pnl"].iloc[-1])


def test_invalid_positions_raise_naming_the_position():
    with pytest.raises(ValueError, match="position 7"):
        value_positions(frame(position(7, "AAA", 1, 1, S[0], investment_class="OPTIONS")), prices(AAA=[1]), S)
    with pytest.raises(ValueError, match="position 8.*exit_date"):
        value_positions(frame(position(8, "AAA", 1, 1, S[3], exit_date=S[1], exit_price=1)), prices(AAA=[1]), S)
    with pytest.raises(ValueError, match="position 9.*quantity"):
        value_positions(frame(position(9, "AAA", -1, 1, S[0])), prices(AAA=[1]), S)


def test_hundred_positions_over_2500_sessions_is_fast():
    rng = np.random.default_rng(1)
    sessions = pd.bdate_range("2014-01-01", periods=2500)
    symbols = [f"S{k:02d}" for k in range(90)]
    wide = pd.DataFrame(
        100 * np.exp(np.cumsum(rng.normal(0, 0.01, (2500, 90)), axis=0)), index=sessions, columns=symbols
    )
    rows = [
        position(k, symbols[k], 10, 100, sessions[k], position_type="SHORT" if k % 3 else "LONG") for k in range(85)
    ]
    rows += [
        position(
            100 + k,
            f"OPT{k}",
            1,
            5,
            sessions[100],
            position_type="LC",
            investment_class="OPTIONS",
            underlying=symbols[k],
            strike=100.0,
            expiration=sessions[-1],
        )
        for k in range(15)
    ]
    positions = frame(*rows)
    started = time.perf_counter()
    run(positions, wide, sessions)
    assert time.perf_counter() - started < 2.5
