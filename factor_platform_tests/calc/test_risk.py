"""Risk figures (contract §4) against plain loops written here, and the stress scenario data."""

from __future__ import annotations

import math
import statistics
import textwrap

import numpy as np
import pandas as pd
import pytest

from factor_platform.calc.portfolio import snapshots, value_positions
from factor_platform.calc.risk import (
    concentration,
    correlations,
    factor_exposures,
    holdings_volatility,
    sector_weights,
    stress,
)
from factor_platform.domain.stress_scenarios import DEFAULT_STRESS_FILE, STRESS_FILE_ENV, load_stress_scenarios
from factor_platform_tests.calc.test_portfolio import position as make_position

SESSIONS = pd.bdate_range("2023-01-02", periods=110)
TARGETS = SESSIONS[-5:]
SIGN = {"LONG": 1, "SHORT": -1, "LC": 1, "LP": 1, "SC": -1, "SP": -1}


def position(position_id, symbol, position_type, quantity, *, entry_price=100.0, entry_date=SESSIONS[70], **fields):
    return make_position(position_id, symbol, quantity, entry_price, entry_date, position_type=position_type, **fields)


@pytest.fixture(scope="module")
def book():
    rng = np.random.default_rng(21)
    symbols = ["AAA", "BBB", "CCC", "DDD"]
    wide = pd.DataFrame(
        100 * np.exp(np.cumsum(rng.normal(0, 0.015, (len(SESSIONS), 4)), axis=0)), index=SESSIONS, columns=symbols
    )
    wide.iloc[[80, 81, 107], 2] = np.nan  # gaps in CCC, one of them inside the target dates
    positions = pd.DataFrame(
        [
            position(1, "AAA", "LONG", 10),
            position(2, "BBB", "SHORT", 5),
            position(3, "CCC", "LONG", 7, sector="Health Care"),
            position(4, "DDD", "LONG", 3),
            position(
                5,
                "AAA_C",
                "LC",
                2,
                investment_class="OPTIONS",
                underlying="AAA",
                strike=100.0,
                expiration=SESSIONS[-1] + pd.Timedelta(days=40),
                entry_price=5.0,
            ),
            position(
                6,
                "BBB_P",
                "SP",
                1,
                investment_class="OPTIONS",
                underlying="BBB",
                strike=95.0,
                expiration=SESSIONS[-1] + pd.Timedelta(days=40),
                entry_price=3.0,
                sector="Options book",
            ),
            position(7, "FUND", "LONG", 1, investment_class="PRIVATE", manual_market_value=5000.0),
            position(8, "AAA", "LONG", 4, entry_date=SESSIONS[-3]),  # a second lot, only on the last dates
        ]
    )
    values = value_positions(positions, wide, SESSIONS)
    snaps, _ = snapshots(positions, values, SESSIONS, starting_equity=50_000.0, inception_date=SESSIONS[70])
    equity = snaps.set_index("date")["equity"].loc[TARGETS]
    return {"prices": wide, "positions": positions, "values": values, "equity": equity}


def pos_by_id(positions):
    return {row.position_id: row for row in positions.itertuples()}


def pricing_symbol(p):
    return p.underlying if p.investment_class == "OPTIONS" else p.symbol


