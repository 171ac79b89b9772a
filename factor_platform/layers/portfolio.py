"""The portfolio layer for one portfolio and a span of sessions: read, compute (calc), return frames.

P&L is cumulative from inception. A span whose previous session has a stored snapshot that is not
stale rolls forward from it (a nightly: one session, whatever the portfolio's age); any other span
rolls from inception. Both give the same valuation and P&L to the bit, and the same risk figures up to
the last bits of a dividend payer's total-return path (a running product from the panel's first row):
the roll forward reads RISK_LOOKBACK sessions of prices before the span, and rolls from inception
instead when a held symbol lacks a price on one of them but has older ones, so that every position's
last price and every risk window (correlations count the sessions both symbols have) sees the same rows.
Nothing on a date uses data after it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from factor_platform.calc import risk
from factor_platform.calc.corporate_actions import basis_mismatches, to_stored_basis
from factor_platform.calc.portfolio import PreparedPositions, prepare_positions, snapshots, value_positions
from factor_platform.domain import sessions
from factor_platform.domain.book import Book
from factor_platform.domain.stress_scenarios import StressScenario, load_stress_scenarios
from factor_platform.layers.books import read_books
from factor_platform.layers.failures import failure_frame, settle_failures
from factor_platform.layers.invalidation import PORTFOLIO_STALE_ASSET, clear_stale
from factor_platform.layers.names import PORTFOLIO_ASSETS
from factor_platform.layers.panels import PricePanel, price_panel
from factor_platform.storage import Database


def basis_stage(portfolio_id: str) -> str:
    """The symbol_failures stage of a portfolio's positions entered on another basis than the prices (a warning)."""
    return f"basis:{portfolio_id}"


RISK_LOOKBACK = 100  # 90 returns for correlations, 63 for volatility, with room for missing days


def _inception(book: Book, calendar: str) -> dt.date:
    return sessions.session_on_or_after(book.inception, calendar)


@dataclass(frozen=True)
class Roll:
    """Where a portfolio's P&L roll for a span starts: the span's first session, after a stored snapshot
    whose cumulative P&L it carries, or inception (carrying nothing)."""

    start: dt.date
    carried_pnl: float = 0.0


def roll_starts(db: Database, books: Mapping[str, Book], first: dt.date, *, calendar: str) -> dict[str, Roll]:
    """Per portfolio: the roll from the stored snapshot of the session before `first`, when it exists and
    nothing of the portfolio up to it is stale; else from inception."""
    inception = {pid: _inception(book, calendar) for pid, book in books.items()}
    rolls = {pid: Roll(day) for pid, day in inception.items()}
    previous = sessions.sessions_before(first, 1, calendar)
    candidates = [pid for pid, day in inception.items() if previous >= day]
    if not candidates:
        return rolls
    stored = db.read(
        "portfolio_snapshots",
        {"portfolio_id": candidates, "date": (previous, previous)},
        columns=["portfolio_id", "cumulative_pnl"],
    )
    stale = db.read(
        "stale_partitions",
        {"asset": PORTFOLIO_STALE_ASSET, "key": candidates, "first_date": (dt.date(1900, 1, 1), previous)},
        columns=["key"],
    )
    stale_keys = set(stale["key"])
    for pid, carried in zip(stored["portfolio_id"], stored["cumulative_pnl"]):
        if pid not in stale_keys and pd.notna(carried):
            rolls[pid] = Roll(first, float(carried))
    return rolls


@dataclass
class PortfolioFrames:
    frames: dict[str, pd.DataFrame]
    incomplete_dates: list[str] = field(default_factory=list)
    missing_symbols: list[str] = field(default_factory=list)
    held_symbols: list[str] = field(default_factory=list)
    basis_mismatches: dict[str, str] = field(default_factory=dict)  # symbol -> why its positions' entry is off
    rolled_from: dt.date | None = None  # the first session the P&L was rolled over (inception, or after a snapshot)


