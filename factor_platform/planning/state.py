"""The planner's one read: `read_state(instance, db, request) -> PlanState`.

What it reads follows the request -- the wanted keys and the window's sessions -- never the history:
Dagster's records by partition key (a GROUP BY over the wanted keys' rows), history as a few spans per
key, stale marks, open failures and snapshot rows of the wanted keys, and the books.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import dagster as dg

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
# Partition keys per query: Postgres and SQLite take an IN list of this size without trouble.
_KEYS_PER_QUERY = 10_000


def all_etfs() -> list[str]:
    return factor_tickers(load_regressions())


def materialized(instance: dg.DagsterInstance, asset: str, keys: Sequence[str]) -> set[str]:
    """Which of `keys` (partition keys of `asset`) have a materialization.

    Looked up in the event log by key (a GROUP BY over their rows only), so the cost follows the
    request, never the asset's history: reading the whole history instead was ~1 s per asset at
    500 symbols x 1 year and ~26 s at 5,000 x 10 years (issue 19), the nightly's 55,000 keys 0.55 s.
    """
    found: set[str] = set()
    storage = instance.event_log_storage
    for i in range(0, len(keys), _KEYS_PER_QUERY):
        found.update(
            storage.get_latest_storage_id_by_partition(
                dg.AssetKey(asset),
                dg.DagsterEventType.ASSET_MATERIALIZATION,
                partitions=set(keys[i : i + _KEYS_PER_QUERY]),
            )
        )
    return found


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