def test_factor_exposures_match_a_loop_and_ir_beta_flips_for_shorts(book):
    values, positions, equity = book["values"], book["positions"], book["equity"]
    beta_of = {
        ("AAA", "market_beta"): 1.2,
        ("AAA", "ir_beta"): 0.3,
        ("BBB", "market_beta"): 0.8,
        ("BBB", "ir_beta"): 0.5,
        ("CCC", "market_beta"): 1.0,
        ("FUND", "value"): 0.4,
        # DDD has no betas: it contributes to no factor
    }
    betas = pd.DataFrame(
        [(s, d, f, b * (1 + 0.01 * k)) for (s, f), b in beta_of.items() for k, d in enumerate(SESSIONS)],
        columns=["symbol", "date", "factor", "beta"],
    )
    lookup = {(r.symbol, r.date, r.factor): r.beta for r in betas.itertuples()}
    got = factor_exposures(values, positions, betas, equity)
    assert list(got.columns) == ["date", "factor", "beta", "exposure_dollar"]

    by_id = pos_by_id(positions)
    want = {}
    for row in values.itertuples():
        if row.date not in equity.index:
            continue
        symbol = pricing_symbol(by_id[row.position_id])
        for factor in ("market_beta", "ir_beta", "value"):
            beta = lookup.get((symbol, row.date, factor))
            if beta is not None:
                want[(row.date, factor)] = want.get((row.date, factor), 0.0) + row.exposure * beta
    assert len(got) == len(want)
    for r in got.itertuples():
        assert r.exposure_dollar == pytest.approx(want[(r.date, r.factor)], rel=1e-12)
        assert r.beta == pytest.approx(want[(r.date, r.factor)] / equity[r.date], rel=1e-12)

    # ir_beta: same beta, opposite side -> opposite sign (never |market value|)
    d = TARGETS[-1]
    for side, sign in (("LONG", 1), ("SHORT", -1)):
        one = pd.DataFrame([position(1, "BBB", side, 5)])
        v = value_positions(one, book["prices"], SESSIONS)
        ir = factor_exposures(v, one, betas, equity).set_index(["date", "factor"]).loc[(d, "ir_beta")]
        price = book["prices"].at[d, "BBB"]
        assert ir["exposure_dollar"] == pytest.approx(sign * 5 * price * lookup[("BBB", d, "ir_beta")])
        assert np.sign(ir["beta"]) == sign


def test_sector_weights_match_a_loop(book):
    values, positions, equity = book["values"], book["positions"], book["equity"]
    sectors = {"AAA": "Technology", "BBB": "Energy", "CCC": "Utilities", "DDD": None}
    got = sector_weights(values, positions, sectors, equity)
    by_id = pos_by_id(positions)
    want = {}
    for row in values.itertuples():
        if row.date not in equity.index:
            continue
        p = by_id[row.position_id]
        sector = p.sector if isinstance(p.sector, str) else (sectors.get(pricing_symbol(p)) or "Unknown")
        want[(row.date, sector)] = want.get((row.date, sector), 0.0) + row.exposure / equity[row.date]
    assert {(r.date, r.sector) for r in got.itertuples()} == set(want)
    for r in got.itertuples():
        assert r.weight == pytest.approx(want[(r.date, r.sector)], rel=1e-12)
    sectors_seen = set(got["sector"])
    # own sector beats the profile; options follow the underlying; no profile -> Unknown
    assert {"Health Care", "Options book", "Technology", "Energy", "Unknown"} == sectors_seen
    assert "Utilities" not in sectors_seen


def test_concentration_matches_a_loop(book):
    values = book["values"]
    got = concentration(values, dates=TARGETS).set_index("date")
    assert list(got.index) == list(TARGETS)
    for d in TARGETS:
        weights = [abs(x) for x in values.loc[values["date"] == d, "exposure"]]
        total = sum(weights)
        weights = sorted((w / total for w in weights), reverse=True)
        hhi = sum(w * w for w in weights)
        assert got.at[d, "hhi"] == pytest.approx(hhi, rel=1e-12)
        assert got.at[d, "effective_n"] == pytest.approx(1 / hhi, rel=1e-12)
        assert got.at[d, "top3_weight"] == pytest.approx(sum(weights[:3]), rel=1e-12)
        assert got.at[d, "top10_weight"] == pytest.approx(sum(weights[:10]), rel=1e-12)
    assert len(values.loc[values["date"] == TARGETS[-1]]) == 8
    assert got.at[TARGETS[0], "top10_weight"] == pytest.approx(1.0)  # fewer than 10 positions


