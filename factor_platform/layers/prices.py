"""The prices layer: fetch, reconcile with what is stored, write, and invalidate what changed.

The store mirrors the source. Every fetch re-reads an overlap of the symbol's last stored sessions
(FACTOR_PLATFORM_PRICE_OVERLAP, anchored on what is stored, so missed nights are filled whatever
their number; the whole stored history with `refresh`). Where the re-read differs from the store
(a re-basing, a restatement, a late row), the symbol's whole history is read again from the source
and written as the source has it -- never `stored × factor`, which vendors' rounding to cents makes
wrong -- and exactly what read the changed values is marked stale (`layers.invalidation`): the
symbol's betas and metrics from the first changed return (every symbol's betas for a factor ETF),
its 52-week range and the portfolios holding it from the first changed close.

What the platform cannot explain is loud: a re-basing of `close` no known split explains is an
inferred split where its factor is a clean split ratio (recorded in `corporate_actions` with
`source` `inferred:<source>`, and a warning), else a `rebasing` failure; a daily move beyond
FACTOR_PLATFORM_BREAK_THRESHOLD on a session without an action is a `price_break` warning. A held
symbol the source lacks is asked again on every run (never `skipped`), and fails every run.

Corporate actions come from the source with the prices and are kept in `corporate_actions`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import pandas as pd

from factor_platform.calc.price_history import compare_history, differs, rebase, split_ratio, unexplained_breaks
from factor_platform.domain import sessions
from factor_platform.domain.factor_models import LOOKBACK_SESSIONS, factor_tickers, load_regressions
from factor_platform.domain.symbols import is_option_symbol
from factor_platform.layers.books import read_books
from factor_platform.layers.failures import failure_frame, fetch_isolated, price_gaps, settle_failures
from factor_platform.layers.invalidation import PORTFOLIO_STALE_ASSET, Stale, mark_stale
from factor_platform.settings import break_threshold, max_attempts, price_overlap, price_tolerance
from factor_platform.sources.base import ACTION_COLUMNS, PRICE_COLUMNS, FetchResult, empty_frame
from factor_platform.storage import Database

REBASING_STAGE = "rebasing"  # a re-basing of close that no split explains (a failure)
BREAK_STAGE = "price_break"  # a daily move beyond the threshold without an action (a warning)
INFERRED_STAGE = "inferred_split"  # a split inferred from a re-basing (a warning, until the source reports one)
FAILING_STAGES = ("prices", REBASING_STAGE)  # the symbol_failures stages that fail a run (exit code 1)
INFERRED = "inferred"  # corporate_actions.source prefix of a split the platform inferred from a re-basing
_EARLIEST = dt.date(1900, 1, 1)
_COMPARED = ("close", "adj_close")
_LISTED_BREAKS = 5


@dataclass
class PriceUpdate:
    """What one prices run did, for its metadata."""

    written: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    newly_skipped: list[str] = field(default_factory=list)
    option_gaps: list[str] = field(default_factory=list)
    rebased: dict[str, dict[str, float]] = field(default_factory=dict)  # symbol -> {close, adj_close} factors
    restated: dict[str, str] = field(default_factory=dict)  # symbol -> first session whose stored value changed
    reread: list[str] = field(default_factory=list)  # symbols whose whole history was read again
    inferred: dict[str, str] = field(default_factory=dict)  # symbol -> the split inferred from its re-basing
    unexplained: dict[str, str] = field(default_factory=dict)  # symbol -> a re-basing no split explains
    breaks: dict[str, str] = field(default_factory=dict)  # symbol -> its unexplained moves
    actions: int = 0
    stale: dict[str, int] = field(default_factory=dict)  # asset -> keys marked stale


def _fetch_starts(
    db: Database, symbols: list[str], first: dt.date, *, refresh: bool, calendar: str
) -> tuple[dict[str, dt.date], dict[str, dt.date]]:
    """Where each symbol's fetch begins, and its last stored session.

    A symbol with stored prices re-reads the overlap before the earlier of `first` and its first
    unstored session (so every session between the store and the request is filled); without its
    lookback stored, from the one-year lookback too; with `refresh`, from its oldest stored session.
    """
    lookback_start = sessions.sessions_before(first, LOOKBACK_SESSIONS, calendar)
    have = db.count_by("prices", "symbol", {"symbol": symbols, "date": (lookback_start, first - dt.timedelta(days=1))})
    newest = db.max_date_by("prices", "symbol", symbols)
    starts = {}
    for s in symbols:
        if s not in newest:
            starts[s] = lookback_start
            continue
        anchor = min(first, sessions.session_on_or_after(newest[s] + dt.timedelta(days=1), calendar))
        starts[s] = sessions.sessions_before(anchor, price_overlap(), calendar)
        if have.get(s, 0) < LOOKBACK_SESSIONS * 0.9:
            starts[s] = min(starts[s], lookback_start)
    if refresh:
        oldest = db.max_date_by("prices", "symbol", symbols, oldest=True)
        starts = {s: min(start, oldest.get(s, start)) for s, start in starts.items()}
    return starts, newest


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


def _changed_symbols(
    stored: pd.DataFrame, fetched: pd.DataFrame, newest: dict[str, dt.date], tolerance: float
) -> list[str]:
    """Symbols whose re-read differs from the store (vectorized: the nightly compares every symbol's
    overlap and almost none differ): a close or adj_close changed on a stored session, or a session
    the store lacks inside its span (a late row)."""
    if stored.empty or fetched.empty:
        return []
    both = fetched[["symbol", "date", *_COMPARED]].merge(
        stored[["symbol", "date", *_COMPARED]],
        on=["symbol", "date"],
        how="left",
        suffixes=("", "_stored"),
        indicator=True,
    )
    last = pd.to_datetime(both["symbol"].map({s: pd.Timestamp(d) for s, d in newest.items()}))
    late = (both["_merge"] == "left_only").to_numpy() & (both["date"] < last).to_numpy()
    changed = late.copy()
    stored_rows = (both["_merge"] == "both").to_numpy()
    for column in _COMPARED:
        changed |= stored_rows & differs(both[f"{column}_stored"], both[column], tolerance)
    return sorted(set(both.loc[changed, "symbol"]))


def _new_actions(db: Database, conn, actions: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """The fetched actions that are not stored yet, or stored with another value."""
    if actions.empty:
        return actions
    stored = db.read("corporate_actions", {"symbol": sorted(set(actions["symbol"]))}, conn=conn)
    both = actions.merge(
        stored[["symbol", "date", "kind", "value"]], on=["symbol", "date", "kind"], how="left", suffixes=("", "_stored")
    )
    return actions.loc[differs(both["value"], both["value_stored"], tolerance)]


def _holders(db: Database, conn=None) -> dict[str, set[str]]:
    """{symbol: portfolios holding it, directly or as an option's underlying}."""
    books = read_books(db, problems={}, conn=conn)  # a book the layer cannot value has no figures to mark
    out: dict[str, set[str]] = {}
    for pid, book in books.items():
        for symbol in book.held_symbols:
            out.setdefault(symbol, set()).add(pid)
    return out


def _stale_marks(
    db: Database,
    conn,
    holders: dict[str, set[str]],
    *,
    returns_from: dict[str, dt.date],
    levels_from: dict[str, dt.date],
    etfs: set[str],
) -> list[Stale]:
    """What reads the changed data: the symbol's betas and metrics from the first changed return (every
    symbol's betas when it is a factor ETF), its metrics' price levels (52-week high/low) from the first
    changed close, and the portfolio layer of every portfolio holding it (all portfolios for an ETF)."""
    marks: list[Stale] = []
    everyone = None
    for symbol, day in returns_from.items():
        why = f"{symbol} prices changed from {day}"
        marks += [Stale("symbol_factor_exposures", symbol, day, why), Stale("symbol_metrics", symbol, day, why)]
        portfolios = holders.get(symbol, set())
        if symbol in etfs:
            if everyone is None:
                everyone = sorted(db.max_date_by("symbol_factor_exposures", "symbol", conn=conn))
                portfolios = set(db.read("portfolios", columns=["portfolio_id"], conn=conn)["portfolio_id"])
            marks += [Stale("symbol_factor_exposures", s, day, why) for s in everyone]
        marks += [Stale(PORTFOLIO_STALE_ASSET, p, day, why) for p in portfolios]
    for symbol, day in levels_from.items():
        why = f"{symbol} price levels changed from {day}"
        marks.append(Stale("symbol_metrics", symbol, day, why))
        marks += [Stale(PORTFOLIO_STALE_ASSET, p, day, why) for p in holders.get(symbol, set())]
    return marks


def _ratio_text(ratio: float) -> str:
    f = Fraction(ratio).limit_denominator(100)
    return f"{f.numerator}:{f.denominator}"


def _classify_rebasing(
    symbol: str,
    old: pd.DataFrame,
    new: pd.DataFrame,
    splits: pd.DataFrame,
    after: dt.date,
    last: dt.date,
    *,
    tolerance: float,
    calendar: str,
    source: str,
) -> tuple[pd.DataFrame, str | None, str | None]:
    """A re-basing of `symbol`'s close between its stored (`old`) and re-read (`new`) history, against the
    splits known for it after its last stored session `after`: (an inferred split row or an empty frame,
    the warning that says so, the failure when no clean split explains it)."""
    both = old[["date", "close"]].merge(new[["date", "close"]], on="date", suffixes=("_old", ""))
    known = splits.loc[
        (splits["symbol"] == symbol) & (splits["date"] > pd.Timestamp(after)) & (splits["date"] <= pd.Timestamp(last)),
        "value",
    ]
    explained = float(np.prod(known)) if len(known) else 1.0
    ratio = split_ratio(both["close_old"], both["close"], explained=explained, tolerance=tolerance)
    none = pd.DataFrame(columns=list(ACTION_COLUMNS))
    if ratio == 1.0:
        return none, None, None
    factor = float(np.median(both["close"] / both["close_old"]))
    day = sessions.session_on_or_after(after + dt.timedelta(days=1), calendar)
    if ratio is None or day > last:  # not a clean split, or no new session to date one on
        return (
            none,
            None,
            (
                f"{symbol}'s stored history was re-based by {factor:.6g} and no split explains it "
                f"(known splits after {after}: {explained:g}); its figures may be on two bases: "
                f"add the corporate action, or correct the source"
            ),
        )
    window = "" if day == last else f" (it took effect between {day} and {last}; dated on the first)"
    row = pd.DataFrame(
        [
            {
                "symbol": symbol,
                "date": pd.Timestamp(day),
                "kind": "split",
                "value": ratio,
                "source": f"{INFERRED}:{source}",
            }
        ]
    )
    warning = (
        f"{symbol}: the source re-based its history by {factor:.6g} without a split action: "
        f"a {_ratio_text(ratio)} split on {day} inferred and applied{window}"
    )
    return row, warning, None


def _breaks(frame: pd.DataFrame, actions: pd.DataFrame, threshold: float) -> dict[str, str]:
    """{symbol: its unexplained moves} of the written rows (the sessions each symbol's fetch covers)."""
    if frame.empty:
        return {}
    close = frame.pivot(index="date", columns="symbol", values="close").sort_index()
    found = unexplained_breaks(close, actions, threshold=threshold)
    out = {}
    for symbol, rows in found.groupby("symbol"):
        listed = ", ".join(f"{r.date:%Y-%m-%d} {r[2]:+.1%}" for r in rows.tail(_LISTED_BREAKS).itertuples(index=False))
        more = f" (and {len(rows) - _LISTED_BREAKS} earlier)" if len(rows) > _LISTED_BREAKS else ""
        out[symbol] = (
            f"{symbol}: close moved beyond ±{threshold:.0%} with no corporate action on {listed}{more}: "
            f"a split or re-basing the source did not report, or prices on another basis"
        )
    return out


def _reread(
    source, symbols: list[str], newest: dict[str, dt.date], oldest: dict[str, dt.date], last: dt.date
) -> tuple[FetchResult, FetchResult]:
    """The whole history of `symbols` again (from their oldest stored session), prices and actions."""
    return _fetch(source, {s: oldest.get(s, newest[s]) for s in symbols}, last)


def _swap(frame: pd.DataFrame, symbols: set[str], replacement: pd.DataFrame) -> pd.DataFrame:
    """`frame` with the rows of `symbols` replaced by `replacement`'s rows of them."""
    kept = frame.loc[~frame["symbol"].isin(symbols)]
    new = replacement.loc[replacement["symbol"].isin(symbols)]
    parts = [p for p in (kept, new) if len(p)]
    if not parts:
        return frame.iloc[:0]
    return pd.concat(parts, ignore_index=True).sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)


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
    holders = _holders(db)
    wanted = [s for s in symbols if s not in skipped or s in holders]  # a held symbol is never given up on
    starts, newest = _fetch_starts(db, wanted, first, refresh=refresh, calendar=calendar)
    fetched, actions = _fetch(source, starts, last)
    frame, failures = fetched.frame, dict(fetched.failures)
    action_frame, action_failures = actions.frame, dict(actions.failures)
    stored = (
        db.read(
            "prices",
            {"symbol": sorted(set(frame["symbol"])), "date": (min(starts.values(), default=first), last)},
            columns=["symbol", "date", *_COMPARED],
        )
        if len(frame)
        else frame
    )
    oldest = (
        db.max_date_by("prices", "symbol", sorted(set(frame["symbol"]) & set(newest)), oldest=True)
        if len(frame)
        else {}
    )
    # The store mirrors the source: a symbol whose re-read differs is read again over its whole history.
    whole = {s for s in set(frame["symbol"]) if s not in newest or (refresh and starts[s] <= oldest.get(s, starts[s]))}
    update.reread = [s for s in _changed_symbols(stored, frame, newest, tolerance) if s not in whole]
    if update.reread:
        again, again_actions = _reread(source, update.reread, newest, oldest, last)
        for s in update.reread:
            if s in again.failures:
                failures[s] = f"re-reading {s}'s whole history after the source changed it failed: {again.failures[s]}"
        ok = set(update.reread) - set(again.failures)
        drop = set(update.reread) - ok
        frame = _swap(frame.loc[~frame["symbol"].isin(drop)], ok, again.frame)
        action_frame = _swap(action_frame, ok, again_actions.frame)
        action_failures.update({s: e for s, e in again_actions.failures.items() if s in ok})
        whole |= ok
    # Nothing, holes, or prices that stop short, for a symbol the source did not report: a failure too.
    failures.update(price_gaps(frame, [s for s in wanted if s not in failures], first, last, calendar))
    # An option contract without a market price is priced by the model downstream: not a failure.
    update.option_gaps = sorted(s for s in failures if is_option_symbol(s))
    update.failures = {s: e for s, e in failures.items() if s not in update.option_gaps}
    ok = sorted(set(wanted) - set(update.failures))
    etfs = set(factor_tickers(load_regressions()))
    compared = sorted(whole & set(newest))
    with db.begin() as conn:
        history = db.read("prices", {"symbol": compared}, conn=conn) if compared else frame.iloc[:0]
        known_actions = db.read("corporate_actions", {"symbol": sorted(set(frame["symbol"]))}, conn=conn)
        splits = pd.concat([known_actions, action_frame], ignore_index=True)
        splits = splits.loc[splits["kind"] == "split"]
        returns_from: dict[str, dt.date] = {}
        levels_from: dict[str, dt.date] = {}
        older_rows, inferred = [], []
        for symbol in compared:
            mine, theirs = history[history["symbol"] == symbol], frame[frame["symbol"] == symbol]
            change = compare_history(mine, theirs, tolerance=tolerance)
            older = mine[mine["date"] < theirs["date"].min()]
            if change.rebased and len(older):  # the source's history is shorter than the store's
                older_rows.append(rebase(older, close_factor=change.close_factor, adj_factor=change.adj_factor))
                returns_from[symbol] = levels_from[symbol] = _EARLIEST
            if change.returns_from is not None:
                returns_from[symbol] = min(returns_from.get(symbol, dt.date.max), change.returns_from.date())
            if change.levels_from is not None:
                levels_from[symbol] = min(levels_from.get(symbol, dt.date.max), change.levels_from.date())
            if symbol in returns_from or symbol in levels_from:
                update.restated[symbol] = min(
                    returns_from.get(symbol, dt.date.max), levels_from.get(symbol, dt.date.max)
                ).isoformat()
            if change.rebased:
                update.rebased[symbol] = {"close": change.close_factor, "adj_close": change.adj_factor}
            if change.close_factor != 1.0:
                row, warning, failure = _classify_rebasing(
                    symbol,
                    mine,
                    theirs,
                    splits,
                    newest[symbol],
                    last,
                    tolerance=tolerance,
                    calendar=calendar,
                    source=source.name,
                )
                if warning:
                    inferred.append(row)
                    update.inferred[symbol] = warning
                if failure:
                    update.unexplained[symbol] = failure
        new_actions = _new_actions(db, conn, action_frame, tolerance)
        if inferred:
            new_actions = pd.concat([new_actions, *inferred], ignore_index=True)
        update.actions = _write_actions(db, conn, new_actions, known_actions, newest, returns_from, levels_from)
        update.written = sum(db.upsert("prices", rows, conn=conn) for rows in [*older_rows, frame] if len(rows))
        if update.rebased:
            recorded = pd.Timestamp.now(tz="UTC").tz_localize(None)
            db.upsert(
                "price_rebasings",
                pd.DataFrame(
                    [
                        {
                            "symbol": s,
                            "recorded_at": recorded,
                            "close_factor": f["close"],
                            "adj_factor": f["adj_close"],
                            "before_date": pd.Timestamp(
                                sessions.session_on_or_after(newest[s] + dt.timedelta(days=1), calendar)
                            ),
                            "source": source.name,
                        }
                        for s, f in update.rebased.items()
                    ]
                ),
                conn=conn,
            )
        all_actions = pd.concat([known_actions, new_actions], ignore_index=True)
        update.breaks = _breaks(pd.concat([*older_rows, frame], ignore_index=True), all_actions, break_threshold())
        update.stale = mark_stale(
            db, conn, _stale_marks(db, conn, holders, returns_from=returns_from, levels_from=levels_from, etfs=etfs)
        )
        reported = new_actions.loc[
            (new_actions["kind"] == "split") & ~new_actions["source"].astype(str).str.startswith(INFERRED)
        ]
        _settle(db, conn, update, ok=ok, whole=whole, holders=holders, last=last, new_splits=set(reported["symbol"]))
        settle_failures(
            db,
            conn,
            stage="actions",
            succeeded=[s for s in ok if s not in action_failures],
            failed=failure_frame(action_failures, "actions", last),
        )
    return update


