"""The planner's one read: `read_state(instance, db, request) -> PlanState`.

What it reads follows the request -- the wanted keys and the window's sessions -- never the history:
Dagster's records of the wanted keys (whole sessions as ranges of its index, the rest key by key),
history as a few spans per key, stale marks, open failures and snapshot rows of the wanted keys, and
the books.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import defaultdict
from collections.abc import Sequence

import dagster as dg
import sqlalchemy as sa
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage

from factor_platform.domain.factor_models import factor_tickers, load_regressions
from factor_platform.layers.books import read_books
from factor_platform.layers.history import read_spans
from factor_platform.layers.invalidation import PORTFOLIO_STALE_ASSET, SYMBOL_STALE_ASSETS, stale_days
from factor_platform.layers.names import PORTFOLIO_ASSETS, SYMBOL_ASSETS, SYMBOL_DAY_ASSETS
from factor_platform.layers.symbols import skipped_symbols
from factor_platform.planning.plan import (
    PlanRequest,
    PlanState,
    history_range,
    partition_keys,
    wanted,
    window_days,
)
from factor_platform.storage import Database

RETRIED_STAGES = ("prices", "profile", "fundamentals")
# Keys per IN list. Postgres probes the index key by key for up to a few thousand; at 10,000 it scanned
# every materialization of the asset, or the whole event log once analyzed: O(history) (issue 19).
_KEYS_PER_QUERY = 1_000
# A session with at least this many wanted keys is read as a range of the index instead (`day_partitions`).
_RANGE_MIN_KEYS = 1_000


def all_etfs() -> list[str]:
    return factor_tickers(load_regressions())


def day_partitions(asset: str, *, since: dt.date | None = None, before: dt.date | None = None):
    """SQL condition on Dagster's event log: `asset`'s rows of the sessions in [since, before).

    Keys read "YYYY-MM-DD|key" (the date dimension sorts first), so sessions are a range of Dagster's
    index on (asset_key, event type, partition). Bare dates as bounds keep that true under any
    collation: a key sorts after its own bare date and before the next day's, whatever its symbol.
    """
    t = SqlEventLogStorageTable
    return sa.and_(
        t.c.asset_key == dg.AssetKey(asset).to_string(),
        t.c.partition.isnot(None),
        *([t.c.partition >= since.isoformat()] if since else []),
        *([t.c.partition < before.isoformat()] if before else []),
    )


def materialized(instance: dg.DagsterInstance, asset: str, keys: Sequence[str]) -> set[str]:
    """Which of `keys` (partition keys of `asset`) have a materialization.

    The cost follows the request, never the asset's history: the sessions a request wants whole (the
    nightly's 11 sessions x 5,260 symbols) are read as ranges of Dagster's index, a few keys by key
    (a GROUP BY over their rows only). Reading the whole history instead was ~26 s per asset at 5,000 x
    10 years; IN lists of 10,000 keys made Postgres scan it too (3.6 s for the nightly's 3 x 57,860).
    """
    storage = instance.event_log_storage
    found: set[str] = set()
    probe = list(keys)
    if isinstance(storage, SqlEventLogStorage):
        by_day: dict[str, list[str]] = defaultdict(list)
        for key in keys:
            by_day[key.split("|", 1)[0]].append(key)
        days = sorted(by_day)
        whole = {d for d in days if len(by_day[d]) >= _RANGE_MIN_KEYS and _is_date(d)}
        wanted = set(keys)
        # consecutive wanted sessions as one range (sessions between them that no key wants are read too)
        for is_whole, run in itertools.groupby(days, key=whole.__contains__):
            if is_whole:
                run = list(run)
                found |= wanted & _materialized_between(storage, asset, run[0], run[-1])
        probe = [k for d in days if d not in whole for k in by_day[d]]
    for i in range(0, len(probe), _KEYS_PER_QUERY):
        found.update(
            storage.get_latest_storage_id_by_partition(
                dg.AssetKey(asset),
                dg.DagsterEventType.ASSET_MATERIALIZATION,
                partitions=set(probe[i : i + _KEYS_PER_QUERY]),
            )
        )
    return found


def _is_date(text: str) -> bool:
    try:
        return dt.date.fromisoformat(text).isoformat() == text
    except ValueError:
        return False


def _materialized_between(storage: SqlEventLogStorage, asset: str, first: str, last: str) -> set[str]:
    """Partition keys of `asset` materialized on the sessions first..last (ISO dates), read as one
    range of Dagster's index through its own table definition (its API looks keys up one by one)."""
    t = SqlEventLogStorageTable
    since, before = dt.date.fromisoformat(first), dt.date.fromisoformat(last) + dt.timedelta(days=1)
    query = (
        sa.select(t.c.partition)
        .where(
            day_partitions(asset, since=since, before=before),
            t.c.dagster_event_type == dg.DagsterEventType.ASSET_MATERIALIZATION.value,
        )
        .distinct()
    )
    with storage.index_connection() as conn:
        return {row[0] for row in conn.execute(query)}


def retry_symbols(db: Database, stages: tuple[str, ...] = RETRIED_STAGES) -> set[str]:
    """Symbols with an open (not skipped) fetch failure of `stages`: the next run tries them again."""
    rows = db.read("symbol_failures", {"stage": list(stages)}, columns=["symbol", "status"])
    return set(rows.loc[rows["status"] != "skipped", "symbol"])


def snapshot_days(db: Database, days_by_portfolio: dict[str, list[dt.date]]) -> dict[str, set[dt.date]]:
    """{portfolio: wanted sessions that have a snapshot row} (a changed book's figures are deleted on import)."""
    if not days_by_portfolio:
        return {}
    lo = min(days[0] for days in days_by_portfolio.values())
    hi = max(days[-1] for days in days_by_portfolio.values())
    rows = db.read(
        "portfolio_snapshots",
        {"portfolio_id": list(days_by_portfolio), "date": (lo, hi)},
        columns=["portfolio_id", "date"],
    )
    return rows.groupby("portfolio_id")["date"].apply(lambda d: set(d.dt.date)).to_dict()


def read_books_of(db: Database, request: PlanRequest) -> dict:
    """The books the request is about: those named (an unknown one is an error), or all of them when
    neither portfolios nor symbols are named."""
    if request.portfolios is None:
        return read_books(db) if request.symbols is None else {}
    books = read_books(db, list(request.portfolios))
    unknown = sorted(set(request.portfolios) - set(books))
    if unknown:
        raise ValueError(f"unknown portfolio(s): {unknown} (import them first: factor-platform portfolio import)")
    return books


def read_state(instance: dg.DagsterInstance, db: Database, request: PlanRequest) -> PlanState:
    """Everything `plan(state, request)` reads, for the keys and sessions `request` wants."""
    books = read_books_of(db, request)
    registered_symbols = list(instance.get_dynamic_partitions("symbol"))
    etfs = all_etfs()
    store_newest = db.max_date("prices")
    want = wanted(request, registered_symbols, books, etfs, store_newest)
    symbol_days = {s: window_days(lo, request) for s, lo in want.symbols.items()}
    portfolio_days = {p: d for p, d in ((p, window_days(lo, request)) for p, lo in want.portfolios.items()) if d}
    symbol_keys, portfolio_keys = partition_keys(symbol_days), partition_keys(portfolio_days)
    done = {asset: materialized(instance, asset, symbol_keys) for asset in SYMBOL_DAY_ASSETS}
    done |= {asset: materialized(instance, asset, portfolio_keys) for asset in PORTFOLIO_ASSETS}
    done |= {asset: materialized(instance, asset, sorted(want.symbols)) for asset in SYMBOL_ASSETS}
    history_symbols = [s for s, lo in want.symbols.items() if history_range(lo, request)]
    history_portfolios = [p for p, lo in want.portfolios.items() if history_range(lo, request)]
    spans = {asset: read_spans(db, asset, history_symbols) for asset in SYMBOL_DAY_ASSETS if history_symbols}
    spans |= {asset: read_spans(db, asset, history_portfolios) for asset in PORTFOLIO_ASSETS if history_portfolios}
    stale = {
        asset: stale_days(db, asset, list(want.symbols), end=request.end, calendar=request.calendar)
        for asset in SYMBOL_STALE_ASSETS
    }
    stale[PORTFOLIO_STALE_ASSET] = stale_days(
        db, PORTFOLIO_STALE_ASSET, list(want.portfolios), end=request.end, calendar=request.calendar
    )
    # Each layer retries its own failures: a missing profile does not re-run every day's prices.
    # A held symbol is never given up on (layers.prices): one skipped before is asked again too.
    held = {s for book in books.values() for s in book.held_symbols}
    return PlanState(
        registered_symbols=registered_symbols,
        registered_portfolios=list(instance.get_dynamic_partitions("portfolio")),
        books=books,
        etfs=etfs,
        store_newest=store_newest,
        done=done,
        spans=spans,
        stale=stale,
        snapshot_days=snapshot_days(db, portfolio_days),
        retry_prices=retry_symbols(db, ("prices",)) | (held & skipped_symbols(db, "prices")),
        retry_reference=retry_symbols(db, ("profile", "fundamentals")),
    )
