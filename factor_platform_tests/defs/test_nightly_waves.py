"""A large nightly through the daemon in waves, a run per core: the schedule asks for the prices, the sensor
for the betas and metrics once every prices run has succeeded, and the portfolios only after those."""

from __future__ import annotations

import datetime as dt

import dagster as dg

import factor_platform.defs.schedules as schedules
from factor_platform.defs.portfolios.sensors import portfolio_sensor
from factor_platform.defs.resources import AnalyticsDatabase
from factor_platform.domain import sessions
from factor_platform.layers.books import import_portfolio
from factor_platform.layers.names import NIGHTLY_TAG, WAVE_TAG
from factor_platform.layers.prices import update_prices
from factor_platform.planning.rectangles import Rectangle
from factor_platform.planning.state import all_etfs
from factor_platform.planning.waves import nightly_run_key, nightly_waves
from factor_platform.running.runs import load_definitions
from factor_platform.sources.sample import SampleSource
from factor_platform_tests.defs.conftest import db_url
from factor_platform_tests.defs.test_schedule import _evaluate

START, END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
KEYS = ("AAA", "BBB", "CCC", "SPY", "ZZZ")


def test_the_waves_cover_the_span_in_blocks_with_one_key_each():
    span = Rectangle(dt.date(2025, 7, 1), dt.date(2025, 7, 7), KEYS)
    fetch, derived = nightly_waves(dt.date(2025, 7, 7), span, 2)
    assert [r.rectangle.keys for r in fetch] == [("AAA", "BBB", "CCC"), ("SPY", "ZZZ")]
    assert [r.rectangle for r in derived] == [r.rectangle for r in fetch]
    assert {r.assets for r in fetch} == {("prices",)}
    assert {r.assets for r in derived} == {("symbol_factor_exposures", "symbol_metrics")}
    keys = [nightly_run_key(r) for r in fetch + derived]
    assert keys[0] == "nightly:2025-07-07:prices:AAA..CCC" and len(set(keys)) == 4
    assert fetch[0].tags()[START] == "2025-07-01|AAA" and fetch[1].tags()[END] == "2025-07-07|ZZZ"


def test_a_large_nightly_asks_for_its_prices_in_a_run_per_core(sqlite_instance, monkeypatch):
    sqlite_instance.add_dynamic_partitions("symbol", list(KEYS))
    monkeypatch.setenv("FACTOR_PLATFORM_WORKERS", "2")
    (one,) = _evaluate(sqlite_instance, dt.date(2025, 7, 7)).run_requests  # small: one run, every asset
    assert one.run_key == "nightly:2025-07-07" and one.asset_selection is None

    monkeypatch.setattr(schedules, "PARALLEL_MIN_PARTITIONS", 10)
    requests = _evaluate(sqlite_instance, dt.date(2025, 7, 7)).run_requests
    assert [(r.tags[START], r.tags[END]) for r in requests] == [
        ("2025-06-20|AAA", "2025-07-07|CCC"),
        ("2025-06-20|SPY", "2025-07-07|ZZZ"),
    ]
    assert {tuple(r.asset_selection) for r in requests} == {(dg.AssetKey("prices"),)}
    # without their asset checks: a check's result resolves every partition of its asset (11 GB at 5,000 symbols)
    assert {tuple(r.asset_check_keys) for r in requests} == {()}
    assert {(r.tags[NIGHTLY_TAG], r.tags[WAVE_TAG]) for r in requests} == {("2025-07-07", "prices")}


def _tick(instance, db):
    context = dg.build_sensor_context(instance=instance, resources={"analytics_db": AnalyticsDatabase(url=db_url(db))})
    return portfolio_sensor.evaluate_tick(context).run_requests


def test_the_sensor_asks_for_the_betas_once_every_prices_run_has_succeeded(analytics, sqlite_instance, tmp_path):
    db, instance = analytics, sqlite_instance
    latest = sessions.latest_closed_session()
    symbols = ["AAA", "BBB", *all_etfs()]
    update_prices(db, SampleSource(), symbols, [sessions.sessions_before(latest, 10), latest], calendar="XNYS")
    path = tmp_path / "p.csv"
    entry = sessions.sessions_before(latest, 3)
    path.write_text(
        f"symbol,quantity,position_type,investment_class,entry_price,entry_date\nAAA,10,LONG,PUBLIC,50,{entry}\n"
    )
    import_portfolio(db, path, portfolio_id="p")
    instance.add_dynamic_partitions("portfolio", ["p"])
    instance.add_dynamic_partitions("symbol", symbols)
    fetch, _ = nightly_waves(latest, Rectangle(latest, latest, tuple(symbols)), 2)
    job = load_definitions().resolve_job_def("symbol_layer_job")
    runs = [
        instance.create_run_for_job(
            job, tags={**r.tags(), "dagster/run_key": nightly_run_key(r)}, status=dg.DagsterRunStatus.STARTED
        )
        for r in fetch
    ]

    assert _tick(instance, db) == []  # the prices are being fetched: no betas, and p waits
    _succeed(instance, runs[0])
    assert _tick(instance, db) == []  # one prices run still in flight

    _succeed(instance, runs[1])
    requests = _tick(instance, db)
    assert [r.tags[WAVE_TAG] for r in requests] == ["derived", "derived"]  # and no portfolio run yet
    assert {tuple(r.asset_selection) for r in requests} == {
        (dg.AssetKey("symbol_factor_exposures"), dg.AssetKey("symbol_metrics"))
    }
    assert [(r.tags[START], r.tags[END]) for r in requests] == [
        (runs[0].tags[START], runs[0].tags[END]),
        (runs[1].tags[START], runs[1].tags[END]),
    ]

    derived = [  # asked once: while they run, the portfolio still waits
        instance.create_run_for_job(
            job, tags={**request.tags, "dagster/run_key": request.run_key}, status=dg.DagsterRunStatus.NOT_STARTED
        )
        for request in requests
    ]
    assert _tick(instance, db) == []
    for run in derived:
        _succeed(instance, run)
    (portfolio,) = _tick(instance, db)  # the nightly is done: now the portfolio
    assert portfolio.job_name == "portfolio_layer_job" and portfolio.run_key.startswith("portfolio:p:")


def test_a_failed_prices_run_stops_the_next_wave(analytics, sqlite_instance):
    db, instance = analytics, sqlite_instance
    latest = sessions.latest_closed_session()
    instance.add_dynamic_partitions("symbol", list(KEYS))
    fetch, _ = nightly_waves(latest, Rectangle(latest, latest, KEYS), 2)
    job = load_definitions().resolve_job_def("symbol_layer_job")
    statuses = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]
    for run, status in zip(fetch, statuses):
        instance.create_run_for_job(job, tags={**run.tags(), "dagster/run_key": nightly_run_key(run)}, status=status)
    assert _tick(instance, db) == []


def _succeed(instance, run):
    event = dg.DagsterEvent(event_type_value=dg.DagsterEventType.RUN_SUCCESS.value, job_name=run.job_name)
    instance.report_dagster_event(event, run_id=run.run_id)
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.SUCCESS