def reference_holdings_pnl(values, positions, wide, d, n):
    """Hypothetical P&L of the holdings of d over the n sessions ending at d, one term at a time:
    Σ exposure of d × the total return of the pricing symbol since its previous priced session."""
    by_id = pos_by_id(positions)
    exposure = {}
    for row in values.loc[values["date"] == d].itertuples():
        p = by_id[row.position_id]
        if p.investment_class == "PRIVATE" or np.isnan(row.exposure):
            continue
        u = pricing_symbol(p)
        exposure[u] = exposure.get(u, 0.0) + row.exposure
    t = wide.index.get_loc(d)
    series = []
    for s in range(t - n + 1, t + 1):
        total = 0.0
        for u, e in exposure.items():
            column = wide[u].to_numpy()
            if np.isnan(column[s]):
                continue
            earlier = [x for x in column[:s] if not np.isnan(x)]
            if earlier:
                total += e * (column[s] / earlier[-1] - 1)
        series.append(total)
    return series


def level_volatility_21d(values, positions, wide, d, equity):
    """The former definition, on P levels: Σ signed qty × multiplier × delta of d × (P_t − P_prev)."""
    by_id = pos_by_id(positions)
    coef = {}
    for row in values.loc[values["date"] == d].itertuples():
        p = by_id[row.position_id]
        if p.investment_class == "PRIVATE":
            continue
        mult = 100 if p.investment_class == "OPTIONS" else 1
        u = pricing_symbol(p)
        coef[u] = coef.get(u, 0.0) + SIGN[p.position_type] * p.quantity * mult * row.delta
    change = (wide - wide.ffill().shift(1)).fillna(0.0)
    t = wide.index.get_loc(d)
    pnl = [sum(c * change[u].iloc[s] for u, c in coef.items()) for s in range(t - 20, t + 1)]
    return statistics.stdev(pnl) * math.sqrt(252) / equity


def test_holdings_volatility_matches_a_loop(book):
    values, positions, equity = book["values"], book["positions"], book["equity"]
    # FUND (PRIVATE) has a price series here: it must still contribute nothing
    wide = book["prices"].assign(FUND=np.linspace(100.0, 180.0, len(SESSIONS)) ** 1.5)
    got = holdings_volatility(values, positions, wide, equity).set_index("date")
    assert list(got.columns) == ["volatility_21d", "volatility_63d", "volatility_forecast"]
    lam = 0.94
    for d in TARGETS:
        pnl = reference_holdings_pnl(values, positions, wide, d, 63)
        eq = equity[d]
        assert got.at[d, "volatility_21d"] == pytest.approx(
            statistics.stdev(pnl[-21:]) * math.sqrt(252) / eq, rel=1e-10
        )
        assert got.at[d, "volatility_63d"] == pytest.approx(statistics.stdev(pnl) * math.sqrt(252) / eq, rel=1e-10)
        num = sum((1 - lam) * lam**k * pnl[-1 - k] ** 2 for k in range(63))
        den = sum((1 - lam) * lam**k for k in range(63))
        assert got.at[d, "volatility_forecast"] == pytest.approx(math.sqrt(252 * num / den) / eq, rel=1e-10)
    assert (got > 0).all().all()


