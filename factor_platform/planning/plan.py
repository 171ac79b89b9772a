"""What runs next, decided in one place: `plan(state, request) -> Plan`, a pure function.

`PlanState` is everything the decision reads (`planning.state.read_state` reads it once, in time that
follows the request, not the history); `PlanRequest` is what was asked (sessions, portfolios or
symbols). "Missing" means one thing for every caller -- the CLI, the schedule and the sensor:

- a session inside Dagster's partition window that Dagster has no materialization of, or a
  portfolio session without its snapshot row (a book changed since: its figures were deleted);
- a session before the window that no history span covers (`history_spans`), or whose prices none covers;
- a stale session (the source changed data under figures already computed), wherever it lies;
- every wanted session of a symbol whose last price fetch failed (or a held symbol given up on);
- a symbol's profile or fundamentals that were never fetched, or whose fetch failed.

Runs are rectangles (`planning.rectangles`); one that begins before the window is a `HISTORY_JOB` run.
No Dagster and no database here: the tests compare `plan` with a brute-force enumeration.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from factor_platform.domain import sessions
from factor_platform.domain.book import Book
from factor_platform.domain.spans import Span, gaps
from factor_platform.layers.names import (
    HISTORY_JOB,
    PORTFOLIO_ASSETS,
    PORTFOLIO_LAYER_JOB,
    PORTFOLIO_STALE_ASSET,
    REFERENCE_DATA_JOB,
    REFRESH_TAG,
    SYMBOL_ASSETS,
    SYMBOL_DAY_ASSETS,
    SYMBOL_LAYER_JOB,
)
from factor_platform.planning.rectangles import RANGE_END_TAG, RANGE_START_TAG, Rectangle, plan_rectangles

HISTORY_TAG = "factor_platform/history"  # a history run's rectangle, for people (its config is the rectangle)

Missing = dict[str, dict[str, set[dt.date]]]  # asset -> key -> sessions


@dataclass(frozen=True)
class PlannedRun:
    job_name: str
    assets: tuple[str, ...]
    rectangle: Rectangle | None = None  # date x key runs
    keys: tuple[str, ...] = ()  # symbol-only runs (company_profiles, fundamentals)
    extra_tags: tuple[tuple[str, str], ...] = ()  # e.g. the refresh tag of a prices run

    def tags(self) -> dict[str, str]:
        if self.job_name == HISTORY_JOB:  # not a partition range: its rectangle is its run config
            return {HISTORY_TAG: self.describe_rectangle(), **dict(self.extra_tags)}
        if self.rectangle is not None:
            return {**self.rectangle.tags(), **dict(self.extra_tags)}
        return {RANGE_START_TAG: self.keys[0], RANGE_END_TAG: self.keys[-1], **dict(self.extra_tags)}

    @property
    def refresh(self) -> bool:
        return dict(self.extra_tags).get(REFRESH_TAG) == "true"

    def partition_count(self, calendar: str) -> int:
        """Asset partitions the run covers."""
        if self.rectangle is None:
            return len(self.keys) * len(self.assets)
        days = len(sessions.sessions_in_range(self.rectangle.first, self.rectangle.last, calendar))
        return days * len(self.rectangle.keys) * len(self.assets)

    def describe_rectangle(self) -> str:
        r = self.rectangle
        span = f"{r.first}..{r.last}" if r.first != r.last else f"{r.first}"
        keys = r.keys[0] if len(r.keys) == 1 else f"{r.keys[0]}..{r.keys[-1]} ({len(r.keys)})"
        return f"{span} x {keys}"

    def describe(self) -> str:
        if self.rectangle is not None:
            return f"{self.job_name}: {self.describe_rectangle()}"
        keys = self.keys[0] if len(self.keys) == 1 else f"{self.keys[0]}..{self.keys[-1]} ({len(self.keys)})"
        return f"{self.job_name}: {keys}"


@dataclass
class Plan:
    symbol_runs: list[PlannedRun]
    reference_runs: list[PlannedRun]
    portfolio_runs: list[PlannedRun]
    # partitions the runs name that Dagster does not know yet, in order: whoever executes the plan adds them
    new_symbols: list[str] = field(default_factory=list)
    new_portfolios: list[str] = field(default_factory=list)

    @property
    def runs(self) -> list[PlannedRun]:
        return self.symbol_runs + self.reference_runs + self.portfolio_runs


@dataclass(frozen=True)
class PlanRequest:
    """Sessions [start, end] of the portfolios named (all when None) or of the symbols named alone.

    `first_session`: the platform's first session (nothing before it is planned); `partitions_from`:
    the first session of Dagster's partition window (before it: history); `universe`: symbols the
    source names itself (planned with everything when nothing is named); `refresh`: re-read the prices.
    `retry_failed`, `recompute_stale`: whether failed fetches and stale partitions are part of the answer.
    """

    start: dt.date
    end: dt.date
    portfolios: tuple[str, ...] | None = None
    symbols: tuple[str, ...] | None = None
    calendar: str = "XNYS"
    first_session: dt.date | None = None
    partitions_from: dt.date | None = None
    universe: tuple[str, ...] = ()
    refresh: bool = False
    retry_failed: bool = True  # failed fetches are planned again (the nightly leaves them to `materialize`)
    recompute_stale: bool = True  # stale partitions are planned (the nightly leaves them to the sensor)

    @property
    def first(self) -> dt.date:
        return self.first_session or self.start

    @property
    def window_from(self) -> dt.date:
        return max(self.partitions_from or self.first, self.first)


@dataclass
class PlanState:
    """What the plan reads, for the keys and sessions the request wants (`planning.state`)."""

    registered_symbols: list[str]  # Dagster's symbol partitions, in order
    registered_portfolios: list[str]
    books: dict[str, Book]  # the requested portfolios' books (all of them when none is named)
    etfs: list[str]  # the factor ETFs: every symbol's betas read them
    store_newest: dt.date | None  # the newest stored price: missed nights are planned from the session after
    done: dict[str, set[str]]  # asset -> its materialized partition keys among those wanted ("date|key", or "key")
    spans: dict[str, dict[str, list[Span]]]  # asset -> key -> history spans
    stale: Missing  # asset (a SYMBOL_DAY asset, or PORTFOLIO_STALE_ASSET) -> key -> stale sessions
    snapshot_days: dict[str, set[dt.date]]  # portfolio -> wanted window sessions that have a snapshot row
    retry_prices: set[str] = field(default_factory=set)  # open prices failures, and held symbols given up on
    retry_reference: set[str] = field(default_factory=set)  # open profile / fundamentals failures


@dataclass(frozen=True)
class Wanted:
    """The first session wanted of each symbol and portfolio, in planning order."""

    symbols: dict[str, dt.date]
    portfolios: dict[str, dt.date]


def missed_from(store_newest: dt.date | None, calendar: str) -> dt.date:
    """The first session after the store's newest prices (missed nights begin there); date.max when empty."""
    if store_newest is None:
        return dt.date.max
    return sessions.session_on_or_after(store_newest + dt.timedelta(days=1), calendar)