def _rows_by(frame: pd.DataFrame, column: str) -> dict[object, np.ndarray]:
    """The row positions of each value of `column` (ascending)."""
    return frame.groupby(column, sort=False).indices if len(frame) else {}


def _rows_of(frame: pd.DataFrame, rows_by: dict[object, np.ndarray], values) -> pd.DataFrame:
    """The rows of `frame` whose value is one of `values`, in the frame's order: `frame[column.isin(values)]`
    without a pass over the whole frame per call."""
    found = [rows_by[v] for v in values if v in rows_by]
    return frame.iloc[np.sort(np.concatenate(found)) if found else np.array([], dtype=np.intp)]


@dataclass
class _Reads:
    """What the portfolios of one span read once for all of them: the prices of every rolled-forward
    portfolio's symbols from RISK_LOOKBACK sessions before the span, the symbols' betas and sectors, and
    the sessions the positions were entered on."""

    rolled_panel: PricePanel | None
    betas: pd.DataFrame
    sectors: dict[str, str | None]
    entries: pd.DataFrame  # the prices of the positions' entry sessions (symbol, date, low, high, close)
    betas_by_symbol: dict[object, np.ndarray]  # symbol -> its rows of `betas`
    entries_by_symbol: dict[object, np.ndarray]  # symbol -> its rows of `entries`

    def betas_of(self, book: Book) -> pd.DataFrame:
        return _rows_of(self.betas, self.betas_by_symbol, book.held_symbols)

    def entries_of(self, book: Book) -> pd.DataFrame:
        """The prices of the book's symbols on its entry sessions (sorted by symbol and date): every row
        its positions' entries can match."""
        positions = book.positions
        rows = _rows_of(self.entries, self.entries_by_symbol, sorted(set(positions["symbol"])))
        return rows[rows["date"].isin(positions["entry_date"])].reset_index(drop=True)


ENTRY_COLUMNS = ["symbol", "date", "low", "high", "close"]
ENTRY_READ_ROWS = 50_000  # at most symbols x sessions of one read of entry prices


def _read_entries(db: Database, books: Mapping[str, Book]) -> pd.DataFrame:
    """The prices of every position's entry session, sorted by symbol and date, in few reads: the sessions
    in ascending runs whose symbols x sessions stay under ENTRY_READ_ROWS (one read for books entered on
    the same sessions, a batch onboarded together; a few for books entered over years)."""
    wanted: dict[dt.date, set[str]] = {}
    for book in books.values():
        for symbol, day in zip(book.positions["symbol"], book.positions["entry_date"]):
            wanted.setdefault(day.date(), set()).add(symbol)
    runs: list[tuple[list[dt.date], set[str]]] = []
    for day in sorted(wanted):
        if runs and len(runs[-1][1] | wanted[day]) * (len(runs[-1][0]) + 1) <= ENTRY_READ_ROWS:
            runs[-1][0].append(day)
            runs[-1][1].update(wanted[day])
        else:
            runs.append(([day], set(wanted[day])))
    frames = [
        db.read("prices", {"symbol": sorted(symbols), "date": days}, columns=ENTRY_COLUMNS) for days, symbols in runs
    ]
    if len(frames) == 1:
        return frames[0]
    if not frames:
        return db.read("prices", {"symbol": []}, columns=ENTRY_COLUMNS)
    return pd.concat(frames, ignore_index=True).sort_values(["symbol", "date"], kind="mergesort", ignore_index=True)


def _panel(db: Database, symbols: list[str], first: dt.date, last: dt.date, *, calendar: str) -> PricePanel:
    return price_panel(
        db, symbols, first_date=first, last_date=last, lookback_sessions=RISK_LOOKBACK, calendar=calendar
    )


