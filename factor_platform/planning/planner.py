"""What to run: missing partitions of each layer, read from Dagster's instance, as rectangles.

Shared by `factor-platform materialize`, the onboarding sensor and the nightly schedule, so all
three agree on what "missing" means: a partition Dagster has no materialization for, or a symbol
whose last fetch failed (its failure row is open and it is not yet skipped).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace

import dagster as dg

from factor_platform.domain import sessions
from factor_platform.domain.factor_models import factor_tickers, load_regressions
from factor_platform.layers.books import read_books
from factor_platform.layers.invalidation import PORTFOLIO_STALE_ASSET, SYMBOL_STALE_ASSETS, stale_days
from factor_platform.layers.names import (
    PORTFOLIO_ASSETS,
    PORTFOLIO_LAYER_JOB,
    REFERENCE_DATA_JOB,
    SYMBOL_ASSETS,
    SYMBOL_DAY_ASSETS,
    SYMBOL_LAYER_JOB,
)
from factor_platform.layers.prices import REFRESH_TAG
from factor_platform.layers.symbols import skipped_symbols
from factor_platform.planning.rectangles import Rectangle, plan_rectangles
from factor_platform.storage import Database

RETRIED_STAGES = ("prices", "profile", "fundamentals")


@dataclass(frozen=True)
class PlannedRun:
    job_name: str
    assets: tuple[str, ...]
    rectangle: Rectangle | None = None  # date x key runs
    keys: tuple[str, ...] = ()  # symbol-only runs (company_profiles, fundamentals)
    extra_tags: tuple[tuple[str, str], ...] = ()  # e.g. the refresh tag of a prices run

    def tags(self) -> dict[str, str]:
        if self.rectangle is not None:
            return {**self.rectangle.tags(), **dict(self.extra_tags)}
        return {
            "dagster/asset_partition_range_start": self.keys[0],
            "dagster/asset_partition_range_end": self.keys[-1],
            **dict(self.extra_tags),
        }

    def describe(self) -> str:
        if self.rectangle is not None:
            r = self.rectangle
            span = f"{r.first}..{r.last}" if r.first != r.last else f"{r.first}"
            keys = r.keys[0] if len(r.keys) == 1 else f"{r.keys[0]}..{r.keys[-1]} ({len(r.keys)})"
            return f"{self.job_name}: {span} x {keys}"
        keys = self.keys[0] if len(self.keys) == 1 else f"{self.keys[0]}..{self.keys[-1]} ({len(self.keys)})"
        return f"{self.job_name}: {keys}"


def register(instance: dg.DagsterInstance, dimension: str, keys: list[str]) -> list[str]:
    """Add partitions not yet known, in the given order (keeps a batch contiguous); return the new ones."""
    known = set(instance.get_dynamic_partitions(dimension))
    new = list(dict.fromkeys(k for k in keys if k not in known))
    if new:
        instance.add_dynamic_partitions(dimension, new)
    return new


def all_etfs() -> list[str]:
    return factor_tickers(load_regressions())


# Partition keys per query: Postgres and SQLite take an IN list of this size without trouble.
_KEYS_PER_QUERY = 10_000
# Above this many wanted keys, one pass over the asset's whole history is cheaper than asking
# about each key (measured: 126k keys in 10k lists ~3 s per asset, the history ~1 s).
_SCOPED_MAX_KEYS = 20_000


def materialized(instance: dg.DagsterInstance, asset: str, keys: Sequence[str]) -> set[str]:
    """Which of `keys` (partition keys of `asset`) have a materialization.

    A few keys -- a nightly session, an onboarding -- are looked up in the event log by key (a
    GROUP BY over their rows only): the asset's whole history costs ~1 s per asset after a year x
    500 symbols. Many keys -- a backfill -- are read from that history at once.
    """
    if len(keys) > _SCOPED_MAX_KEYS:
        return set(instance.get_materialized_partitions(dg.AssetKey(asset))) & set(keys)
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


def missing_by_key(
    instance: dg.DagsterInstance, assets: list[str], days_by_key: dict[str, list[dt.date]]
) -> dict[str, dict[str, set[dt.date]]]:
    """asset -> key -> sessions of `days_by_key[key]` that asset has not materialized."""
    wanted = {(d, k): f"{d.isoformat()}|{k}" for k, days in days_by_key.items() for d in days}
    keys = list(wanted.values())
    out = {}
    for asset in assets:
        done = materialized(instance, asset, keys)
        missing: dict[str, set[dt.date]] = {k: set() for k in days_by_key}
        for (day, key), partition in wanted.items():
            if partition not in done:
                missing[key].add(day)
        out[asset] = missing
    return out


def plan_layer(
    instance: dg.DagsterInstance,
    *,
    job_name: str,
    assets: list[str],
    dimension: str,
    days_by_key: dict[str, list[dt.date]],
    retry: set[str] = frozenset(),
    extra: dict[str, dict[str, set[dt.date]]] | None = None,
    first_asset_alone: bool = True,
    extra_tags: dict[str, dict[str, str]] | None = None,
) -> list[PlannedRun]:
    """Runs covering the missing partitions of `assets`, every day of the keys in `retry`, and per
    asset the days in `extra` (rows missing from our tables, or stale, whatever Dagster records --
    also outside `days_by_key`). `extra_tags`: tags of the runs of an asset (the refresh of prices).

    Assets whose missing partitions coincide share runs; otherwise each asset gets its own, in
    the layer's order (prices before what reads them).

    `first_asset_alone`: the later assets read the first one's rows of *other* keys too (a
    symbol's betas read the factor ETFs' prices). Inside one run the first asset is written
    before them, but not across runs: when a shared group needs several rectangles, the first
    asset's rectangles all run first, then the others' -- otherwise a beta computed in an early
    rectangle would miss an ETF price that a later rectangle brings, and stay wrong.
    """
    missing = missing_by_key(instance, assets, days_by_key)
    for asset_missing in missing.values():
        for key in retry & set(asset_missing):
            asset_missing[key] = set(days_by_key[key])
    for asset, by_key in (extra or {}).items():
        for key, days in by_key.items():
            missing[asset][key] = missing[asset].get(key, set()) | days
    order = instance.get_dynamic_partitions(dimension)
    all_days = sorted(
        {d for days in days_by_key.values() for d in days}
        | {d for by_key in (extra or {}).values() for days in by_key.values() for d in days}
    )
    groups: list[tuple[tuple[str, ...], dict]] = []
    for asset in assets:
        for i, (names, shape) in enumerate(groups):
            if shape == missing[asset]:
                groups[i] = (names + (asset,), shape)
                break
        else:
            groups.append(((asset,), missing[asset]))
    runs = []
    for names, shape in groups:
        rects = plan_rectangles(shape, sessions=all_days, key_order=order)
        if first_asset_alone and names[0] == assets[0] and len(names) > 1 and len(rects) > 1:
            runs += [PlannedRun(job_name=job_name, assets=names[:1], rectangle=rect) for rect in rects]
            names = names[1:]
        runs += [PlannedRun(job_name=job_name, assets=names, rectangle=rect) for rect in rects]
    tags_of = extra_tags or {}
    return [
        replace(
            run, extra_tags=tuple(sorted({k: v for a in run.assets for k, v in tags_of.get(a, {}).items()}.items()))
        )
        for run in runs
    ]


def plan_reference(instance: dg.DagsterInstance, symbols: list[str], retry: set[str] = frozenset()) -> list[PlannedRun]:
    """company_profiles and fundamentals of symbols that have none yet, by contiguous blocks."""
    order = instance.get_dynamic_partitions("symbol")
    position = {s: i for i, s in enumerate(order)}
    wanted = set(symbols)
    runs = []
    for asset in SYMBOL_ASSETS:
        done = materialized(instance, asset, sorted(wanted))
        todo = sorted((s for s in wanted if s not in done or s in retry), key=position.__getitem__)
        block: list[str] = []
        for s in todo:
            if block and position[s] != position[block[-1]] + 1:
                runs.append(PlannedRun(REFERENCE_DATA_JOB, (asset,), keys=tuple(block)))
                block = []
            block.append(s)
        if block:
            runs.append(PlannedRun(REFERENCE_DATA_JOB, (asset,), keys=tuple(block)))
    return _merge_same_keys(runs)


def _merge_same_keys(runs: list[PlannedRun]) -> list[PlannedRun]:
    merged: dict[tuple, PlannedRun] = {}
    for run in runs:
        key = (run.job_name, run.rectangle, run.keys)
        if key in merged:
            merged[key] = PlannedRun(run.job_name, merged[key].assets + run.assets, run.rectangle, run.keys)
        else:
            merged[key] = run
    return list(merged.values())


def retry_symbols(db: Database, stages: tuple[str, ...] = RETRIED_STAGES) -> set[str]:
    """Symbols with an open (not skipped) fetch failure of `stages`: the next run tries them again."""
    rows = db.read("symbol_failures", {"stage": list(stages)}, columns=["symbol", "status"])
    return set(rows.loc[rows["status"] != "skipped", "symbol"])


def gap_start(db: Database, calendar: str) -> dt.date:
    """The first session after the store's newest prices (missed nights begin there); date.max when empty."""
    newest = db.max_date("prices")
    return dt.date.max if newest is None else sessions.session_on_or_after(newest + dt.timedelta(days=1), calendar)