def wanted(
    request: PlanRequest, registered_symbols: Sequence[str], books: dict[str, Book], etfs: Sequence[str], store_newest
) -> Wanted:
    """Portfolios (all, or those named) want their holdings' symbol layer from their inception; symbols named
    alone, or -- when nothing is named -- all registered symbols and the source's universe, want [start, end];
    the factor ETFs always come along. Every session since the store's newest price is wanted too."""
    lo = min(request.start, missed_from(store_newest, request.calendar))
    if request.symbols is not None:
        plain = list(request.symbols)
    elif request.portfolios is None:
        plain = list(dict.fromkeys([*registered_symbols, *request.universe]))
    else:
        plain = []
    symbols = {s: lo for s in [*plain, *etfs]}
    for book in books.values():
        for s in book.held_symbols:
            symbols[s] = min(symbols.get(s, dt.date.max), lo, book.inception)
    portfolios = {pid: max(lo, book.inception) for pid, book in books.items()}
    return Wanted(symbols, portfolios)


def window_days(first: dt.date, request: PlanRequest) -> list[dt.date]:
    """The wanted sessions from `first` to the request's end that are Dagster partitions."""
    return list(_sessions_between(max(first, request.window_from), request.end, request.calendar))


@functools.lru_cache(maxsize=256)
def _sessions_between(lo: dt.date, hi: dt.date, calendar: str) -> tuple[dt.date, ...]:
    # Most keys of a request share their first session: 5,260 symbols cost 0.9 s uncached.
    return tuple(d.date() for d in sessions.sessions_in_range(lo, hi, calendar))


def history_range(first: dt.date, request: PlanRequest) -> tuple[dt.date, dt.date] | None:
    """The wanted sessions from `first` that lie before the window, as (first, last); None when there are none."""
    if request.window_from <= request.first:
        return None
    last = min(sessions.sessions_before(request.window_from, 1, request.calendar), request.end)
    lo = max(first, request.first)
    return (lo, last) if lo <= last else None