def _read_once(
    db: Database, books: Mapping[str, Book], rolls: dict[str, Roll], days: list[dt.date], *, calendar: str
) -> _Reads:
    """The shared reads; a rolled portfolio holding a symbol whose lookback has a hole with older prices
    behind it rolls from inception instead (`rolls` is updated): the hole would shorten its risk windows."""
    first, last = days[0], days[-1]
    held = sorted({s for book in books.values() for s in book.held_symbols})
    rolled = [pid for pid, roll in rolls.items() if roll.start > _inception(books[pid], calendar)]
    panel = None
    if rolled:
        panel = _panel(
            db, sorted({s for pid in rolled for s in books[pid].held_symbols}), first, last, calendar=calendar
        )
        lookback = panel.close.loc[: pd.Timestamp(first) - pd.Timedelta(days=1)]
        holes = [s for s in lookback.columns if lookback[s].isna().any()]
        oldest = db.max_date_by("prices", "symbol", holes, oldest=True) if holes else {}
        unsafe = {s for s, day in oldest.items() if day < lookback.index[0].date()}
        for pid in rolled:
            if unsafe & set(books[pid].held_symbols):
                rolls[pid] = Roll(_inception(books[pid], calendar))
    betas = db.read(
        "symbol_factor_exposures", {"symbol": held, "date": (first, last)}, columns=["symbol", "date", "factor", "beta"]
    )
    profiles = db.read("company_profiles", {"symbol": held}, columns=["symbol", "sector"])
    entries = _read_entries(db, books)
    return _Reads(
        panel,
        betas,
        dict(zip(profiles["symbol"], profiles["sector"])),
        entries,
        _rows_by(betas, "symbol"),
        _rows_by(entries, "symbol"),
    )


def _portfolio_panel(
    db: Database, book: Book, days: list[dt.date], roll: Roll, reads: _Reads, *, calendar: str
) -> PricePanel:
    """The prices a portfolio's roll reads (its columns of the shared panel when it rolls forward)."""
    held = book.held_symbols
    if roll.start > _inception(book, calendar):  # from the snapshot before the span: its symbols are in the panel
        return reads.rolled_panel.of(held)
    return _panel(db, held, min(days[0], roll.start), days[-1], calendar=calendar)


def compute_portfolio(
    book: Book,
    days: list[dt.date],
    roll: Roll,
    panel: PricePanel,
    entries: pd.DataFrame,
    betas: pd.DataFrame,
    sectors: dict[str, str | None],
    scenarios: list[StressScenario],
) -> PortfolioFrames:
    """Every portfolio-layer table of `book` on the sessions `days` (sorted), its P&L rolled from `roll`
    (pure: what it reads is given; `entries` are the prices of its entry sessions, `scenarios` the stress
    scenarios)."""
    portfolio_id = book.portfolio_id
    held = book.held_symbols
    index = panel.prices.index
    # Entry/exit prices and quantities as traded -> the stored (latest-split) basis of the prices;
    # positions are valued on close (the traded price on that basis) and dividends paid as cash.
    # Normalized once, with their attributes, for every step below.
    positions = prepare_positions(to_stored_basis(book.positions, panel.kind("split")))
    mismatched = basis_mismatches(positions.frame, entries)
    values = value_positions(positions, panel.close, index, returns_from=panel.prices)
    snaps, _ = snapshots(
        positions,
        values,
        index,
        starting_equity=book.starting_equity,
        inception_date=pd.Timestamp(roll.start),
        carried_pnl=roll.carried_pnl,
        dividends=panel.kind("dividend"),
    )
    target = pd.DatetimeIndex([pd.Timestamp(d) for d in days])
    snaps = snaps[snaps["date"].isin(target)]
    equity = pd.Series(snaps["equity"].to_numpy(), index=pd.DatetimeIndex(snaps["date"], name="date"), name="equity")
    in_span = values[values["date"].isin(target)]
    factor_rows = risk.factor_exposures(in_span, positions, betas, equity)
    vol = risk.holdings_volatility(values, positions, panel.prices, equity)
    conc = risk.concentration(in_span, dates=target)
    corr = risk.correlations(panel.prices, _held_public_by_date(in_span, positions), target)
    stress_rows = risk.stress(factor_rows, equity, scenarios)
    frames = {
        "position_values": in_span.drop(columns=["has_price", "underlying_price"]),
        "portfolio_snapshots": snaps.drop(columns=["missing_symbols"]),
        "portfolio_factor_exposures": factor_rows,
        "portfolio_sector_weights": risk.sector_weights(in_span, positions, sectors, equity),
        "portfolio_risk": _risk_rows(vol, conc),
        "portfolio_correlations": corr,
        "stress_results": stress_rows,
    }
    frames = {t: f.assign(portfolio_id=portfolio_id) for t, f in frames.items()}
    incomplete = snaps.loc[~snaps["is_complete"].astype(bool)]
    missing = sorted({s for row in incomplete["missing_symbols"] for s in (row or [])})
    basis = {
        r.symbol: (
            f"{portfolio_id}: position {r.position_id} entered at {r.entry_price:.6g} on {r.entry_date:%Y-%m-%d}, "
            f"{r.factor:.4g}× that session's close (range {r.low:.6g}..{r.high:.6g}): the book and the "
            f"prices are on different bases (a split the source re-based without an action?)"
        )
        for r in (mismatched.itertuples(index=False) if len(mismatched) else ())
    }
    return PortfolioFrames(
        frames, [f"{d:%Y-%m-%d}" for d in incomplete["date"]], missing, held, basis, rolled_from=roll.start
    )


