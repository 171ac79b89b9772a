"""`plan(state, request)` on generated states, against a brute-force enumeration of every
(session, key) of every asset that is not done -- the way statsmodels checks an estimator against
the textbook formula. The rules below are the module docstring of `planning.plan`, written out again
pair by pair, independently of the planner's own code."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pytest

from factor_platform.domain import sessions
from factor_platform.layers.names import (
    HISTORY_JOB,
    PORTFOLIO_ASSETS,
    PORTFOLIO_LAYER_JOB,
    PORTFOLIO_STALE_ASSET,
    SYMBOL_ASSETS,
    SYMBOL_DAY_ASSETS,
    SYMBOL_LAYER_JOB,
)
from factor_platform.planning.plan import PlanRequest, PlanState, plan

DAYS = [d.date() for d in sessions.sessions_in_range(dt.date(2025, 1, 2), dt.date(2025, 3, 31))]
STOCKS = ["AAA", "BBB", "CCC", "DDD", "EEE"]
ETFS = ["E1", "E2"]


@dataclass(frozen=True)
class _Book:  # what the planner reads of a Book
    portfolio_id: str
    inception: dt.date
    held_symbols: list[str]


def _pick(rng, items, p=0.5):
    return [x for x in items if rng.random() < p]


def _day(rng, lo=0, hi=None):
    return DAYS[int(rng.integers(lo, len(DAYS) if hi is None else hi))]


def _spans(rng):
    out = []
    for _ in range(int(rng.integers(0, 3))):
        i, j = sorted(rng.integers(0, len(DAYS), 2))
        out.append((DAYS[i], DAYS[j]))
    return out


def generated(seed: int) -> tuple[PlanState, PlanRequest]:
    rng = np.random.default_rng(seed)
    first = _day(rng, 0, 10)
    window_from = max(first, _day(rng, 0, len(DAYS) - 5)) if rng.random() < 0.7 else first
    end = _day(rng, DAYS.index(window_from), len(DAYS))
    start = _day(rng, DAYS.index(first), DAYS.index(end) + 1)
    books = {
        f"p{i}": _Book(f"p{i}", _day(rng, 0, DAYS.index(end) + 1), _pick(rng, STOCKS) or ["AAA"])
        for i in range(int(rng.integers(0, 3)))
    }
    named = rng.integers(0, 3)  # 0: everything, 1: portfolios, 2: symbols
    portfolios = tuple(books) if named == 1 else None
    symbols = tuple(_pick(rng, STOCKS)) if named == 2 else None
    if named == 2:
        books = {}
    registered = list(rng.permutation(_pick(rng, STOCKS + ETFS, 0.6)))
    registered_portfolios = _pick(rng, list(books))
    every_key = STOCKS + ETFS + list(books)
    assets = SYMBOL_DAY_ASSETS + PORTFOLIO_ASSETS
    done = {a: {f"{d.isoformat()}|{k}" for k in every_key for d in DAYS if rng.random() < 0.6} for a in assets}
    done |= {a: set(_pick(rng, STOCKS + ETFS)) for a in SYMBOL_ASSETS}
    spans = {a: {k: _spans(rng) for k in _pick(rng, every_key)} for a in assets}
    stale_assets = ["symbol_factor_exposures", "symbol_metrics", PORTFOLIO_STALE_ASSET]
    stale = {
        a: {k: {d for d in DAYS if d >= first and d <= end and rng.random() < 0.1} for k in _pick(rng, every_key, 0.3)}
        for a in stale_assets
    }
    state = PlanState(
        registered_symbols=registered,
        registered_portfolios=registered_portfolios,
        books=books,
        etfs=ETFS,
        store_newest=_day(rng) if rng.random() < 0.8 else None,
        done=done,
        spans=spans,
        stale=stale,
        snapshot_days={p: {d for d in DAYS if rng.random() < 0.8} for p in books},
        retry_prices=set(_pick(rng, STOCKS, 0.2)),
        retry_reference=set(_pick(rng, STOCKS, 0.2)),
    )
    request = PlanRequest(
        start=start,
        end=end,
        portfolios=portfolios,
        symbols=symbols,
        first_session=first,
        partitions_from=window_from,
        universe=("DDD",) if rng.random() < 0.3 else (),
        refresh=bool(rng.random() < 0.15),
        retry_failed=bool(rng.random() < 0.8),
        recompute_stale=bool(rng.random() < 0.8),
    )
    return state, request


def brute_force(state: PlanState, request: PlanRequest) -> tuple[dict[str, set], dict[str, set], list[str]]:
    """asset -> {(session, key)} to compute; reference asset -> {symbol}; the symbols wanted, in order."""
    first, window = request.first_session, request.partitions_from
    after_store = [d for d in sessions.sessions_in_range(dt.date(2000, 1, 1), dt.date(2030, 1, 1))]
    newest = state.store_newest
    missed = next(d.date() for d in after_store if d.date() > newest) if newest else dt.date.max
    lo = min(request.start, missed)
    if request.symbols is not None:
        plain = list(request.symbols)
    elif request.portfolios is None:
        plain = list(dict.fromkeys(state.registered_symbols + list(request.universe)))
    else:
        plain = []
    symbol_from = {s: lo for s in plain + state.etfs}
    for book in state.books.values():
        for s in book.held_symbols:
            symbol_from[s] = min(symbol_from.get(s, dt.date.max), lo, book.inception)
    portfolio_from = {p: max(lo, b.inception) for p, b in state.books.items()}

    def covered(asset, key, day):
        return any(a <= day <= b for a, b in state.spans.get(asset, {}).get(key, []))

    def stale(asset, key, day):
        return request.recompute_stale and day in state.stale.get(asset, {}).get(key, set())

    todo: dict[str, set] = {a: set() for a in SYMBOL_DAY_ASSETS + PORTFOLIO_ASSETS}
    wanted_symbols = []
    for key, since in symbol_from.items():
        days = [d for d in DAYS if max(since, first) <= d <= request.end]
        if days:
            wanted_symbols.append(key)
        for asset in SYMBOL_DAY_ASSETS:
            for d in days:
                if d >= window:
                    missing = (
                        f"{d.isoformat()}|{key}" not in state.done[asset]
                        or (request.retry_failed and key in state.retry_prices)
                        or (request.refresh and asset == "prices")
                    )
                else:  # a history session without its prices is not computed for what reads them either
                    missing = not covered(asset, key, d) or not covered("prices", key, d)
                if missing or stale(asset, key, d):
                    todo[asset].add((d, key))
            for d in DAYS:  # a stale session is planned wherever it lies (the state holds those up to `end`)
                if stale(asset, key, d):
                    todo[asset].add((d, key))
    for key, since in portfolio_from.items():
        for asset in PORTFOLIO_ASSETS:
            for d in DAYS:
                wanted = max(since, first) <= d <= request.end
                if wanted and d >= window:
                    missing = f"{d.isoformat()}|{key}" not in state.done[asset] or d not in state.snapshot_days[key]
                else:
                    missing = wanted and not covered(asset, key, d)
                if missing or stale(PORTFOLIO_STALE_ASSET, key, d):
                    todo[asset].add((d, key))
    retry_reference = state.retry_reference if request.retry_failed else set()
    reference = {
        a: {s for s in wanted_symbols if s not in state.done[a] or s in retry_reference} for a in SYMBOL_ASSETS
    }
    return todo, reference, list(symbol_from)


def covered_pairs(runs, asset) -> list[tuple]:
    return [
        (d, k)
        for run in runs
        if asset in run.assets
        for d in DAYS
        if run.rectangle.first <= d <= run.rectangle.last
        for k in run.rectangle.keys
    ]


@pytest.mark.parametrize("seed", range(300))
def test_plan_computes_exactly_what_is_not_done(seed):
    state, request = generated(seed)
    planned = plan(state, request)
    todo, reference, wanted_symbols = brute_force(state, request)
    for asset in SYMBOL_DAY_ASSETS:
        pairs = covered_pairs(planned.symbol_runs, asset)
        assert sorted(pairs) == sorted(todo[asset]), asset  # exactly: nothing missed, nothing twice
    for asset in PORTFOLIO_ASSETS:
        assert sorted(covered_pairs(planned.portfolio_runs, asset)) == sorted(todo[asset]), asset
    for asset in SYMBOL_ASSETS:
        keys = [k for run in planned.reference_runs if asset in run.assets for k in run.keys]
        assert sorted(keys) == sorted(reference[asset]), asset
    # every rectangle is contiguous in the partitions' order, which ends with the new keys in order
    order = state.registered_symbols + planned.new_symbols
    assert planned.new_symbols == [s for s in wanted_symbols if s not in state.registered_symbols]
    for run in planned.symbol_runs:
        positions = [order.index(k) for k in run.rectangle.keys]
        assert positions == list(range(positions[0], positions[0] + len(positions)))
    # a rectangle that begins before the window is a history run; the others are the layer's
    for run, layer in [(r, SYMBOL_LAYER_JOB) for r in planned.symbol_runs] + [
        (r, PORTFOLIO_LAYER_JOB) for r in planned.portfolio_runs
    ]:
        assert run.job_name == (HISTORY_JOB if run.rectangle.first < request.partitions_from else layer)
    # prices before what reads them: no run of betas or metrics alone precedes a run with prices
    with_prices = [i for i, r in enumerate(planned.symbol_runs) if "prices" in r.assets]
    without = [i for i, r in enumerate(planned.symbol_runs) if "prices" not in r.assets]
    assert not with_prices or not without or max(with_prices) < min(without)
    shared = [r for r in planned.symbol_runs if "prices" in r.assets and len(r.assets) > 1]
    assert not shared or len(with_prices) == 1


def test_generated_states_reach_every_case():
    """The generator is not vacuous: history runs, retries, stale and refreshed prices all occur."""
    seen = {"history": 0, "partition": 0, "portfolio": 0, "reference": 0, "empty": 0}
    for seed in range(300):
        state, request = generated(seed)
        planned = plan(state, request)
        seen["history"] += any(r.job_name == HISTORY_JOB for r in planned.runs)
        seen["partition"] += any(r.job_name == SYMBOL_LAYER_JOB for r in planned.runs)
        seen["portfolio"] += bool(planned.portfolio_runs)
        seen["reference"] += bool(planned.reference_runs)
        seen["empty"] += not planned.runs
    assert all(count >= 10 for name, count in seen.items() if name != "empty"), seen