def partition_keys(days_by_key: dict[str, list[dt.date]]) -> list[str]:
    """The Dagster partition keys ("date|key") of `days_by_key`."""
    return [f"{d.isoformat()}|{k}" for k, days in days_by_key.items() for d in days]


def _union(*parts: Missing) -> Missing:
    out: Missing = {}
    for part in parts:
        for asset, by_key in part.items():
            target = out.setdefault(asset, {})
            for key, days in by_key.items():
                if days:
                    target[key] = target.get(key, set()) | set(days)
    return out


def _not_done(assets: Iterable[str], days_by_key: dict[str, list[dt.date]], done: dict[str, set[str]]) -> Missing:
    return {
        asset: {
            key: {d for d in days if f"{d.isoformat()}|{key}" not in done.get(asset, set())}
            for key, days in days_by_key.items()
        }
        for asset in assets
    }


def _uncovered(
    assets: Iterable[str], ranges: dict[str, tuple[dt.date, dt.date]], state: PlanState, calendar: str
) -> Missing:
    out: Missing = {}
    for asset in assets:
        spans = state.spans.get(asset, {})
        by_key: dict[str, set[dt.date]] = {}
        for key, (first, last) in ranges.items():
            for lo, hi in gaps(first, last, spans.get(key, []), calendar):
                by_key.setdefault(key, set()).update(d.date() for d in sessions.sessions_in_range(lo, hi, calendar))
        out[asset] = by_key
    return out


def layer_runs(
    missing: Missing,
    *,
    job_name: str,
    assets: list[str],
    key_order: list[str],
    calendar: str,
    window_from: dt.date,
    first_asset_alone: bool = True,
    extra_tags: dict[str, dict[str, str]] | None = None,
) -> list[PlannedRun]:
    """Runs covering exactly the `missing` sessions of each asset, as rectangles.

    Assets whose missing sessions coincide share runs; otherwise each asset gets its own, in the layer's
    order (prices before what reads them). `first_asset_alone`: the later assets read the first one's rows
    of *other* keys too (a symbol's betas read the factor ETFs' prices). Inside one run the first asset is
    written before them, but not across runs: when a shared group needs several rectangles, the first
    asset's rectangles all run first, then the others' -- otherwise a beta computed in an early rectangle
    would miss an ETF price that a later rectangle brings, and stay wrong. A rectangle that begins before
    `window_from` is a `HISTORY_JOB` run. `extra_tags`: tags of the runs of an asset (the refresh of prices).
    """
    shapes = {asset: {k: d for k, d in missing.get(asset, {}).items() if d} for asset in assets}
    every = {d for by_key in shapes.values() for days in by_key.values() for d in days}
    # every session between, missing or not: a done session between two missing ones splits their rectangles
    all_days = [d.date() for d in sessions.sessions_in_range(min(every), max(every), calendar)] if every else []
    groups: list[tuple[tuple[str, ...], dict]] = []
    for asset in assets:
        for i, (names, shape) in enumerate(groups):
            if shape == shapes[asset]:
                groups[i] = (names + (asset,), shape)
                break
        else:
            groups.append(((asset,), shapes[asset]))
    runs = []
    for names, shape in groups:
        rects = plan_rectangles(shape, sessions=all_days, key_order=key_order)
        if first_asset_alone and names[0] == assets[0] and len(names) > 1 and len(rects) > 1:
            runs += [PlannedRun(job_name, names[:1], rect) for rect in rects]
            names = names[1:]
        runs += [PlannedRun(job_name, names, rect) for rect in rects]
    tags_of = extra_tags or {}
    return [
        replace(
            run,
            job_name=HISTORY_JOB if run.rectangle.first < window_from else run.job_name,
            extra_tags=tuple(sorted({k: v for a in run.assets for k, v in tags_of.get(a, {}).items()}.items())),
        )
        for run in runs
    ]


def reference_runs(
    symbols: Sequence[str], done: dict[str, set[str]], retry: set[str], key_order: list[str]
) -> list[PlannedRun]:
    """company_profiles and fundamentals of `symbols` not fetched yet (or to retry), by contiguous blocks."""
    position = {s: i for i, s in enumerate(key_order)}
    runs = []
    for asset in SYMBOL_ASSETS:
        todo = sorted(
            (s for s in set(symbols) if s not in done.get(asset, set()) or s in retry), key=position.__getitem__
        )
        block: list[str] = []
        for s in todo:
            if block and position[s] != position[block[-1]] + 1:
                runs.append(PlannedRun(REFERENCE_DATA_JOB, (asset,), keys=tuple(block)))
                block = []
            block.append(s)
        if block:
            runs.append(PlannedRun(REFERENCE_DATA_JOB, (asset,), keys=tuple(block)))
    merged: dict[tuple, PlannedRun] = {}  # both assets of the same block: one run
    for run in runs:
        key = (run.job_name, run.rectangle, run.keys)
        merged[key] = replace(merged[key], assets=merged[key].assets + run.assets) if key in merged else run
    return list(merged.values())