def _risk_rows(volatility: pd.DataFrame, concentration: pd.DataFrame) -> pd.DataFrame:
    """The outer merge of the two on the date (the rows of both, sorted by date); on the same dates (as
    they nearly always are) the columns side by side, without a merge."""
    dates = volatility["date"]
    if dates.equals(concentration["date"]) and dates.is_monotonic_increasing and dates.is_unique:
        return volatility.assign(**{c: concentration[c].to_numpy() for c in concentration.columns if c != "date"})
    return volatility.merge(concentration, on="date", how="outer")


def _held_public_by_date(values: pd.DataFrame, positions: PreparedPositions) -> dict[pd.Timestamp, list[str]]:
    attributes = positions.attributes
    at = attributes.index.get_indexer(values["position_id"])
    public = (attributes["investment_class"].to_numpy() == "PUBLIC")[at]
    symbols = positions.frame["symbol"].to_numpy(object)[at[public]]
    held: dict[np.datetime64, set[str]] = {}
    for day, symbol in zip(values["date"].to_numpy()[public], symbols):
        held.setdefault(day, set()).add(symbol)
    return {pd.Timestamp(day): sorted(found) for day, found in sorted(held.items())}


@dataclass
class PortfolioUpdate:
    written: dict[str, int]  # table -> rows written
    frames: dict[str, pd.DataFrame]  # table -> the rows written, every portfolio
    incomplete: dict[str, list[str]] = field(default_factory=dict)  # portfolio -> sessions with an unpriced holding
    missing: dict[str, list[str]] = field(default_factory=dict)  # portfolio -> the symbols missing on them
    rolled_from: dict[str, dt.date] = field(default_factory=dict)  # portfolio -> the first session its P&L rolled over