def test_holdings_volatility_of_a_date_ignores_a_later_rebasing_of_prices(book):
    # A dividend with ex-date `cut` multiplies every earlier adj_close by one factor (here all symbols, 0.98).
    values, positions, wide = book["values"], book["positions"], book["prices"]
    cut = SESSIONS[100]
    before, after = SESSIONS[85:100], SESSIONS[100:105]  # before: windows that hold the CCC gap of rows 80-81
    equity = pd.Series(50_000.0, index=before.append(after))
    rebased = wide.mul(np.where(wide.index < cut, 0.98, 1.0), axis=0)
    got = holdings_volatility(values, positions, wide, equity).set_index("date")
    again = holdings_volatility(values, positions, rebased, equity).set_index("date")
    assert got.loc[before].notna().all().all() and (got.loc[before] > 0).all().all()
    np.testing.assert_allclose(again.loc[before].to_numpy(), got.loc[before].to_numpy(), rtol=1e-12)
    # The re-basing is seen: the return on `cut` changes, and with it the figures whose window holds `cut`.
    assert not np.allclose(again.loc[after].to_numpy(), got.loc[after].to_numpy(), rtol=1e-6)
    # The former formula on P levels would have moved every earlier figure by the factor.
    for d in before:
        level = level_volatility_21d(values, positions, wide, d, equity[d])
        level_again = level_volatility_21d(values, positions, rebased, d, equity[d])
        assert level_again == pytest.approx(0.98 * level, rel=1e-12)
        assert not level_again == pytest.approx(level, rel=1e-3)


def test_holdings_volatility_is_nan_without_a_full_window(book):
    values, positions, wide = book["values"], book["positions"], book["prices"]
    d = SESSIONS[75]
    got = holdings_volatility(values, positions, wide.iloc[40:], pd.Series({d: 1e5})).set_index("date")
    # 35 priced sessions before d inside the frame: the 21-session window fits, 63 does not
    assert not np.isnan(got.at[d, "volatility_21d"])
    assert np.isnan(got.at[d, "volatility_63d"]) and np.isnan(got.at[d, "volatility_forecast"])


def orthonormal_returns(n_obs, n_series, seed):
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(n_obs, n_series))
    raw -= raw.mean(axis=0)
    q, _ = np.linalg.qr(raw)
    return q  # zero-mean, orthonormal columns: sample correlations are exact


def test_correlation_clusters_on_a_constructed_example():
    n = 90
    x, y, z, w, v = orthonormal_returns(n, 5, seed=3).T
    log_returns = {
        "AAA": x + 0.2 * y,  # rho(AAA, BBB) = 1.2 / sqrt(2 x 1.04) = 0.832
        "BBB": x + y,
        "CCC": y + 0.2 * x,  # rho(AAA, CCC) = 0.4 / 1.04 = 0.385: same cluster, the pair itself has none
        "DDD": z,
        "EEE": z + 0.1 * w,  # rho = 0.995
        "FFF": v,
        "GGG": -v,  # rho(FFF, GGG) = -1: |rho| counts
        "HHH": w,  # rho(EEE, HHH) = 0.0995
    }
    index = pd.bdate_range("2024-01-01", periods=n + 1)
    wide = pd.DataFrame(
        {s: 50 * np.exp(np.concatenate([[0.0], np.cumsum(0.01 * r)])) for s, r in log_returns.items()}, index=index
    )
    got = correlations(wide, list(log_returns), [index[-1]]).set_index(["symbol_a", "symbol_b"])
    assert len(got) == 28
    assert got.loc[("AAA", "BBB"), "rho"] == pytest.approx(1.2 / math.sqrt(2 * 1.04), abs=1e-9)
    assert got.loc[("AAA", "CCC"), "rho"] == pytest.approx(0.4 / 1.04, abs=1e-9)
    clusters = got["cluster"].dropna().astype(int).to_dict()
    assert clusters == {
        ("AAA", "BBB"): 1,
        ("BBB", "CCC"): 1,
        ("DDD", "EEE"): 2,
        ("FFF", "GGG"): 3,
    }
    assert got["cluster"].isna().sum() == 28 - 4


