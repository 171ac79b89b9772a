"""Every partition definition of the platform, in one place.

Dimension names are `date`, `symbol` and `portfolio`; Dagster orders the dimensions of a
multi-partition by name, so keys read `2025-01-02|AAPL` and `2025-01-02|growth_fund`.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from factor_platform import settings
from factor_platform.domain import sessions
from factor_platform.settings import Settings

_settings = Settings.from_env()
CALENDAR = _settings.calendar
START_DATE: dt.date = sessions.session_on_or_after(_settings.start_date, CALENDAR)
# The partition window (FACTOR_PLATFORM_PARTITION_MONTHS): the sessions from PARTITIONS_FROM on are
# Dagster partitions; the ones before are history (defs/history.py, docs/scale.md). Without a
# window, PARTITIONS_FROM is START_DATE.
PARTITIONS_FROM: dt.date = sessions.partitions_from(_settings.start_date, settings.partition_months(), CALENDAR)

# Weekday windows with the exchange's holidays excluded: a date partition exists only for a session.
# end_offset=1 makes today's partition exist from midnight so the after-close schedule can fill it.
# The holidays run to a fixed day (sessions.HOLIDAYS_THROUGH): the definition's id must not drift with the clock.
date_partitions = dg.TimeWindowPartitionsDefinition(
    start=PARTITIONS_FROM.isoformat(),
    fmt="%Y-%m-%d",
    cron_schedule="0 0 * * 1-5",
    timezone="America/New_York",
    end_offset=1,
    exclusions=[
        dt.datetime(d.year, d.month, d.day)
        for d in sessions.holidays_between(PARTITIONS_FROM, sessions.HOLIDAYS_THROUGH, CALENDAR)
    ],
)

symbol_partitions = dg.DynamicPartitionsDefinition(name="symbol")
portfolio_partitions = dg.DynamicPartitionsDefinition(name="portfolio")

symbol_day_partitions = dg.MultiPartitionsDefinition({"date": date_partitions, "symbol": symbol_partitions})
portfolio_day_partitions = dg.MultiPartitionsDefinition({"date": date_partitions, "portfolio": portfolio_partitions})


def partition_metadata(counts: dict, details: dict) -> dict:
    """Metadata of a run's materializations. Dagster copies it into the event of every partition of
    the run (400k events in a year x 500 symbols), and a JSON list there costs ~20% of Dagster's own
    time per event: so counts always, and the lists behind them only when they are not empty."""
    return {**counts, **{name: dg.MetadataValue.json(value) for name, value in details.items() if value}}


def rectangle(context: dg.AssetExecutionContext) -> tuple[list[dt.date], list[str]]:
    """The sessions and the symbols (or portfolios) a run was given.

    A run covers a rectangle (contiguous sessions x contiguous keys); the asset computes it in one pass.
    Read from the run's partition key range, one dimension at a time: `context.partition_keys` would
    build and parse every (date, key) pair — 134k per asset in a year x 500 symbols run.
    """
    key_range = context.partition_key_range
    partitions_def = context.assets_def.partitions_def
    start, end = (
        key if isinstance(key, dg.MultiPartitionKey) else partitions_def.get_partition_key_from_str(key)
        for key in (key_range.start, key_range.end)
    )
    keys = {}
    for dimension in partitions_def.partitions_defs:  # Dagster's range of a multi-partition is their product
        lo, hi = start.keys_by_dimension[dimension.name], end.keys_by_dimension[dimension.name]
        if isinstance(dimension.partitions_def, dg.DynamicPartitionsDefinition):
            order = context.instance.get_dynamic_partitions(dimension.partitions_def.name)
            keys[dimension.name] = order[order.index(lo) : order.index(hi) + 1]
        else:
            keys[dimension.name] = dimension.partitions_def.get_partition_keys_in_range(dg.PartitionKeyRange(lo, hi))
    days = keys.pop("date")
    (others,) = keys.values()
    return [dt.date.fromisoformat(day) for day in days], sorted(others)