def update_portfolios(
    db: Database,
    portfolio_ids: list[str],
    days: list[dt.date],
    tables: list[str],
    *,
    calendar: str = "XNYS",
) -> PortfolioUpdate:
    """`compute_portfolio` of each portfolio, and its `tables` (a subset of PORTFOLIO_ASSETS) replaced
    over the rectangle in one transaction; the stale marks cleared when every table was written.

    One portfolio's failure blocks no other: the others are written, then PortfolioErrors names each
    that failed and why (its stored rows are left as they were)."""
    parts: dict[str, list[pd.DataFrame]] = {t: [] for t in tables}
    update = PortfolioUpdate({}, {})
    judged: dict[str, tuple[list[str], dict[str, str]]] = {}  # portfolio -> (held symbols, basis mismatches)
    books = read_books(db, portfolio_ids)
    unknown = [pid for pid in portfolio_ids if pid not in books]
    if unknown:
        raise ValueError(f"portfolios {unknown} are not in the portfolios table")
    rolls = roll_starts(db, books, days[0], calendar=calendar)
    reads = _read_once(db, books, rolls, days, calendar=calendar)
    scenarios = load_stress_scenarios()  # parsed once for every portfolio
    errors: dict[str, Exception] = {}
    for pid in portfolio_ids:
        book = books[pid]
        sectors = {s: reads.sectors[s] for s in book.held_symbols if s in reads.sectors}
        try:
            panel = _portfolio_panel(db, book, days, rolls[pid], reads, calendar=calendar)
            result = compute_portfolio(
                book, days, rolls[pid], panel, reads.entries_of(book), reads.betas_of(book), sectors, scenarios
            )
        except Exception as error:  # noqa: BLE001 -- raised below, with every other portfolio's, once the rest is written
            errors[pid] = error
            continue
        for table in tables:
            parts[table].append(result.frames[table])
        judged[pid] = (result.held_symbols, result.basis_mismatches)
        update.rolled_from[pid] = result.rolled_from
        if result.incomplete_dates:
            update.incomplete[pid] = result.incomplete_dates
            update.missing[pid] = result.missing_symbols
    update.frames = {t: pd.concat(parts[t], ignore_index=True) if parts[t] else pd.DataFrame() for t in tables}
    computed = [pid for pid in portfolio_ids if pid not in errors]
    scope = {"portfolio_id": computed, "date": (days[0], days[-1])}
    if computed:
        with db.begin() as conn:
            update.written = {
                table: db.replace(table, frame, scope, conn=conn) for table, frame in update.frames.items()
            }
            if set(tables) == set(PORTFOLIO_ASSETS):
                clear_stale(db, conn, PORTFOLIO_STALE_ASSET, computed, days[0], days[-1], calendar=calendar)
                _settle_basis(db, conn, judged, days[-1])
    if errors:
        raise PortfolioErrors(errors, days) from next(iter(errors.values()))
    return update


def _settle_basis(db: Database, conn, judged: dict[str, tuple[list[str], dict[str, str]]], day: dt.date) -> None:
    """The basis warnings of every portfolio computed, per portfolio and symbol: a mismatch is recorded once
    (while it stays open), a symbol that no longer mismatches closes its warning. One read of the
    warnings stored, and writes only for what changes."""
    stages = {pid: basis_stage(pid) for pid in judged}
    stored = db.read("symbol_failures", {"stage": list(stages.values())}, columns=["symbol", "stage"], conn=conn)
    known = set(zip(stored["symbol"], stored["stage"]))
    closed = [
        (s, stages[pid])
        for pid, (held, found) in judged.items()
        for s in held
        if s not in found and (s, stages[pid]) in known
    ]
    new = [
        failure_frame({s: e for s, e in found.items() if (s, stages[pid]) not in known}, stages[pid], day)
        for pid, (_, found) in judged.items()
    ]
    new = [frame for frame in new if len(frame)]
    settle_failures(
        db,
        conn,
        stage=None,
        succeeded=pd.DataFrame(closed, columns=["symbol", "stage"]),
        failed=pd.concat(new, ignore_index=True) if new else failure_frame({}, "", day),
    )


class PortfolioErrors(RuntimeError):
    """Portfolios of a run that could not be computed (the others were written)."""

    def __init__(self, errors: dict[str, Exception], days: list[dt.date]):
        self.errors = errors
        span = f"{days[0]}..{days[-1]}" if days[0] != days[-1] else f"{days[0]}"
        listed = "; ".join(f"{pid}: {type(e).__name__}: {e}" for pid, e in errors.items())
        super().__init__(f"{len(errors)} portfolio(s) not computed on {span} (the others were written): {listed}")
