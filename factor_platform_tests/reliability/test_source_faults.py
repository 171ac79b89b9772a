"""Market-data faults through Dagster: isolated, recorded, retried, and given up on after N attempts.

A FaultySource (the sample source with per-symbol faults, see ``faults.py``) is passed as the
``market_data`` resource override of the real jobs. Symbols that raise, are rate-limited, come back
empty or short must not stop anything else: the healthy symbols' rows are exactly the sample
source's, portfolios that do not hold a faulty symbol are complete, and every fault is an open row
in ``symbol_failures`` whose ``attempts`` grows run by run until the symbol is ``skipped``.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pandas as pd
import pytest

from factor_platform.defs.resources import AnalyticsDatabase
from factor_platform.defs.symbols import assets as symbol_assets
from factor_platform.domain import sessions
from factor_platform.domain.factor_models import LOOKBACK_SESSIONS, factor_tickers, load_regressions
from factor_platform.layers.books import import_portfolio
from factor_platform.planning.planner import plan_materialization
from factor_platform.planning.rectangles import Rectangle
from factor_platform.running.runs import QUIET_RUN_CONFIG, load_definitions
from factor_platform.sources.sample import SampleSource
from factor_platform.storage import Database
from factor_platform_tests.reliability.faults import PARTIAL_MISSING, SOURCES, FaultyMarketData, FaultySource

FIRST, LAST = dt.date(2024, 1, 2), dt.date(2024, 1, 5)
DAYS = [d.date() for d in sessions.sessions_in_range(FIRST, LAST)]
ETFS = factor_tickers(load_regressions())
HEALTHY = ["AAPL", "MSFT"]
FAULTS = {"BOOM": "raise", "LIMITED": "rate_limit", "HOLLOW": "empty", "HALF": "partial", "FLAKY": "flaky"}
SAMPLE_FAILS = ["FAILCO"]  # the sample source's own deliberate failure (a reported one)
PERSISTENT = sorted(["BOOM", "LIMITED", "HOLLOW", "HALF", *SAMPLE_FAILS])
SYMBOLS = ETFS + HEALTHY + list(FAULTS) + SAMPLE_FAILS
HEADER = "symbol,quantity,position_type,investment_class,entry_price,entry_date\n"
HELD_FAULTY = ["BOOM", "HALF"]  # held by "exposed": never skipped
PORTFOLIOS = {
    # holds no faulty symbol: must be complete on every session
    "clean": HEADER + "AAPL,100,LONG,PUBLIC,185.5,2024-01-02\nMSFT,40,SHORT,PUBLIC,370,2024-01-02\n",
    # holds symbols that never get (BOOM) or lose (HALF) prices: snapshots kept, flagged incomplete
    "exposed": HEADER + "AAPL,10,LONG,PUBLIC,185.5,2024-01-02\nBOOM,50,LONG,PUBLIC,20,2024-01-02\n"
    "HALF,30,LONG,PUBLIC,40,2024-01-02\n",
}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def platform(request, memory_instance, tmp_path):
    """The analytics database (SQLite, Postgres) with the portfolios imported, partitions registered, a job runner."""
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    db = Database(url)
    db.init_schema()
    try:
        yield from _platform(db, memory_instance, tmp_path, request)
    finally:
        db.dispose()


@pytest.fixture
def sqlite_platform(sqlite_url, memory_instance, tmp_path, request):
    db = Database(sqlite_url)
    db.init_schema()
    try:
        yield from _platform(db, memory_instance, tmp_path, request)
    finally:
        db.dispose()


def _platform(db, instance, tmp_path, request):
    for pid, text in PORTFOLIOS.items():
        path = tmp_path / f"{pid}.csv"
        path.write_text(text)
        import_portfolio(db, path, portfolio_id=pid)
    instance.add_dynamic_partitions("symbol", SYMBOLS)
    instance.add_dynamic_partitions("portfolio", list(PORTFOLIOS))
    scenario = request.node.nodeid
    SOURCES[scenario] = FaultySource(dict(FAULTS))
    defs = load_definitions()
    url = db.engine.url.render_as_string(hide_password=False)
    resources = {"market_data": FaultyMarketData(scenario=scenario), "analytics_db": AnalyticsDatabase(url=url)}

    def run(job_name: str, keys: list[str], *, days=(FIRST, LAST), assets=None) -> dg.ExecuteInProcessResult:
        tags = (
            Rectangle(days[0], days[1], tuple(keys)).tags()
            if job_name != "reference_data_job"
            else {"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}
        )
        if assets:  # a subset, as the planner's retry of one asset would run it (a job subset can't rebind resources)
            return dg.materialize(
                [getattr(symbol_assets, a) for a in assets],
                instance=instance,
                tags=tags,
                resources=resources,
                raise_on_error=False,
                run_config=QUIET_RUN_CONFIG,
            )
        return defs.resolve_job_def(job_name).execute_in_process(
            run_config=QUIET_RUN_CONFIG,
            instance=instance,
            tags=tags,
            resources=resources,
            raise_on_error=False,
        )

    yield db, instance, SOURCES[scenario], run
    SOURCES.pop(scenario, None)


def _error(result: dg.ExecuteInProcessResult) -> str:
    for event in result.all_events:
        if event.is_step_failure:
            return event.step_failure_data.error.to_string()
    return "(no step failure event)"


def _failures(db) -> pd.DataFrame:
    return db.read("symbol_failures", {"stage": "prices"}).set_index("symbol")


def _expected_prices(symbols: list[str], first: dt.date, last: dt.date) -> pd.DataFrame:
    frame = SampleSource().fetch_prices(symbols, first, last).frame
    return frame.sort_values(["symbol", "date"]).reset_index(drop=True)


def _stored_prices(db, symbols: list[str], first: dt.date, last: dt.date) -> pd.DataFrame:
    frame = db.read("prices", {"symbol": symbols, "date": (first, last)})
    return frame.sort_values(["symbol", "date"]).reset_index(drop=True)


def _first_run(db, run) -> pd.Series:
    """Run 1: every fault fires; the run succeeds, the healthy symbols are complete, each fault is an open row.
    Returns the failures' first_seen."""
    result = run("symbol_layer_job", SYMBOLS)
    assert result.success, f"one faulty symbol failed the whole symbol layer run: {_error(result)}"
    lookback_start = sessions.sessions_before(FIRST, LOOKBACK_SESSIONS)
    healthy = ETFS + HEALTHY
    # Row by row, every column: the healthy symbols hold exactly what the source has, lookback included.
    pd.testing.assert_frame_equal(
        _stored_prices(db, healthy, lookback_start, LAST),
        _expected_prices(healthy, lookback_start, LAST),
        check_dtype=False,
    )
    in_range = _stored_prices(db, PERSISTENT + ["FLAKY"], FIRST, LAST)
    partial_days = DAYS[:-PARTIAL_MISSING]
    stored = [(s, d.date()) for s, d in zip(in_range["symbol"], in_range["date"])]
    assert stored == [("HALF", d) for d in partial_days], (
        "only HALF's first sessions may be stored for the faulty symbols"
    )

    failures = _failures(db)
    assert sorted(failures.index) == sorted(PERSISTENT + ["FLAKY"]), (
        "every faulty symbol (raised, rate-limited, empty, partial, flaky, sample failure) is an open failure "
        f"and no healthy one is; got {sorted(failures.index)}"
    )
    assert (failures["attempts"] == 1).all() and (failures["status"] == "open").all(), failures
    assert failures["error"].str.len().gt(0).all(), failures["error"]

    # Factor exposures and metrics of the healthy symbols exist on every session.
    exposures = db.read("symbol_factor_exposures", {"symbol": HEALTHY, "factor": "market_beta", "date": (FIRST, LAST)})
    assert len(exposures) == len(HEALTHY) * len(DAYS)
    metrics = db.read("symbol_metrics", {"symbol": healthy, "date": (FIRST, LAST)})
    assert len(metrics) == len(healthy) * len(DAYS)
    return failures["first_seen"].copy()