def test_correlations_match_corrcoef_over_the_last_common_returns():
    rng = np.random.default_rng(8)
    index = pd.bdate_range("2023-01-02", periods=200)
    common = rng.normal(0, 0.01, (200, 1))
    wide = pd.DataFrame(
        100 * np.exp(np.cumsum(common + rng.normal(0, 0.01, (200, 4)), axis=0)), index=index, columns=list("DCBA")
    )
    wide = wide.mask(rng.random(wide.shape) < 0.2)
    wide.iloc[:170, 3] = np.nan  # A: only ~25 returns -> no pairs with A
    dates = [index[120], index[199], pd.Timestamp("2023-10-14")]  # a Saturday: rows <= it are used
    got = correlations(wide, ["D", "C", "B", "A", "ZZZ"], dates)
    logs = np.log(wide / wide.ffill().shift(1))
    want = {}
    for d in dates:
        for a in "ABCD":
            for b in "ABCD":
                if a < b:
                    both = logs.loc[:d, [a, b]].dropna().iloc[-90:]
                    if len(both) >= 30:
                        want[(pd.Timestamp(d), a, b)] = np.corrcoef(both[a], both[b])[0, 1]
    assert {(r.date, r.symbol_a, r.symbol_b) for r in got.itertuples()} == set(want)
    for r in got.itertuples():
        assert r.rho == pytest.approx(want[(r.date, r.symbol_a, r.symbol_b)], abs=1e-10)
    assert got["date"].is_monotonic_increasing
    # per-date holdings: only the symbols held on each date are paired
    held = correlations(wide, {index[199]: ["B", "C"], index[120]: ["C", "D", "B"]}, [index[120], index[199]])
    assert held.groupby("date").size().tolist() == [3, 1]


def test_stress_matches_a_loop():
    exposures = pd.DataFrame(
        {
            "date": pd.to_datetime(["2024-01-02", "2024-01-02", "2024-01-03"]),
            "factor": ["market_beta", "ir_beta", "market_beta"],
            "beta": [0.9, -0.1, 1.1],
            "exposure_dollar": [90_000.0, -10_000.0, 110_000.0],
        }
    )
    equity = pd.Series(
        {
            pd.Timestamp("2024-01-02"): 100_000.0,
            pd.Timestamp("2024-01-03"): 100_000.0,
            pd.Timestamp("2024-01-04"): 99_000.0,
        }
    )
    scenarios = load_stress_scenarios()
    got = stress(exposures, equity, scenarios)
    assert list(got.columns) == ["date", "scenario", "pnl", "pnl_pct"]
    assert len(got) == 3 * len(scenarios)
    exp = {(r.date, r.factor): r.exposure_dollar for r in exposures.itertuples()}
    for r in got.itertuples():
        shocks = next(s.shocks for s in scenarios if s.name == r.scenario)
        want = sum(exp.get((r.date, f), 0.0) * shock for f, shock in shocks.items())
        assert r.pnl == pytest.approx(want, abs=1e-9)
        assert r.pnl_pct == pytest.approx(want / equity[r.date], abs=1e-12)
    rates = got.set_index(["date", "scenario"]).loc[(pd.Timestamp("2024-01-02"), "Rates +100bp")]
    assert rates["pnl"] == pytest.approx(-10_000.0 * -0.17)  # negative rate beta gains when rates rise
    assert stress(exposures, equity, {"mine": {"market_beta": -0.5, "size": 0.1}})["pnl"].tolist() == pytest.approx(
        [-45_000.0, -55_000.0, 0.0]
    )


# --- stress scenario data ------------------------------------------------------------------------


def test_packaged_scenarios_are_valid_and_cover_the_brief():
    scenarios = load_stress_scenarios(DEFAULT_STRESS_FILE)
    names = {s.name for s in scenarios}
    assert len(scenarios) >= 15
    assert {
        "Equity -20%",
        "Rates +100bp",
        "Growth-to-value rotation",
        "2008 GFC",
        "2020 Covid crash",
        "2022 rate shock",
    } <= names
    by_name = {s.name: s for s in scenarios}
    assert dict(by_name["Equity -20%"].shocks) == {"market_beta": -0.20}
    assert by_name["Rates +100bp"].shocks["ir_beta"] == pytest.approx(-0.17)
    assert dict(by_name["Growth-to-value rotation"].shocks) == {
        "growth": -0.10,
        "value": 0.05,
        "growth_value_spread": -0.15,
    }
    assert all(s.description and "\n" not in s.description for s in scenarios)


