"""History: sessions before Dagster's partition window, computed by the layers' own code in runs
that record spans, not a Dagster event per partition (docs/scale.md).

A history run takes a rectangle (sessions first..last x keys) of one layer and its assets, like a
partitioned run, and computes it with the same functions the assets call. Then it records what it
did: the sessions before the window as `history_spans` (the planner's record of done history), the
sessions inside the window (a rectangle may straddle the window's first session) as ordinary
materializations of those partitions, so Dagster's view of the window stays whole.
"""

import datetime as dt
from collections.abc import Sequence

import dagster as dg

from factor_platform.defs.partitions import CALENDAR, PARTITIONS_FROM
from factor_platform.defs.resources import AnalyticsDatabase, MarketData
from factor_platform.domain import sessions
from factor_platform.layers.history import record_spans
from factor_platform.layers.names import HISTORY_JOB, LAYER_TAG, LAYERS, PORTFOLIO_ASSETS, SYMBOL_DAY_ASSETS
from factor_platform.layers.portfolio import update_portfolios
from factor_platform.layers.prices import update_prices
from factor_platform.layers.symbols import SYMBOL_ANALYTICS, skipped_symbols, update_symbol_analytics
from factor_platform.planning.plan import PlannedRun
from factor_platform.planning.rectangles import Rectangle


class HistoryRectangle(dg.Config):
    """Sessions `first`..`last` (ISO dates) x `keys` (symbols, or portfolios) of `assets` (one layer's)."""

    assets: list[str]
    first: str
    last: str
    keys: list[str]
    refresh: bool = False


def compute_rectangle(db, source, config: HistoryRectangle, days: list[dt.date], log) -> set[str]:
    """The layer code over the rectangle, in the layer's order; returns the keys whose prices failed."""
    assets, keys = config.assets, config.keys
    unknown = sorted(set(assets) - set(SYMBOL_DAY_ASSETS) - set(PORTFOLIO_ASSETS))
    if unknown or (set(assets) & set(SYMBOL_DAY_ASSETS) and set(assets) & set(PORTFOLIO_ASSETS)):
        raise ValueError(f"a history run computes assets of one day-partitioned layer, got {assets}")
    failed: set[str] = set()
    if "prices" in assets:
        update = update_prices(
            db,
            source,
            keys,
            days,
            calendar=CALENDAR,
            skipped=skipped_symbols(db, "prices"),
            refresh=config.refresh,
        )
        failed = set(update.failures) | set(update.newly_skipped)
        for why in [*update.inferred.values(), *update.unexplained.values(), *update.breaks.values()]:
            log.warning(why)
    analytics = [a for a in SYMBOL_ANALYTICS if a in assets]
    if analytics:
        update_symbol_analytics(db, days, keys, analytics, calendar=CALENDAR)
    tables = [a for a in PORTFOLIO_ASSETS if a in assets]
    if tables:
        update_portfolios(db, keys, days, tables, calendar=CALENDAR)
    return failed


@dg.op(tags={LAYER_TAG: "history"})
def compute_history(
    context: dg.OpExecutionContext, config: HistoryRectangle, analytics_db: AnalyticsDatabase, market_data: MarketData
) -> None:
    """Compute one rectangle of one layer, then record it: spans before the window, partitions inside."""
    db = analytics_db.get()
    first, last = dt.date.fromisoformat(config.first), dt.date.fromisoformat(config.last)
    days = [d.date() for d in sessions.sessions_in_range(first, last, CALENDAR)]
    if not days:
        raise ValueError(f"no {CALENDAR} session in {first}..{last}")
    failed = compute_rectangle(db, market_data.get(), config, days, context.log)
    before = [d for d in days if d < PARTITIONS_FROM]
    inside = [d for d in days if d >= PARTITIONS_FROM]
    if before:
        span = [(before[0], before[-1])]
        with db.begin() as conn:
            for asset in config.assets:
                done = [k for k in config.keys if not (asset == "prices" and k in failed)]
                record_spans(db, asset, {k: span for k in done}, calendar=CALENDAR, conn=conn)
    for asset in config.assets:
        for day in inside:
            for key in config.keys:
                context.log_event(dg.AssetMaterialization(asset, partition=f"{day.isoformat()}|{key}"))
    context.log.info(
        f"{len(config.keys)} key(s) x {len(days)} session(s) of {config.assets}: "
        f"{len(before)} session(s) recorded as history spans, {len(inside)} as partitions"
        + (f"; prices failed for {sorted(failed)}" if failed else "")
    )


@dg.job(name=HISTORY_JOB, executor_def=dg.in_process_executor, tags={LAYER_TAG: "history"})
def history_job():
    compute_history()


def history_run_config(rectangle: Rectangle, assets: Sequence[str], *, refresh: bool = False) -> dict:
    """The run config of a history run over `rectangle` of `assets`."""
    config = HistoryRectangle(
        assets=list(assets),
        first=rectangle.first.isoformat(),
        last=rectangle.last.isoformat(),
        keys=list(rectangle.keys),
        refresh=refresh,
    )
    return {"ops": {compute_history.name: {"config": config.model_dump()}}}


def run_request(run: PlannedRun, *, run_key: str) -> dg.RunRequest:
    """A planned run as a RunRequest (the sensor's): a history run carries its rectangle as run config; a
    layer run its partition range, and its assets when they are not the whole job's."""
    if run.job_name == HISTORY_JOB:
        return dg.RunRequest(
            run_key=run_key,
            job_name=HISTORY_JOB,
            run_config=history_run_config(run.rectangle, run.assets, refresh=run.refresh),
            tags=run.tags(),
        )
    whole_job = {layer.job: set(layer.assets) for layer in LAYERS}.get(run.job_name) == set(run.assets)
    return dg.RunRequest(
        run_key=run_key,
        job_name=run.job_name,
        asset_selection=None if whole_job else [dg.AssetKey(a) for a in run.assets],
        # A selection of assets brings their asset checks back into the run (the jobs leave them out),
        # and a check's result resolves every partition of its asset: 5,000 symbols' prices ran out
        # of memory (11 GB) building their keys. No checks: `asset_checks_job` runs them.
        asset_check_keys=None if whole_job else [],
        tags=run.tags(),
    )
