"""The portfolio sensor: onboarding on new rows in `portfolios`, then catch-up of every portfolio.

Whatever wrote the row (the CLI import, another application's SQL insert), a tick
1. registers the portfolio partition and every symbol it holds that is not yet known, and requests
   one run over (its sessions x the new symbols) — existing symbols are never recomputed; a symbol
   two new portfolios share is computed once, by the first portfolio's run;
2. requests runs over the stale partitions of the symbol layer (prices the source changed under
   betas and metrics already computed: `layers.invalidation`), and the betas and metrics of a nightly
   that the schedule asked for in waves, once its prices runs have all succeeded (that tick asks for
   them alone, at once: the nightly waits on it);
3. requests, for every portfolio whose symbols are not being computed and that no run is computing,
   a run over its missing sessions (from inception, or after its latest snapshot, or from its first
   stale session, up to the symbol layer's latest date); portfolios with the same sessions share one
   run, cut into up to FACTOR_PLATFORM_WORKERS runs of 50 or more (a nightly's 500 portfolios: a run per core).
What to run is `planning.portfolio_runs`' (pure); this adapter reads the state, asks, registers the
partitions and turns the keyed runs into RunRequests. Run keys make requests idempotent; the cursor
remembers which symbol runs a portfolio waits for, so the sensor is exactly-once across daemon
restarts. A book the valuation cannot use (rows another application wrote) is skipped with a warning
and blocks no other portfolio.
"""

import datetime as dt
import json

import dagster as dg
import pandas as pd

from factor_platform import settings
from factor_platform.defs.history import compute_history, history_job, run_request
from factor_platform.defs.jobs import portfolio_layer_job, reference_data_job, symbol_layer_job
from factor_platform.defs.partitions import CALENDAR, PARTITIONS_FROM, START_DATE
from factor_platform.defs.resources import AnalyticsDatabase
from factor_platform.domain import sessions
from factor_platform.domain.book import Book
from factor_platform.layers.books import read_books
from factor_platform.layers.invalidation import PORTFOLIO_STALE_ASSET, SYMBOL_STALE_ASSETS, marker_days
from factor_platform.layers.names import NIGHTLY_TAG, PORTFOLIO_ASSETS, SYMBOL_DAY_ASSETS, WAVE_TAG
from factor_platform.planning.portfolio_runs import (
    KeyedRun,
    Window,
    catch_up_run,
    group_catch_ups,
    onboard,
    stale_runs,
)
from factor_platform.planning.rectangles import RANGE_END_TAG, RANGE_START_TAG, Rectangle
from factor_platform.planning.state import all_etfs
from factor_platform.planning.waves import DERIVED, FETCH, nightly_run_key, nightly_waves
from factor_platform.storage import Database

FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
WINDOW = Window(START_DATE, PARTITIONS_FROM, CALENDAR)


def _runs_finished(instance: dg.DagsterInstance, run_keys: list[str]) -> bool:
    for key in run_keys:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/run_key": key}), limit=1)
        if not runs or runs[0].status not in FINISHED:
            return False
    return True


def _in_flight(instance: dg.DagsterInstance, order: list[str], job: dg.JobDefinition, assets) -> set[str]:
    """Keys (of the dimension whose partitions are `order`) that a queued or running run of `job` (or a
    history run of `assets`) is computing."""
    busy: set[str] = set()
    for run in instance.get_runs(filters=dg.RunsFilter(job_name=job.name, statuses=IN_FLIGHT)):
        rectangle = _rectangle_of(run, order)
        if rectangle is not None:
            busy.update(rectangle.keys)
    for run in instance.get_runs(filters=dg.RunsFilter(job_name=history_job.name, statuses=IN_FLIGHT)):
        config = run.run_config.get("ops", {}).get(compute_history.name, {}).get("config", {})
        if set(config.get("assets", [])) & set(assets):
            busy.update(config.get("keys", []))
    return busy