def _write_actions(
    db: Database,
    conn,
    new_actions: pd.DataFrame,
    known: pd.DataFrame,
    newest: dict[str, dt.date],
    returns_from: dict[str, dt.date],
    levels_from: dict[str, dt.date],
) -> int:
    """Upsert the new actions; a reported split replaces the inferred one of the same ratio. An action
    dated on or before a session already stored was learned late: its dates are recomputed (a split
    changes the book's basis, so its holders' figures from the start)."""
    if not len(new_actions):
        return 0
    inferred = known.loc[(known["kind"] == "split") & known["source"].fillna("").str.startswith(INFERRED)]
    for row in new_actions.itertuples():
        if row.kind == "split" and not str(row.source).startswith(INFERRED):
            twin = inferred.loc[
                (inferred["symbol"] == row.symbol)
                & np.isclose(inferred["value"], row.value)
                & (inferred["date"] != row.date)
            ]
            for t in twin.itertuples():
                db.delete(
                    "corporate_actions",
                    {"symbol": t.symbol, "date": (t.date.date(), t.date.date()), "kind": "split"},
                    conn=conn,
                )
                levels_from[row.symbol] = _EARLIEST
        if row.symbol in newest and row.date.date() <= newest[row.symbol]:
            returns_from[row.symbol] = min(returns_from.get(row.symbol, row.date.date()), row.date.date())
            if row.kind == "split":
                levels_from[row.symbol] = _EARLIEST
    return db.upsert("corporate_actions", new_actions, conn=conn)