@pytest.mark.slow
def test_faulty_symbols_are_isolated_recorded_retried_and_skipped(platform):
    db, instance, source, run = platform
    first_seen = _first_run(db, run)
    lookback_start = sessions.sessions_before(FIRST, LOOKBACK_SESSIONS)

    # ---- the planner retries the open failures (every day of them) and nothing else.
    _assert_plan_retries(db, instance, PERSISTENT + ["FLAKY"])

    # ---- run 2: attempts grow, the flaky symbol recovers and its failure row is closed.
    source.heal("FLAKY")
    assert run("symbol_layer_job", SYMBOLS, assets=["prices"]).success
    failures = _failures(db)
    assert sorted(failures.index) == PERSISTENT, "FLAKY succeeded: its failure must be closed"
    assert (failures["attempts"] == 2).all() and (failures["status"] == "open").all(), failures
    pd.testing.assert_series_equal(failures["first_seen"], first_seen.loc[PERSISTENT], check_names=False)
    pd.testing.assert_frame_equal(
        _stored_prices(db, ["FLAKY"], lookback_start, LAST),
        _expected_prices(["FLAKY"], lookback_start, LAST),
        check_dtype=False,
    )

    # ---- run 3: the third failed attempt marks them skipped (FACTOR_PLATFORM_MAX_ATTEMPTS defaults to 3) --
    # except the symbols a portfolio holds, which are never given up on (a listing may come later).
    assert run("symbol_layer_job", SYMBOLS, assets=["prices"]).success
    failures = _failures(db)
    assert (failures["attempts"] == 3).all(), failures
    assert failures["status"].to_dict() == {s: "open" if s in HELD_FAULTY else "skipped" for s in PERSISTENT}
    _assert_plan_retries(db, instance, HELD_FAULTY)

    # ---- run 4: skipped symbols are no longer fetched at all; held ones are, and fail again.
    asked = {s: source.asked_for(s) for s in [*PERSISTENT, "AAPL"]}
    assert run("symbol_layer_job", SYMBOLS, assets=["prices"]).success
    given_up = [s for s in PERSISTENT if s not in HELD_FAULTY]
    assert {s: source.asked_for(s) for s in given_up} == {s: asked[s] for s in given_up}, (
        "a skipped symbol was fetched again"
    )
    assert all(source.asked_for(s) > asked[s] for s in HELD_FAULTY), "a held symbol must be asked again"
    assert source.asked_for("AAPL") == asked["AAPL"] + 1, "a healthy symbol is fetched once per run"
    failures = _failures(db)
    assert failures["attempts"].to_dict() == {s: 4 if s in HELD_FAULTY else 3 for s in PERSISTENT}, failures
    assert set(failures.loc[failures["status"] == "skipped"].index) == set(given_up), failures