def _rectangle_of(run: dg.DagsterRun, order: list[str]) -> Rectangle | None:
    """The sessions x keys a run's partition range tags name (keys in the dimension's `order`); None
    when it has none, or names a key `order` does not hold."""
    lo, hi = run.tags.get(RANGE_START_TAG, "").split("|"), run.tags.get(RANGE_END_TAG, "").split("|")
    position = {key: i for i, key in enumerate(order)}
    if len(lo) != 2 or len(hi) != 2 or lo[1] not in position or hi[1] not in position:
        return None
    keys = tuple(order[position[lo[1]] : position[hi[1]] + 1])
    return Rectangle(dt.date.fromisoformat(lo[0]), dt.date.fromisoformat(hi[0]), keys)


def _nightly_waves(instance: dg.DagsterInstance, day) -> tuple[list[KeyedRun], bool]:
    """When the schedule asked for `day`'s nightly in waves: its betas and metrics wave to ask for (once
    every prices run has succeeded, and only once), and whether the nightly is still computing -- then
    every portfolio waits, as its figures read the betas of all the factor ETFs. A failed prices run
    stops the waves, as a failed wave stops `materialize`'s (the next nightly plans those sessions again)."""
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=symbol_layer_job.name, tags={NIGHTLY_TAG: str(day)}))
    fetched = [r for r in runs if r.tags.get(WAVE_TAG) == FETCH]
    derived = [r for r in runs if r.tags.get(WAVE_TAG) == DERIVED]
    if not fetched:
        return [], False
    if derived:
        return [], any(r.status not in FINISHED for r in derived)
    if any(r.status not in FINISHED for r in fetched):
        return [], True
    if any(r.status != dg.DagsterRunStatus.SUCCESS for r in fetched):
        return [], False
    order = instance.get_dynamic_partitions("symbol")
    named = (_rectangle_of(r, order) for r in fetched)
    blocks = sorted((b for b in named if b is not None), key=lambda b: order.index(b.keys[0]))
    asked = [nightly_waves(day, block, 1)[1][0] for block in blocks]
    return [KeyedRun(run_key=nightly_run_key(r), run=r) for r in asked], True


def symbols_in_flight(instance: dg.DagsterInstance, symbols: list[str]) -> set[str]:
    """Symbols (of the registered `symbols`) that a queued or running symbol-layer run (or history run of
    symbols) is computing."""
    return _in_flight(instance, symbols, symbol_layer_job, SYMBOL_DAY_ASSETS)


def _stale_symbol_runs(
    instance: dg.DagsterInstance, stale: pd.DataFrame, latest, order: list[str]
) -> tuple[list[KeyedRun], set[str]]:
    """Runs recomputing the stale symbol-layer partitions (of the registered symbols, `order`), and the
    symbols whose recompute has not finished (the portfolios holding them wait for it)."""
    days, stamps = {}, {}
    for asset in SYMBOL_STALE_ASSETS:
        rows = stale[(stale["asset"] == asset) & stale["key"].isin(order)]
        if len(rows):
            days[asset] = marker_days(rows, end=latest, calendar=CALENDAR)
            stamps[asset] = f"{rows['recorded_at'].max():%Y%m%dT%H%M%S%f}"
    runs = stale_runs(days, stamps, order, WINDOW)
    waiting = {k for r in runs if not _runs_finished(instance, [r.run_key]) for k in r.run.rectangle.keys}
    return runs, waiting


def _catch_up(db: Database, books: list[Book], stale: pd.DataFrame, *, ready, latest) -> list[KeyedRun]:
    """The catch-up run of every book that is `ready` (its symbols are not being computed)."""
    stale_portfolios = stale[stale["asset"] == PORTFOLIO_STALE_ASSET].set_index("key")
    watermarks = db.max_date_by("portfolio_snapshots", "portfolio_id", [b.portfolio_id for b in books])
    # one query for every portfolio's symbols (a tick runs every second)
    etfs = all_etfs()
    newest_price = db.max_date_by(
        "prices", "symbol", keys=sorted({s for b in books for s in b.held_symbols} | set(etfs))
    )
    runs = []
    for book in books:
        if not ready(book):
            continue
        priced = [newest_price[s] for s in book.held_symbols + etfs if s in newest_price]
        mark = stale_portfolios.loc[book.portfolio_id] if book.portfolio_id in stale_portfolios.index else None
        run = catch_up_run(
            book,
            latest=latest,
            symbols_through=max(priced) if priced else None,
            snapshots_through=watermarks.get(book.portfolio_id),
            stale_from=None if mark is None else mark["first_date"].date(),
            stale_stamp=None if mark is None else f"{mark['recorded_at']:%Y%m%dT%H%M%S%f}",
            window=WINDOW,
        )
        if run is not None:
            runs.append(run)
    return runs