def _settle(
    db: Database,
    conn,
    update: PriceUpdate,
    *,
    ok: list[str],
    whole: set[str],
    holders: dict[str, set[str]],
    last: dt.date,
    new_splits: set[str],
) -> None:
    """The run's failure rows: prices (a held symbol is never skipped: it fails every run until priced),
    unexplained re-basings and inferred splits (open until the source reports a split) and price breaks (warnings, re-judged
    whenever the symbol's whole history is)."""
    held = {s: e for s, e in update.failures.items() if s in holders}
    unheld = {s: e for s, e in update.failures.items() if s not in holders}
    update.newly_skipped = settle_failures(
        db, conn, stage="prices", succeeded=ok, failed=failure_frame(unheld, "prices", last), limit=max_attempts()
    )
    if held:
        settle_failures(
            db, conn, stage="prices", succeeded=[], failed=failure_frame(held, "prices", last).assign(status="open")
        )
    for stage, found in ((REBASING_STAGE, update.unexplained), (INFERRED_STAGE, update.inferred)):
        settle_failures(
            db, conn, stage=stage, succeeded=sorted(new_splits - set(found)), failed=failure_frame(found, stage, last)
        )
    settle_failures(
        db,
        conn,
        stage=BREAK_STAGE,
        succeeded=sorted(whole - set(update.breaks)),
        failed=failure_frame(update.breaks, BREAK_STAGE, last),
    )


def unexplained_findings(db: Database) -> pd.DataFrame:
    """The open `rebasing` failures and `price_break` warnings: what the prices layer could not explain
    (one row per symbol and stage: O(findings), never the price history)."""
    return db.read(
        "symbol_failures", {"stage": [REBASING_STAGE, BREAK_STAGE]}, columns=["symbol", "stage", "date", "error"]
    )
