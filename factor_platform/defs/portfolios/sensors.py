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
Run keys make requests idempotent; the cursor remembers which symbol runs a portfolio waits for,
so the sensor is exactly-once across daemon restarts.
"""


import datetime as dt
import json

import dagster as dg
import pandas as pd

from factor_platform.domain import sessions
from factor_platform.defs.jobs import portfolio_layer_job, reference_data_job, symbol_layer_job
from factor_platform.defs.partitions import CALENDAR, START_DATE
from factor_platform.defs.resources import AnalyticsDatabase
from factor_platform.planning.planner import all_etfs, held_symbols
from factor_platform.layers.invalidation import PORTFOLIO_STALE_ASSET, SYMBOL_STALE_ASSETS, marker_days
from factor_platform.planning.rectangles import RANGE_END_TAG, RANGE_START_TAG, Rectangle, plan_rectangles

FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
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


def _book_fingerprint(positions: pd.DataFrame) -> str:
    rows = positions.sort_values("position_id").astype(str)
    return f"{int(pd.util.hash_pandas_object(rows, index=False).sum()) & 0xFFFFFFFF:08x}"


def _first_session(inception) -> dt.date:
    return max(sessions.session_on_or_after(pd.Timestamp(inception).date(), CALENDAR), START_DATE)


def _stale_symbol_requests(instance: dg.DagsterInstance, stale: pd.DataFrame, latest: dt.date) -> tuple[list[dg.RunRequest], set[str]]:
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
            requests.append(dg.RunRequest(run_key=key, job_name=symbol_layer_job.name, asset_selection=[dg.AssetKey(asset)],
                                          tags=rect.tags()))
    return requests, waiting


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
    state = json.loads(context.cursor) if context.cursor else {"waiting": {}}
    waiting: dict[str, list[str]] = state["waiting"]
    latest = sessions.latest_closed_session(name=CALENDAR)
    portfolios = db.read("portfolios").sort_values(["created_at", "portfolio_id"])
    known_portfolios = set(instance.get_dynamic_partitions("portfolio"))
    known_symbols = set(instance.get_dynamic_partitions("symbol"))
    new_portfolios, new_symbols, requests = [], [], []
    claimed: dict[str, str] = {}  # new symbol -> run key of the run computing it
    positions = db.read("positions", {"portfolio_id": portfolios["portfolio_id"].tolist()}) if len(portfolios) else None
    books = dict(tuple(positions.groupby("portfolio_id"))) if positions is not None else {}
    held_by = {pid: held_symbols(book) for pid, book in books.items()}
    for row in portfolios.itertuples():
        pid = row.portfolio_id
        if pid in known_portfolios:
            continue
        held = held_by.get(pid, []) + all_etfs()
        fresh = [s for s in dict.fromkeys(held) if s not in known_symbols and s not in claimed]
        depends = sorted({claimed[s] for s in held if s in claimed})
        if fresh:
            key = f"onboard-symbols:{pid}:{row.created_at}"
            rect = Rectangle(_first_session(row.inception_date), latest, tuple(fresh))
            tags = {ONBOARDING_TAG: pid}
            requests.append(dg.RunRequest(run_key=key, job_name=symbol_layer_job.name, tags={**rect.tags(), **tags}))
            requests.append(dg.RunRequest(
                run_key=f"onboard-reference:{pid}:{row.created_at}", job_name=reference_data_job.name,
                tags={RANGE_START_TAG: fresh[0], RANGE_END_TAG: fresh[-1], **tags},
            ))
            claimed.update({s: key for s in fresh})
            new_symbols.extend(fresh)
            depends.append(key)
        new_portfolios.append(pid)
        waiting[pid] = depends
    stale = db.read("stale_partitions")
    stale_requests, waiting_on_stale = _stale_symbol_requests(instance, stale, latest)
    requests += stale_requests
    busy = symbols_in_flight(instance) | set(new_symbols) | waiting_on_stale
    stale_portfolios = stale[stale["asset"] == PORTFOLIO_STALE_ASSET].set_index("key")
    watermarks = db.max_date_by("portfolio_snapshots", "portfolio_id")
    # one query for every portfolio's symbols (a tick runs every 5 s)
    newest_price = db.max_date_by("prices", "symbol", keys=sorted({s for held in held_by.values() for s in held} | set(all_etfs())))
    for row in portfolios.itertuples():
        pid = row.portfolio_id
        if pid in waiting:
            if not _runs_finished(instance, waiting[pid]):
                continue
            del waiting[pid]
        held = held_by.get(pid, [])
        if busy & set(held):
            continue
        ready = [newest_price[s] for s in held + all_etfs() if s in newest_price]
        end = min(latest, max(ready)) if ready else latest
        done = watermarks.get(pid)
        first = _first_session(row.inception_date) if done is None else sessions.session_on_or_after(done + dt.timedelta(days=1), CALENDAR)
        marker = ""
        if pid in stale_portfolios.index:  # prices changed under figures already computed
            first = min(first, stale_portfolios.loc[pid, "first_date"].date())
            marker = f":stale-{stale_portfolios.loc[pid, 'recorded_at']:%Y%m%dT%H%M%S%f}"
        if first > end:
            continue
        rect = Rectangle(first, end, (pid,))
        # The book's fingerprint in the key: a changed book (its figures deleted on import) is a new run.
        key = f"portfolio:{pid}:{first}:{end}:{_book_fingerprint(books.get(pid, positions.iloc[0:0]))}{marker}"
        requests.append(dg.RunRequest(run_key=key, job_name=portfolio_layer_job.name, tags=rect.tags()))
    dynamic = []
    if new_portfolios:
        dynamic.append(dg.AddDynamicPartitionsRequest("portfolio", new_portfolios))
    if new_symbols:
        dynamic.append(dg.AddDynamicPartitionsRequest("symbol", new_symbols))
    return dg.SensorResult(run_requests=requests, dynamic_partitions_requests=dynamic, cursor=json.dumps(state))
