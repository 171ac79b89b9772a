"""The portfolio sensor: onboarding on new rows in `portfolios`, then catch-up of every portfolio.

Whatever wrote the row (the CLI import, another application's SQL insert), a tick
1. registers the portfolio partition and every symbol it holds that is not yet known, and requests
   one run over (its sessions x the new symbols) — existing symbols are never recomputed; a symbol
   two new portfolios share is computed once, by the first portfolio's run;
2. requests runs over the stale partitions of the symbol layer (prices the source changed under
   betas and metrics already computed: `layers.invalidation`);
3. requests, for every portfolio whose symbols are not being computed, one run over its missing
   sessions (from inception, or after its latest snapshot, or from its first stale session, up to
   the symbol layer's latest date).
Run keys make requests idempotent (a portfolio's carry its book version: a changed book is new
work); the cursor remembers which symbol runs a portfolio waits for, so the sensor is exactly-once
across daemon restarts. A book the valuation cannot use (rows another application wrote) is skipped
with a warning and blocks no other portfolio.
"""

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg
import pandas as pd

from factor_platform.defs.jobs import portfolio_layer_job, reference_data_job, symbol_layer_job
from factor_platform.defs.partitions import CALENDAR, START_DATE
from factor_platform.defs.resources import AnalyticsDatabase
from factor_platform.domain import sessions
from factor_platform.domain.book import Book
from factor_platform.layers.books import read_books
from factor_platform.layers.invalidation import PORTFOLIO_STALE_ASSET, SYMBOL_STALE_ASSETS, marker_days
from factor_platform.planning.planner import all_etfs
from factor_platform.planning.rectangles import RANGE_END_TAG, RANGE_START_TAG, Rectangle, plan_rectangles
from factor_platform.storage import Database

FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
ONBOARDING_TAG = "factor_platform/onboarding"


def _runs_finished(instance: dg.DagsterInstance, run_keys: list[str]) -> bool:
    for key in run_keys:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/run_key": key}), limit=1)
        if not runs or runs[0].status not in FINISHED:
            return False
    return True


def symbols_in_flight(instance: dg.DagsterInstance) -> set[str]:
    """Symbols that a queued or running symbol-layer run is computing."""
    order = instance.get_dynamic_partitions("symbol")
    position = {s: i for i, s in enumerate(order)}
    busy: set[str] = set()
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=symbol_layer_job.name, statuses=IN_FLIGHT))
    for run in runs:
        lo, hi = run.tags.get(RANGE_START_TAG, ""), run.tags.get(RANGE_END_TAG, "")
        lo_symbol, hi_symbol = lo.split("|")[-1], hi.split("|")[-1]
        if lo_symbol in position and hi_symbol in position:
            busy.update(order[position[lo_symbol] : position[hi_symbol] + 1])
    return busy


def _first_session(inception: dt.date) -> dt.date:
    return max(sessions.session_on_or_after(inception, CALENDAR), START_DATE)


def _stale_symbol_requests(
    instance: dg.DagsterInstance, stale: pd.DataFrame, latest: dt.date
) -> tuple[list[dg.RunRequest], set[str]]:
    """Runs recomputing the stale symbol-layer partitions (one per asset and rectangle), and the
    symbols whose recompute has not finished (the portfolios holding them wait for it)."""
    requests, waiting = [], set()
    order = instance.get_dynamic_partitions("symbol")
    for asset in SYMBOL_STALE_ASSETS:
        rows = stale[(stale["asset"] == asset) & stale["key"].isin(order)]
        if rows.empty:
            continue
        days = marker_days(rows, end=latest, calendar=CALENDAR)
        all_days = sorted({d for ds in days.values() for d in ds})
        stamp = f"{rows['recorded_at'].max():%Y%m%dT%H%M%S%f}"
        for rect in plan_rectangles(days, sessions=all_days, key_order=order):
            key = f"stale:{asset}:{rect.first}:{rect.last}:{rect.keys[0]}:{rect.keys[-1]}:{len(rect.keys)}:{stamp}"
            if not _runs_finished(instance, [key]):
                waiting.update(rect.keys)
            requests.append(
                dg.RunRequest(
                    run_key=key, job_name=symbol_layer_job.name, asset_selection=[dg.AssetKey(asset)], tags=rect.tags()
                )
            )
    return requests, waiting


@dataclass
class Onboarding:
    """What one tick starts for the portfolios Dagster does not know yet."""

    requests: list[dg.RunRequest] = field(default_factory=list)
    portfolios: list[str] = field(default_factory=list)  # partitions to add
    symbols: list[str] = field(default_factory=list)  # partitions to add, computed by this tick's runs
    waiting: dict[str, list[str]] = field(default_factory=dict)  # portfolio -> run keys it waits for


