"""The definitions load, and carry the names the contract, the README and the UI rely on."""

import datetime as dt

import dagster as dg

from factor_platform.defs.partitions import date_partitions, portfolio_day_partitions, symbol_day_partitions
from factor_platform.running.runs import load_definitions


def test_assets_jobs_schedules_and_sensors_have_their_names():
    defs = load_definitions()
    assets = {key.to_user_string() for key in defs.resolve_all_asset_keys()}
    assert assets == {
        "company_profiles",
        "prices",
        "symbol_factor_exposures",
        "symbol_metrics",
        "fundamentals",
        "portfolio_snapshots",
        "position_values",
        "portfolio_sector_weights",
        "portfolio_factor_exposures",
        "portfolio_risk",
        "portfolio_correlations",
        "stress_results",
    }
    for job in ("symbol_layer_job", "reference_data_job", "portfolio_layer_job"):
        assert defs.resolve_job_def(job).name == job
    assert defs.resolve_schedule_def("nightly_schedule").execution_timezone == "America/New_York"
    assert defs.resolve_sensor_def("portfolio_sensor").name == "portfolio_sensor"
    checks = {key.name for key in defs.resolve_asset_graph().asset_check_keys}
    assert {
        "finite_betas",
        "positive_prices",
        "complete_snapshots",
        "explained_price_breaks",
        "no_stale_partitions",
    } <= checks


def test_partition_keys_read_date_then_symbol_or_portfolio():
    assert symbol_day_partitions.partition_dimension_names == ["date", "symbol"]
    assert portfolio_day_partitions.partition_dimension_names == ["date", "portfolio"]


def test_date_partitions_are_exactly_the_sessions():
    keys = date_partitions.get_partition_keys_in_range(dg.PartitionKeyRange("2025-06-30", "2025-07-08"))
    # July 4th (holiday) and the weekend are not partitions; July 3rd (half day) is.
    assert keys == ["2025-06-30", "2025-07-01", "2025-07-02", "2025-07-03", "2025-07-07", "2025-07-08"]
    thanksgiving = date_partitions.get_partition_keys_in_range(dg.PartitionKeyRange("2024-11-27", "2024-12-02"))
    assert thanksgiving == ["2024-11-27", "2024-11-29", "2024-12-02"]
    assert date_partitions.start.date() == dt.date(2010, 1, 4)