def unwritten_snapshots(db: Database, days_by_portfolio: dict[str, list[dt.date]]) -> dict[str, set[dt.date]]:
    """{portfolio: wanted sessions without a snapshot row}: never computed, or computed from a book
    that has changed since (`portfolios.import_portfolio` deletes those figures) while Dagster
    still records the partitions as materialized. Planned again either way."""
    if not days_by_portfolio:
        return {}
    lo = min(days[0] for days in days_by_portfolio.values())
    hi = max(days[-1] for days in days_by_portfolio.values())
    rows = db.read(
        "portfolio_snapshots",
        {"portfolio_id": list(days_by_portfolio), "date": (lo, hi)},
        columns=["portfolio_id", "date"],
    )
    have = rows.groupby("portfolio_id")["date"].apply(lambda d: set(d.dt.date)).to_dict()
    gaps = {p: set(days) - have.get(p, set()) for p, days in days_by_portfolio.items()}
    return {p: days for p, days in gaps.items() if days}


@dataclass
class Plan:
    symbol_runs: list[PlannedRun]
    reference_runs: list[PlannedRun]
    portfolio_runs: list[PlannedRun]

    @property
    def runs(self) -> list[PlannedRun]:
        return self.symbol_runs + self.reference_runs + self.portfolio_runs