def write(tmp_path, text):
    path = tmp_path / "scenarios.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_env_var_points_at_another_file(tmp_path, monkeypatch):
    path = write(
        tmp_path,
        """
        [[scenario]]
        name = "My shock"
        description = "Only mine."
        shocks = { market_beta = -0.3, size_spread = 0.02 }
    """,
    )
    monkeypatch.setenv(STRESS_FILE_ENV, str(path))
    scenarios = load_stress_scenarios()
    assert [s.name for s in scenarios] == ["My shock"]
    assert dict(scenarios[0].shocks) == {"market_beta": -0.3, "size_spread": 0.02}


@pytest.mark.parametrize(
    "body, message",
    [
        ('name = "Bad"\ndescription = "x"\nshocks = { market_beta = "-0.2" }', "'Bad'.*market_beta.*number"),
        ('name = "Bad"\ndescription = "x"\nshocks = { market_beta = true }', "'Bad'.*number"),
        (
            'name = "Bad"\ndescription = "x"\nseverity = 3\nshocks = { market_beta = -0.2 }',
            "'Bad'.*unknown keys.*severity",
        ),
        ('name = "Bad"\ndescription = "x"\nshocks = { market_bta = -0.2 }', "'Bad'.*unknown factor 'market_bta'"),
        ('name = "Bad"\ndescription = "x"\nshocks = { market_beta = -20 }', "'Bad'.*fraction"),
        ('name = "Bad"\nshocks = { market_beta = -0.2 }', "'Bad'.*description"),
        ('name = "Bad"\ndescription = "x"\nshocks = {}', "'Bad'.*shocks"),
    ],
)
def test_invalid_scenarios_raise_naming_the_scenario(tmp_path, body, message):
    path = write(tmp_path, "[[scenario]]\n" + body + "\n")
    with pytest.raises(ValueError, match=message):
        load_stress_scenarios(path)


def test_duplicated_scenario_names_raise(tmp_path):
    one = '[[scenario]]\nname = "Twice"\ndescription = "x"\nshocks = { market_beta = -0.2 }\n'
    with pytest.raises(ValueError, match="'Twice'.*twice"):
        load_stress_scenarios(write(tmp_path, one + one))


def components_by_union_find(pairs, strong):
    """The oracle for one date: union-find over the strong pairs, then number by smallest member."""
    parent = {}

    def root(x):
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for (i, j), s in zip(pairs, strong):
        if s:
            ri, rj = root(i), root(j)
            if ri != rj:
                parent[max(ri, rj)] = min(ri, rj)
    smallest = sorted({root(i) for (i, j), s in zip(pairs, strong) if s})
    number = {r: k + 1 for k, r in enumerate(smallest)}
    return [number[root(i)] if s else None for (i, j), s in zip(pairs, strong)]


@pytest.mark.parametrize("n_symbols", [2, 7, 25])
def test_clusters_of_all_dates_at_once_equal_a_union_find_per_date(n_symbols):
    from factor_platform.calc.risk import _clusters

    rng = np.random.default_rng(n_symbols)
    a, b = np.triu_indices(n_symbols, k=1)
    # from no strong pair to nearly all of them, and dates without any
    strong = rng.uniform(size=(60, len(a))) < rng.uniform(0, 0.3, size=(60, 1))
    strong[::7] = False
    got = _clusters(a, b, strong, n_symbols)
    assert got.shape == strong.shape
    pairs = list(zip(a, b))
    for day in range(len(strong)):
        want = components_by_union_find(pairs, strong[day])
        assert [None if np.isnan(x) else int(x) for x in got[day]] == want