@dg.sensor(
    name="portfolio_sensor",
    jobs=[symbol_layer_job, reference_data_job, portfolio_layer_job, history_job],
    # The daemon evaluates sensors on a 5 s loop and skips a sensor whose last tick started less than
    # its interval ago: at 5 s that is every other loop when a tick starts a little late (waits of up
    # to ~10 s, measured in bench/). At 1 s the sensor runs on every loop.
    minimum_interval_seconds=1,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def portfolio_sensor(context: dg.SensorEvaluationContext, analytics_db: AnalyticsDatabase) -> dg.SensorResult:
    """Onboard new portfolios (new symbols first, then the portfolio) and catch every portfolio up."""
    db = analytics_db.get()
    instance = context.instance
    waiting: dict[str, list[str]] = json.loads(context.cursor)["waiting"] if context.cursor else {}
    latest = sessions.latest_closed_session(name=CALENDAR)
    nightly, nightly_computing = _nightly_waves(instance, latest)
    if nightly:  # the nightly's next wave at once, alone: what else this tick would ask waits a tick
        return dg.SensorResult(
            run_requests=[run_request(r.run, run_key=r.run_key) for r in nightly], cursor=context.cursor
        )
    problems: dict[str, str] = {}
    books = list(read_books(db, problems=problems).values())
    for pid, why in problems.items():  # one bad book (rows another application wrote) blocks no one else
        context.log.warning(f"portfolio {pid!r} skipped: {why}")
    # each dimension's partitions read once a tick (this tick's requests add to them only after it)
    symbols, known = instance.get_dynamic_partitions("symbol"), instance.get_dynamic_partitions("portfolio")
    known_set = set(known)
    new = onboard(
        books,
        known_set,
        set(symbols),
        etfs=all_etfs(),
        latest=latest,
        window=WINDOW,
    )
    waiting.update(new.waiting)
    stale = db.read("stale_partitions")
    stale_symbol_runs, waiting_on_stale = _stale_symbol_runs(instance, stale, latest, symbols)
    busy = symbols_in_flight(instance, symbols) | set(new.symbols) | waiting_on_stale

    def ready(book: Book) -> bool:
        if book.portfolio_id in waiting:
            if not _runs_finished(instance, waiting[book.portfolio_id]):
                return False
            del waiting[book.portfolio_id]
        return not busy & set(book.held_symbols)

    catch_ups: list[KeyedRun] = []
    if not nightly_computing:  # while a nightly computes every portfolio waits, and its ticks stay short
        # Portfolios caught up over the same sessions share a run; one a run is computing waits for it.
        in_flight = _in_flight(instance, known, portfolio_layer_job, PORTFOLIO_ASSETS)
        catch_ups = [
            r
            for r in _catch_up(db, books, stale, ready=ready, latest=latest)
            if r.run.rectangle.keys[0] not in in_flight
        ]
    order = known + [p for p in new.portfolios if p not in known_set]  # new partitions go at the end
    runs = new.runs + stale_symbol_runs + group_catch_ups(catch_ups, order, processes=settings.workers())
    dynamic = []
    if new.portfolios:
        dynamic.append(dg.AddDynamicPartitionsRequest("portfolio", new.portfolios))
    if new.symbols:
        dynamic.append(dg.AddDynamicPartitionsRequest("symbol", new.symbols))
    return dg.SensorResult(
        run_requests=[run_request(r.run, run_key=r.run_key) for r in runs],
        dynamic_partitions_requests=dynamic,
        cursor=json.dumps({"waiting": waiting}),
    )