def plan(state: PlanState, request: PlanRequest) -> Plan:
    """Every missing partition of every layer that `request` wants, as runs (module docstring)."""
    calendar, window_from = request.calendar, request.window_from
    want = wanted(request, state.registered_symbols, state.books, state.etfs, state.store_newest)
    registered_symbols, registered_portfolios = set(state.registered_symbols), set(state.registered_portfolios)
    new_symbols = [s for s in want.symbols if s not in registered_symbols]
    new_portfolios = [p for p in want.portfolios if p not in registered_portfolios]
    symbol_order = [*state.registered_symbols, *new_symbols]
    portfolio_order = [*state.registered_portfolios, *new_portfolios]

    # the symbol layer
    symbol_days = {s: d for s, d in ((s, window_days(lo, request)) for s, lo in want.symbols.items()) if d}
    symbol_history = {s: r for s, r in ((s, history_range(lo, request)) for s, lo in want.symbols.items()) if r}
    retry = {s: set(d) for s, d in symbol_days.items() if s in state.retry_prices and request.retry_failed}
    # stale marks of the wanted keys: a portfolio's for the portfolio tables, a symbol's for its layer
    stale = {
        asset: {
            k: d
            for k, d in by_key.items()
            if k in (want.portfolios if asset == PORTFOLIO_STALE_ASSET else want.symbols)
        }
        for asset, by_key in (state.stale if request.recompute_stale else {}).items()
    }
    # A history session without its prices is not done for what reads them either: a failed fetch records
    # no prices span, and a run of betas and metrics alone cannot know (in the window, `retry` does this).
    uncovered = _uncovered(SYMBOL_DAY_ASSETS, symbol_history, state, calendar)
    missing = _union(
        _not_done(SYMBOL_DAY_ASSETS, symbol_days, state.done),
        {asset: retry for asset in SYMBOL_DAY_ASSETS},
        uncovered,
        {asset: uncovered[SYMBOL_DAY_ASSETS[0]] for asset in SYMBOL_DAY_ASSETS},
        {asset: by_key for asset, by_key in stale.items() if asset in SYMBOL_DAY_ASSETS},
        {SYMBOL_DAY_ASSETS[0]: {s: set(d) for s, d in symbol_days.items()}} if request.refresh else {},
    )
    symbol_runs = layer_runs(
        missing,
        job_name=SYMBOL_LAYER_JOB,
        assets=SYMBOL_DAY_ASSETS,
        key_order=symbol_order,
        calendar=calendar,
        window_from=window_from,
        extra_tags={SYMBOL_DAY_ASSETS[0]: {REFRESH_TAG: "true"}} if request.refresh else None,
    )
    wanted_symbols = [s for s in want.symbols if s in symbol_days or s in symbol_history]
    retry_reference = state.retry_reference & set(wanted_symbols) if request.retry_failed else set()
    references = reference_runs(wanted_symbols, state.done, retry_reference, symbol_order)

    # the portfolio layer: its tables are computed together, and a book changed since deleted their rows
    portfolio_days = {p: d for p, d in ((p, window_days(lo, request)) for p, lo in want.portfolios.items()) if d}
    portfolio_history = {p: r for p, r in ((p, history_range(lo, request)) for p, lo in want.portfolios.items()) if r}
    unwritten = {p: set(d) - state.snapshot_days.get(p, set()) for p, d in portfolio_days.items()}
    missing = _union(
        _not_done(PORTFOLIO_ASSETS, portfolio_days, state.done),
        {asset: unwritten for asset in PORTFOLIO_ASSETS},
        {asset: stale.get(PORTFOLIO_STALE_ASSET, {}) for asset in PORTFOLIO_ASSETS},
        _uncovered(PORTFOLIO_ASSETS, portfolio_history, state, calendar),
    )
    portfolio_runs = layer_runs(
        missing,
        job_name=PORTFOLIO_LAYER_JOB,
        assets=PORTFOLIO_ASSETS,
        key_order=portfolio_order,
        calendar=calendar,
        window_from=window_from,
        first_asset_alone=False,
    )
    return Plan(symbol_runs, references, portfolio_runs, new_symbols, new_portfolios)