def onboard(books: list[Book], known_portfolios: set[str], known_symbols: set[str], latest: dt.date) -> Onboarding:
    """One symbol-layer run (and one reference-data run) per new portfolio over its symbols nobody
    has computed yet; a symbol two new portfolios share is claimed by the first, the second waits."""
    out = Onboarding()
    claimed: dict[str, str] = {}  # new symbol -> run key of the run computing it
    etfs = all_etfs()
    for book in books:
        pid = book.portfolio_id
        if pid in known_portfolios:
            continue
        held = book.held_symbols + etfs
        fresh = [s for s in dict.fromkeys(held) if s not in known_symbols and s not in claimed]
        depends = sorted({claimed[s] for s in held if s in claimed})
        if fresh:
            key = f"onboard-symbols:{pid}:{book.created_at}"
            tags = {ONBOARDING_TAG: pid}
            rect = Rectangle(_first_session(book.inception), latest, tuple(fresh))
            out.requests.append(
                dg.RunRequest(run_key=key, job_name=symbol_layer_job.name, tags={**rect.tags(), **tags})
            )
            out.requests.append(
                dg.RunRequest(
                    run_key=f"onboard-reference:{pid}:{book.created_at}",
                    job_name=reference_data_job.name,
                    tags={RANGE_START_TAG: fresh[0], RANGE_END_TAG: fresh[-1], **tags},
                )
            )
            claimed.update({s: key for s in fresh})
            out.symbols.extend(fresh)
            depends.append(key)
        out.portfolios.append(pid)
        out.waiting[pid] = depends
    return out


def catch_up_request(
    book: Book,
    *,
    latest: dt.date,
    symbols_through: dt.date | None,
    snapshots_through: dt.date | None,
    stale: pd.Series | None,
) -> dg.RunRequest | None:
    """The run over a portfolio's missing sessions: from inception (or after its latest snapshot, or
    from its first stale session) up to the latest session its symbols have prices for; None when
    there is nothing to compute. The book's version is in the run key: a changed book (its figures
    deleted on import) is a new run, a re-import of an earlier file too."""
    end = min(latest, symbols_through) if symbols_through is not None else latest
    if snapshots_through is None:
        first = _first_session(book.inception)
    else:
        first = sessions.session_on_or_after(snapshots_through + dt.timedelta(days=1), CALENDAR)
    marker = ""
    if stale is not None:  # prices changed under figures already computed
        first = min(first, stale["first_date"].date())
        marker = f":stale-{stale['recorded_at']:%Y%m%dT%H%M%S%f}"
    if first > end:
        return None
    key = f"portfolio:{book.portfolio_id}:{first}:{end}:{book.run_key_part}{marker}"
    return dg.RunRequest(
        run_key=key, job_name=portfolio_layer_job.name, tags=Rectangle(first, end, (book.portfolio_id,)).tags()
    )


def catch_up(
    db: Database, books: list[Book], stale: pd.DataFrame, *, ready: Callable[[Book], bool], latest: dt.date
) -> list[dg.RunRequest]:
    """`catch_up_request` of every book that is `ready` (its symbols are not being computed);
    `stale`: the rows of `stale_partitions`."""
    stale_portfolios = stale[stale["asset"] == PORTFOLIO_STALE_ASSET].set_index("key")
    watermarks = db.max_date_by("portfolio_snapshots", "portfolio_id")
    # one query for every portfolio's symbols (a tick runs every second)
    etfs = all_etfs()
    newest_price = db.max_date_by(
        "prices", "symbol", keys=sorted({s for b in books for s in b.held_symbols} | set(etfs))
    )
    requests = []
    for book in books:
        if not ready(book):
            continue
        priced = [newest_price[s] for s in book.held_symbols + etfs if s in newest_price]
        request = catch_up_request(
            book,
            latest=latest,
            symbols_through=max(priced) if priced else None,
            snapshots_through=watermarks.get(book.portfolio_id),
            stale=stale_portfolios.loc[book.portfolio_id] if book.portfolio_id in stale_portfolios.index else None,
        )
        if request is not None:
            requests.append(request)
    return requests


@dg.sensor(
    name="portfolio_sensor",
    jobs=[symbol_layer_job, reference_data_job, portfolio_layer_job],
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
    problems: dict[str, str] = {}
    books = list(read_books(db, problems=problems).values())
    for pid, why in problems.items():  # one bad book (rows another application wrote) blocks no one else
        context.log.warning(f"portfolio {pid!r} skipped: {why}")
    new = onboard(
        books, set(instance.get_dynamic_partitions("portfolio")), set(instance.get_dynamic_partitions("symbol")), latest
    )
    waiting.update(new.waiting)
    stale = db.read("stale_partitions")
    stale_requests, waiting_on_stale = _stale_symbol_requests(instance, stale, latest)
    busy = symbols_in_flight(instance) | set(new.symbols) | waiting_on_stale

    def ready(book: Book) -> bool:
        if book.portfolio_id in waiting:
            if not _runs_finished(instance, waiting[book.portfolio_id]):
                return False
            del waiting[book.portfolio_id]
        return not busy & set(book.held_symbols)

    requests = new.requests + stale_requests + catch_up(db, books, stale, ready=ready, latest=latest)
    dynamic = []
    if new.portfolios:
        dynamic.append(dg.AddDynamicPartitionsRequest("portfolio", new.portfolios))
    if new.symbols:
        dynamic.append(dg.AddDynamicPartitionsRequest("symbol", new.symbols))
    return dg.SensorResult(
        run_requests=requests, dynamic_partitions_requests=dynamic, cursor=json.dumps({"waiting": waiting})
    )
