"""The archive: Dagster's per-partition records of sessions that left the partition window become
history spans (docs/scale.md).

Dagster keeps an asset's status as the set of its materialized partition keys and rebuilds it from
the event log whenever the partitions definition changes -- as it does each month the window moves.
Records of sessions before the window would make that rebuild, and every status read, grow with
history; so, per asset, they are summed up as spans in `history_spans` (one transaction), and only
then deleted from the event log's index (the asset's cached status is rebuilt from what remains).
The open-source SQL event logs do not implement `wipe_asset_partitions`; this deletes the index rows
through Dagster's own table definitions, and the tests check the result through Dagster's API.

It runs where the window is decided: `materialize` before it plans, and `archive_job` every session
before the nightly (`defs.schedules.archive_schedule`), whose run process loads the definitions of the day. The
webserver and the daemon keep the window they loaded: reload the code location when a month begins.
"""

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

import dagster as dg
import sqlalchemy as sa
from dagster._core.storage.event_log.schema import AssetEventTagsTable, SqlEventLogStorageTable

from factor_platform.defs.resources import AnalyticsDatabase
from factor_platform.domain import sessions, spans
from factor_platform.layers.history import record_spans
from factor_platform.layers.names import PORTFOLIO_ASSETS, SYMBOL_DAY_ASSETS
from factor_platform.planning.state import day_partitions
from factor_platform.settings import Settings, partition_months
from factor_platform.storage import Database

DAY_ASSETS = tuple(SYMBOL_DAY_ASSETS + PORTFOLIO_ASSETS)  # the date-partitioned ones


@dataclass(frozen=True)
class Archived:
    asset: str
    partitions: int  # materialized partitions turned into spans
    keys: int  # symbols or portfolios they belong to
    events: int  # event-log rows deleted


def has_records_before(instance: dg.DagsterInstance, cutoff: dt.date, assets=DAY_ASSETS) -> bool:
    """Whether any asset still has event-log records of sessions before `cutoff` (one indexed probe each)."""
    t = SqlEventLogStorageTable
    with instance.event_log_storage.index_connection() as conn:
        return any(
            conn.execute(sa.select(t.c.id).where(day_partitions(asset, before=cutoff)).limit(1)).first() is not None
            for asset in assets
        )


def archive_before(
    instance: dg.DagsterInstance, db: Database, cutoff: dt.date, *, calendar: str, assets=DAY_ASSETS
) -> list[Archived]:
    """Turn each asset's materializations of sessions before `cutoff` into history spans, then delete
    its event-log records of those sessions. Idempotent: a second call finds nothing."""
    t = SqlEventLogStorageTable
    storage = instance.event_log_storage
    out = []
    for asset in assets:
        done = sa.and_(
            day_partitions(asset, before=cutoff),
            t.c.dagster_event_type == dg.DagsterEventType.ASSET_MATERIALIZATION.value,
        )
        with storage.index_connection() as conn:
            partitions = [row[0] for row in conn.execute(sa.select(t.c.partition).where(done).distinct())]
        days: dict[str, list[dt.date]] = defaultdict(list)
        for partition in partitions:
            day, key = partition.split("|", 1)
            days[key].append(dt.date.fromisoformat(day))
        record_spans(db, asset, {key: spans.of_days(d, calendar) for key, d in days.items()}, calendar=calendar)
        with storage.index_connection() as conn:
            ids = sa.select(t.c.id).where(day_partitions(asset, before=cutoff)).scalar_subquery()
            conn.execute(sa.delete(AssetEventTagsTable).where(AssetEventTagsTable.c.event_id.in_(ids)))
            deleted = conn.execute(sa.delete(t).where(day_partitions(asset, before=cutoff))).rowcount
        if deleted:
            storage.wipe_asset_cached_status(dg.AssetKey(asset))
        out.append(Archived(asset, len(partitions), len(days), deleted))
    return out


def archive_moved_window(instance: dg.DagsterInstance, db: Database, settings: Settings) -> tuple[dt.date, int]:
    """Archive what lies before today's window, if anything does: (the window's first session, the
    partitions archived). One indexed probe per asset when there is nothing to do."""
    first = sessions.first_session(settings)
    window_from = sessions.partitions_from(settings.start_date, partition_months(), settings.calendar)
    if window_from <= first or not has_records_before(instance, window_from):
        return window_from, 0
    moved = archive_before(instance, db, window_from, calendar=settings.calendar)
    return window_from, sum(a.partitions for a in moved)


@dg.op
def archive_partitions_before_the_window(context: dg.OpExecutionContext, analytics_db: AnalyticsDatabase) -> None:
    """Dagster's records of sessions that left the partition window, as history spans."""
    window_from, archived = archive_moved_window(context.instance, analytics_db.get(), Settings.from_env())
    context.log.info(f"{archived} partition(s) before {window_from} archived as history spans")


@dg.job(name="archive_job", executor_def=dg.in_process_executor)
def archive_job():
    archive_partitions_before_the_window()