def plan_materialization(
    instance: dg.DagsterInstance,
    db: Database,
    *,
    start: dt.date,
    end: dt.date,
    portfolios: list[str] | None = None,
    symbols: list[str] | None = None,
    calendar: str = "XNYS",
    first_session: dt.date | None = None,
    universe: Sequence[str] = (),
    refresh: bool = False,
) -> Plan:
    """Every missing partition of every layer for sessions in [start, end].

    Portfolios (all, or those named) need their holdings' symbol layer from their inception, so
    those symbols are planned from min(start, inception). Symbols named alone, or — when nothing is
    named — all registered symbols and the source's `universe` (a CSV export's symbols), are planned
    over [start, end]. The factor ETFs always come along.

    Stale partitions (`layers.invalidation`: data changed under figures already computed) of the
    planned symbols and portfolios are planned whatever their dates. `refresh`: the prices of every
    planned symbol and session are fetched again, re-reading each symbol's whole stored history.
    """
    first_session = first_session or start
    if portfolios is None:
        books = read_books(db) if symbols is None else {}
    else:
        books = read_books(db, portfolios)
        unknown = sorted(set(portfolios) - set(books))
        if unknown:
            raise ValueError(f"unknown portfolio(s): {unknown} (import them first: factor-platform portfolio import)")

    # Missed nights: every session between the store's last prices and the request is planned too.
    lo_gap = min(start, gap_start(db, calendar))

    def days(lo: dt.date) -> list[dt.date]:
        lo = max(lo, first_session)
        return [d.date() for d in sessions.sessions_in_range(lo, end, calendar)]

    symbol_days: dict[str, list[dt.date]] = {}
    if symbols is not None:
        plain = list(symbols)
    elif portfolios is None:  # everything: the registered symbols and the source's own universe, if it has one
        plain = list(dict.fromkeys(list(instance.get_dynamic_partitions("symbol")) + list(universe)))
    else:
        plain = []
    for s in list(plain) + all_etfs():
        symbol_days[s] = days(lo_gap)
    for book in books.values():
        for s in book.held_symbols:
            lo = min(lo_gap, book.inception)
            current = symbol_days.get(s)
            symbol_days[s] = (
                days(lo) if current is None or (current and current[0] > max(lo, first_session)) else current
            )
    register(instance, "symbol", list(symbol_days))
    register(instance, "portfolio", list(books))
    # Each layer retries its own failures: a missing profile does not re-run every day's prices.
    # A held symbol is never given up on (layers.prices): one skipped before is asked again too.
    held = {s for book in books.values() for s in book.held_symbols}
    retry_days = retry_symbols(db, ("prices",)) | (held & skipped_symbols(db, "prices"))
    retry_reference = retry_symbols(db, ("profile", "fundamentals"))
    symbol_days = {s: d for s, d in symbol_days.items() if d}
    symbol_extra = {
        asset: stale_days(db, asset, list(symbol_days), end=end, calendar=calendar) for asset in SYMBOL_STALE_ASSETS
    }
    if refresh:
        symbol_extra[SYMBOL_DAY_ASSETS[0]] = {s: set(d) for s, d in symbol_days.items()}
    symbol_runs = plan_layer(
        instance,
        job_name=SYMBOL_LAYER_JOB,
        assets=SYMBOL_DAY_ASSETS,
        dimension="symbol",
        days_by_key=symbol_days,
        retry=retry_days & set(symbol_days),
        extra=symbol_extra,
        extra_tags={SYMBOL_DAY_ASSETS[0]: {REFRESH_TAG: "true"}} if refresh else None,
    )
    reference_runs = plan_reference(instance, list(symbol_days), retry_reference & set(symbol_days))
    portfolio_days = {pid: days(max(lo_gap, book.inception)) for pid, book in books.items()}
    portfolio_days = {p: d for p, d in portfolio_days.items() if d}
    redo = unwritten_snapshots(db, portfolio_days)
    for pid, days in stale_days(db, PORTFOLIO_STALE_ASSET, list(portfolio_days), end=end, calendar=calendar).items():
        redo[pid] = redo.get(pid, set()) | days
    portfolio_runs = plan_layer(
        instance,
        job_name=PORTFOLIO_LAYER_JOB,
        assets=PORTFOLIO_ASSETS,
        dimension="portfolio",
        days_by_key=portfolio_days,
        first_asset_alone=False,
        extra={asset: redo for asset in PORTFOLIO_ASSETS},
    )
    return Plan(symbol_runs, reference_runs, portfolio_runs)
