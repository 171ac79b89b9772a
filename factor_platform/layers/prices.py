"""The prices layer: fetch, reconcile with what is stored, write, and invalidate what changed.

Every fetch re-reads an overlap of stored sessions (FACTOR_PLATFORM_PRICE_OVERLAP before the run's
first date; the whole stored history with `refresh`). Where the source now reports other values:

- one common factor over the overlap (a split or dividend the vendor re-based into history): the
  symbol's older stored rows are re-based by it in the same transaction as the new rows, the
  re-basing is recorded in `price_rebasings`, and no return ever sees it;
- values that differ otherwise (a restatement, a late action): the overlap rows are replaced, and
  from the first changed session the partitions that read the symbol's returns are marked stale;
- a re-basing of `close` (a split) also makes the level-dependent figures stale (52-week high/low,
  the position values of every portfolio holding the symbol).

Corporate actions come from the source with the prices and are kept in `corporate_actions`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from factor_platform.calc.price_history import differs, rebase, reconcile, unexplained_breaks
from factor_platform.domain import sessions
from factor_platform.domain.factor_models import LOOKBACK_SESSIONS, factor_tickers, load_regressions
from factor_platform.domain.symbols import is_option_symbol
from factor_platform.layers.books import read_books
from factor_platform.layers.failures import failure_frame, fetch_isolated, price_gaps, settle_failures
from factor_platform.layers.invalidation import PORTFOLIO_STALE_ASSET, Stale, mark_stale
from factor_platform.settings import max_attempts, price_overlap, price_tolerance
from factor_platform.sources.base import ACTION_COLUMNS, PRICE_COLUMNS, FetchResult, empty_frame
from factor_platform.storage import Database

REFRESH_TAG = "factor_platform/refresh"  # "true" on a prices run: re-read each symbol's whole stored history
_EARLIEST = dt.date(1900, 1, 1)
_COMPARED = ("close", "adj_close")


@dataclass
class PriceUpdate:
    """What one prices run did, for its metadata."""

    written: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    newly_skipped: list[str] = field(default_factory=list)
    option_gaps: list[str] = field(default_factory=list)
    rebased: dict[str, dict[str, float]] = field(default_factory=dict)  # symbol -> {close, adj_close} factors
    restated: dict[str, str] = field(default_factory=dict)  # symbol -> first changed session
    actions: int = 0
    stale: dict[str, int] = field(default_factory=dict)  # asset -> keys marked stale


def _fetch_starts(db: Database, symbols: list[str], first: dt.date, *, refresh: bool, calendar: str) -> dict[str, dt.date]:
    """Where each symbol's fetch begins: an overlap before `first` when its lookback is stored, the
    one-year lookback otherwise, its whole stored history with `refresh`."""
    lookback_start = sessions.sessions_before(first, LOOKBACK_SESSIONS, calendar)
    overlap_start = sessions.sessions_before(first, price_overlap(), calendar)
    have = db.count_by("prices", "symbol", {"symbol": symbols, "date": (lookback_start, first - dt.timedelta(days=1))})
    starts = {s: overlap_start if have.get(s, 0) >= LOOKBACK_SESSIONS * 0.9 else lookback_start for s in symbols}
    if refresh:
        oldest = db.max_date_by("prices", "symbol", symbols, oldest=True)
        starts = {s: min(start, oldest.get(s, start)) for s, start in starts.items()}
    return starts


def _fetch(source, starts: dict[str, dt.date], last: dt.date) -> tuple[FetchResult, FetchResult]:
    """Prices and corporate actions, one request per distinct start date."""
    frames, actions, failures, action_failures = [], [], {}, {}
    by_start: dict[dt.date, list[str]] = {}
    for symbol, start in starts.items():
        by_start.setdefault(start, []).append(symbol)
    for start, group in sorted(by_start.items()):
        result = fetch_isolated(source.fetch_prices, group, start, last, columns=PRICE_COLUMNS)
        frames.append(result.frame)
        failures.update(result.failures)
        priced = [s for s in group if s not in result.failures]
        if priced:
            found = fetch_isolated(source.fetch_actions, priced, start, last, columns=ACTION_COLUMNS)
            actions.append(found.frame)
            action_failures.update(found.failures)
    prices = pd.concat(frames, ignore_index=True) if frames else empty_frame(PRICE_COLUMNS)
    found = pd.concat(actions, ignore_index=True) if actions else empty_frame(ACTION_COLUMNS)
    return FetchResult(prices, failures), FetchResult(found, action_failures)


def _changed_symbols(stored: pd.DataFrame, fetched: pd.DataFrame, tolerance: float) -> list[str]:
    """Symbols whose re-read close or adj_close differs from the stored one on some session (vectorized:
    the nightly compares every symbol's overlap and almost none differ)."""
    if stored.empty or fetched.empty:
        return []
    both = fetched[["symbol", "date", *_COMPARED]].merge(
        stored[["symbol", "date", *_COMPARED]], on=["symbol", "date"], suffixes=("", "_stored")
    )
    changed = np.zeros(len(both), dtype=bool)
    for column in _COMPARED:
        changed |= differs(both[column], both[f"{column}_stored"], tolerance)
    return sorted(set(both.loc[changed, "symbol"]))


def _new_actions(db: Database, conn, actions: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """The fetched actions that are not stored yet, or stored with another value."""
    if actions.empty:
        return actions
    stored = db.read("corporate_actions", {"symbol": sorted(set(actions["symbol"]))}, conn=conn)
    both = actions.merge(stored[["symbol", "date", "kind", "value"]], on=["symbol", "date", "kind"], how="left",
                         suffixes=("", "_stored"))
    return actions.loc[differs(both["value"], both["value_stored"], tolerance)]


def _holders(db: Database, conn, symbols: set[str]) -> dict[str, set[str]]:
    """{symbol: portfolios holding it, directly or as an option's underlying}."""
    books = read_books(db, problems={}, conn=conn)  # a book the layer cannot value has no figures to mark
    return {s: {pid for pid, book in books.items() if s in book.held_symbols} for s in symbols}


def _stale_marks(db: Database, conn, *, returns_from: dict[str, dt.date], levels: set[str], etfs: set[str]) -> list[Stale]:
    """What reads the changed data: the symbol's betas and metrics from the first changed return (every
    symbol's betas when it is a factor ETF), its metrics' price levels (52-week high/low) after a re-basing
    of close, and the portfolio layer of every portfolio holding it (all portfolios for an ETF)."""
    marks: list[Stale] = []
    holders = _holders(db, conn, set(returns_from) | levels)
    everyone = None
    for symbol, day in returns_from.items():
        why = f"{symbol} prices changed from {day}"
        marks += [Stale("symbol_factor_exposures", symbol, day, why), Stale("symbol_metrics", symbol, day, why)]
        portfolios = holders[symbol]
        if symbol in etfs:
            if everyone is None:
                everyone = sorted(db.max_date_by("symbol_factor_exposures", "symbol", conn=conn))
                portfolios = set(db.read("portfolios", columns=["portfolio_id"], conn=conn)["portfolio_id"])
            marks += [Stale("symbol_factor_exposures", s, day, why) for s in everyone]
        marks += [Stale(PORTFOLIO_STALE_ASSET, p, day, why) for p in portfolios]
    for symbol in levels:
        why = f"{symbol} price history re-based"
        marks.append(Stale("symbol_metrics", symbol, _EARLIEST, why))
        marks += [Stale(PORTFOLIO_STALE_ASSET, p, _EARLIEST, why) for p in holders[symbol]]
    return marks


def update_prices(
    db: Database,
    source,
    symbols: list[str],
    days: list[dt.date],
    *,
    calendar: str,
    refresh: bool = False,
    skipped: set[str] = frozenset(),
) -> PriceUpdate:
    """Fetch `symbols` for the sessions `days` (with the overlap), reconcile, write in one transaction."""
    first, last = days[0], days[-1]
    tolerance = price_tolerance()
    update = PriceUpdate()
    wanted = [s for s in symbols if s not in skipped]
    starts = _fetch_starts(db, wanted, first, refresh=refresh, calendar=calendar)
    fetched, actions = _fetch(source, starts, last)
    frame, failures = fetched.frame, dict(fetched.failures)
    # Nothing, or prices that stop short, for a symbol the source did not report: a failure too.
    failures.update(price_gaps(frame, [s for s in wanted if s not in failures], first, last, calendar))
    # An option contract without a market price is priced by the model downstream: not a failure.
    update.option_gaps = sorted(s for s in failures if is_option_symbol(s))
    update.failures = {s: e for s, e in failures.items() if s not in update.option_gaps}
    ok = sorted(set(wanted) - set(update.failures))
    etfs = set(factor_tickers(load_regressions()))
    with db.begin() as conn:
        stored = db.read("prices", {"symbol": sorted(set(frame["symbol"])), "date": (min(starts.values(), default=first), last)},
                         conn=conn) if len(frame) else frame
        newest_stored = stored.groupby("symbol")["date"].max() if len(stored) else pd.Series(dtype="datetime64[ns]")
        returns_from: dict[str, dt.date] = {}
        levels: set[str] = set()
        older_rows, older_actions = [], []
        for symbol in _changed_symbols(stored, frame, tolerance):
            mine, theirs = stored[stored["symbol"] == symbol], frame[frame["symbol"] == symbol]
            overlap = mine[mine["date"].isin(theirs["date"])]
            result = reconcile(overlap, theirs[theirs["date"].isin(overlap["date"])], tolerance=tolerance)
            if result.changed_from is not None:
                returns_from[symbol] = result.changed_from.date()
                update.restated[symbol] = result.changed_from.date().isoformat()
            if result.rebased:
                update.rebased[symbol] = {"close": result.close_factor, "adj_close": result.adj_factor}
                before = theirs["date"].min()
                older = db.read("prices", {"symbol": symbol, "date": (_EARLIEST, before.date() - dt.timedelta(days=1))}, conn=conn)
                older_rows.append(rebase(older, close_factor=result.close_factor, adj_factor=result.adj_factor))
                if result.close_factor != 1.0:
                    levels.add(symbol)
                    # dividends are cash per share on the basis of close: they re-base with it
                    paid = db.read("corporate_actions", {"symbol": symbol, "kind": "dividend",
                                                         "date": (_EARLIEST, before.date() - dt.timedelta(days=1))}, conn=conn)
                    older_actions.append(paid.assign(value=paid["value"] * result.close_factor))
        for rows in older_actions:
            if len(rows):
                db.upsert("corporate_actions", rows, conn=conn)
        new_actions = _new_actions(db, conn, actions.frame, tolerance)
        for row in new_actions.itertuples():
            # an action dated on or before a session already stored was learned late: its dates are recomputed
            if row.symbol in newest_stored.index and row.date <= newest_stored[row.symbol]:
                returns_from[row.symbol] = min(returns_from.get(row.symbol, row.date.date()), row.date.date())
        update.written = sum(db.upsert("prices", rows, conn=conn) for rows in [*older_rows, frame] if len(rows))
        update.actions = db.upsert("corporate_actions", new_actions, conn=conn) if len(new_actions) else 0
        if update.rebased:
            recorded = pd.Timestamp.now(tz="UTC").tz_localize(None)
            db.upsert("price_rebasings", pd.DataFrame([
                {"symbol": s, "recorded_at": recorded, "close_factor": f["close"], "adj_factor": f["adj_close"],
                 "before_date": frame.loc[frame["symbol"] == s, "date"].min(), "source": source.name}
                for s, f in update.rebased.items()
            ]), conn=conn)
        update.stale = mark_stale(db, conn, _stale_marks(db, conn, returns_from=returns_from, levels=levels, etfs=etfs))
        update.newly_skipped = settle_failures(
            db, conn, stage="prices", succeeded=ok, failed=failure_frame(update.failures, "prices", last), limit=max_attempts()
        )
        settle_failures(db, conn, stage="actions", succeeded=[s for s in ok if s not in actions.failures],
                        failed=failure_frame(actions.failures, "actions", last))
    return update


def unexplained_price_breaks(db: Database, *, threshold: float = 0.5) -> pd.DataFrame:
    """Close-to-close moves a split would explain (<= -50 % or >= +100 %) on sessions without a split:
    a re-basing the source did not report, or prices on another basis (symbol, date, return)."""
    rows = db.read("prices", columns=["symbol", "date", "close"])
    if rows.empty:
        return pd.DataFrame(columns=["symbol", "date", "return"])
    close = rows.pivot(index="date", columns="symbol", values="close")
    splits = db.read("corporate_actions", {"kind": "split"}, columns=["symbol", "date", "value"])
    return unexplained_breaks(close, splits, threshold=threshold)
