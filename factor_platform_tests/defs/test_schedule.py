"""The nightly schedule: after the close in New York, only on sessions, catching up missed ones."""

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd

from factor_platform.defs.resources import AnalyticsDatabase
from factor_platform.defs.schedules import archive_schedule, checks_schedule, nightly_schedule

NEW_YORK = ZoneInfo("America/New_York")


def _analytics(instance) -> AnalyticsDatabase:
    return AnalyticsDatabase(url=f"sqlite:///{instance.root_directory}/analytics.db")


def _evaluate(instance, day: dt.date):
    when = dt.datetime(day.year, day.month, day.day, 18, 0, tzinfo=NEW_YORK)
    resources = {"analytics_db": _analytics(instance)}
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=when, resources=resources) as context:
        return nightly_schedule.evaluate_tick(context)


def test_cron_is_after_the_close_in_new_york():
    assert nightly_schedule.cron_schedule == "0 18 * * 1-5"
    assert nightly_schedule.execution_timezone == "America/New_York"
    # the archive before the nightly (the window it plans in is then current), the checks after it
    assert (archive_schedule.cron_schedule, checks_schedule.cron_schedule) == ("0 17 * * 1-5", "30 20 * * 1-5")
    assert {archive_schedule.execution_timezone, checks_schedule.execution_timezone} == {"America/New_York"}


def test_holiday_is_skipped(sqlite_instance):
    sqlite_instance.add_dynamic_partitions("symbol", ["AAA"])
    result = _evaluate(sqlite_instance, dt.date(2025, 7, 4))
    assert result.run_requests == [] and "not a XNYS session" in result.skip_message


def test_session_requests_the_missing_sessions_for_all_symbols(sqlite_instance):
    sqlite_instance.add_dynamic_partitions("symbol", ["AAA", "BBB", "SPY"])
    result = _evaluate(sqlite_instance, dt.date(2025, 7, 7))
    (request,) = result.run_requests  # one rectangle: the catch-up window x all symbols
    assert request.tags["dagster/asset_partition_range_start"] == "2025-06-20|AAA"
    assert request.tags["dagster/asset_partition_range_end"] == "2025-07-07|SPY"
    assert request.run_key == "nightly:2025-07-07"


def test_partly_materialized_symbols_still_get_one_run(sqlite_instance):
    """Several missing rectangles become one run, so no beta is computed before the ETF prices exist."""
    sqlite_instance.add_dynamic_partitions("symbol", ["AAA", "BBB", "SPY"])
    from factor_platform.planning.rectangles import Rectangle

    done = Rectangle(dt.date(2025, 6, 20), dt.date(2025, 7, 3), ("AAA",))
    for key in done.partition_keys([dt.date(2025, 6, 20) + dt.timedelta(days=i) for i in range(20)]):
        for asset in ("prices", "symbol_factor_exposures", "symbol_metrics"):
            sqlite_instance.report_runless_asset_event(dg.AssetMaterialization(asset, partition=key))
    (request,) = _evaluate(sqlite_instance, dt.date(2025, 7, 7)).run_requests
    assert request.tags["dagster/asset_partition_range_start"] == "2025-06-20|AAA"
    assert request.tags["dagster/asset_partition_range_end"] == "2025-07-07|SPY"


def test_nights_missed_beyond_the_window_are_requested_from_the_store_s_newest_prices(sqlite_instance):
    """Sixteen missed sessions: the window (10) would leave six unfilled; the request starts after the store's last."""
    sqlite_instance.add_dynamic_partitions("symbol", ["AAA", "SPY"])
    _analytics(sqlite_instance).get().upsert(
        "prices",
        pd.DataFrame({"symbol": ["AAA"], "date": [pd.Timestamp("2025-06-12")], "close": [10.0], "source": ["test"]}),
    )
    (request,) = _evaluate(sqlite_instance, dt.date(2025, 7, 7)).run_requests
    assert request.tags["dagster/asset_partition_range_start"] == "2025-06-13|AAA"
    assert request.tags["dagster/asset_partition_range_end"] == "2025-07-07|SPY"