@pytest.mark.slow
def test_reference_data_and_portfolios_without_faulty_symbols_complete(sqlite_platform):
    """Downstream of the faults (one dialect: nothing here is dialect-specific)."""
    db, instance, source, run = sqlite_platform
    _first_run(db, run)
    healthy = ETFS + HEALTHY

    # Reference data: the same faults are isolated there too.
    reference = run("reference_data_job", SYMBOLS)
    assert reference.success, f"one faulty symbol failed the whole reference-data run: {_error(reference)}"
    profiles = set(db.read("company_profiles")["symbol"])
    assert set(healthy) <= profiles and not profiles & {"BOOM", "LIMITED", "HOLLOW", "FAILCO"}

    # Portfolios: the clean one is complete on every session; the exposed one keeps every snapshot, flagged.
    portfolios = run("portfolio_layer_job", list(PORTFOLIOS))
    assert portfolios.success, f"portfolio layer failed: {_error(portfolios)}"
    snaps = db.read("portfolio_snapshots").set_index(["portfolio_id", "date"]).sort_index()
    want_index = pd.MultiIndex.from_product([sorted(PORTFOLIOS), pd.to_datetime(DAYS)], names=["portfolio_id", "date"])
    assert list(snaps.index) == list(want_index), "a snapshot is missing (never silently dropped)"
    assert snaps.loc["clean", "is_complete"].all(), snaps.loc["clean"]
    assert not snaps.loc["exposed", "is_complete"].any(), "BOOM never had a price: every snapshot is incomplete"
    values = db.read("position_values", {"portfolio_id": "clean"})
    assert len(values) == 2 * len(DAYS) and values["price"].notna().all()


def _assert_plan_retries(db, instance, expected: list[str]) -> None:
    plan = plan_materialization(instance, db, start=FIRST, end=LAST, symbols=SYMBOLS)
    planned = {
        (d, k)
        for r in plan.symbol_runs
        for d in DAYS
        if r.rectangle.first <= d <= r.rectangle.last
        for k in r.rectangle.keys
    }
    assert planned == {(d, s) for d in DAYS for s in expected}, (
        f"the plan should retry exactly {expected} on every session; it plans {sorted({k for _, k in planned})}"
    )


@pytest.mark.slow
def test_max_attempts_is_read_from_the_environment(sqlite_platform, monkeypatch):
    db, instance, source, run = sqlite_platform
    monkeypatch.setenv("FACTOR_PLATFORM_MAX_ATTEMPTS", "1")
    assert run("symbol_layer_job", SYMBOLS, days=(LAST, LAST), assets=["prices"]).success
    failures = _failures(db)
    assert sorted(failures.index) == sorted(PERSISTENT + ["FLAKY"])
    unheld = failures.drop(index=HELD_FAULTY)
    assert (unheld["status"] == "skipped").all(), "with FACTOR_PLATFORM_MAX_ATTEMPTS=1 one failure is enough"
    assert (failures.loc[HELD_FAULTY, "status"] == "open").all(), "a held symbol is never skipped"
    asked = {s: source.asked_for(s) for s in ["BOOM", "HOLLOW", "AAPL"]}
    assert run("symbol_layer_job", SYMBOLS, days=(LAST, LAST), assets=["prices"]).success
    assert source.asked_for("HOLLOW") == asked["HOLLOW"] and source.asked_for("BOOM") == asked["BOOM"] + 1
    assert source.asked_for("AAPL") == asked["AAPL"] + 1


def test_the_faulty_source_is_a_price_source():
    from factor_platform.sources import PriceSource

    source = FaultySource({"BOOM": "raise"})
    assert isinstance(source, PriceSource)
    assert isinstance(FaultyMarketData(scenario="x"), type(symbol_assets.MarketData()))
