"""A plan cut for concurrent runs: each run in chunks of contiguous keys, the chunks in waves that
keep the layers' order (the local processes and the Celery workers run the same waves)."""

from __future__ import annotations

from dataclasses import replace

from factor_platform.layers.names import NIGHTLY_TAG, SYMBOL_DAY_ASSETS, SYMBOL_LAYER_JOB, WAVE_TAG
from factor_platform.planning.plan import Plan, PlannedRun
from factor_platform.planning.rectangles import Rectangle


def split(keys: tuple[str, ...], chunks: int) -> list[tuple[str, ...]]:
    """`keys` in up to `chunks` contiguous blocks of near-equal size, order kept."""
    if chunks < 1:
        raise ValueError(f"chunks must be >= 1, got {chunks}")
    n = min(chunks, len(keys))
    size, extra = divmod(len(keys), n)
    blocks, start = [], 0
    for i in range(n):
        stop = start + size + (i < extra)
        blocks.append(keys[start:stop])
        start = stop
    return blocks


def chunk_run(run: PlannedRun, chunks: int) -> list[PlannedRun]:
    """One planned run as up to `chunks` runs over contiguous blocks of its keys (same sessions, same assets)."""
    if run.rectangle is None:
        return [replace(run, keys=block) for block in split(run.keys, chunks)]
    r = run.rectangle
    return [replace(run, rectangle=Rectangle(r.first, r.last, block)) for block in split(r.keys, chunks)]


def waves(plan: Plan, chunks: int) -> list[list[PlannedRun]]:
    """The plan's runs, chunked, in waves that keep the layers' order across concurrent runs
    (inside one run Dagster orders the steps itself); empty waves are dropped:

    1. `prices` chunks, and the reference data (profiles, fundamentals), which reads no prices;
    2. `symbol_factor_exposures` and `symbol_metrics` chunks: a chunk's betas read the factor ETFs'
       prices, which another chunk of wave 1 wrote (`plan.layer_runs`' `first_asset_alone`, across chunks);
    3. the portfolio layer, chunked by portfolio.
    """
    fetch, derived = [], []
    for run in plan.symbol_runs:
        head = tuple(a for a in run.assets if a == SYMBOL_DAY_ASSETS[0])  # prices: what the others read
        rest = tuple(a for a in run.assets if a != SYMBOL_DAY_ASSETS[0])
        if head:
            fetch += chunk_run(replace(run, assets=head), chunks)
        if rest:
            derived += chunk_run(replace(run, assets=rest), chunks)
    fetch += [c for run in plan.reference_runs for c in chunk_run(run, chunks)]
    portfolios = [c for run in plan.portfolio_runs for c in chunk_run(run, chunks)]
    return [w for w in (fetch, derived, portfolios) if w]


FETCH, DERIVED = "prices", "derived"
# A plan this large runs as concurrent chunk runs when there are workers for them (docs/benchmarks.md):
# Dagster writes a run's events from one Python thread, so one run keeps one core busy. Smaller plans
# run as one: starting the processes costs ~2 s. The 5,000-symbol nightly (19,280 partitions): 50.6 s
# in one process, 36.8 s on 2 (`materialize`).
PARALLEL_MIN_PARTITIONS = 10_000


def nightly_waves(day, span: Rectangle, chunks: int) -> tuple[list[PlannedRun], list[PlannedRun]]:
    """The nightly's symbol layer in the waves of `waves`, for the daemon: its prices in up to `chunks`
    runs of contiguous symbols (the schedule asks for them), then the betas and metrics over the same
    blocks (the sensor asks for them once every prices run has succeeded: each block's betas read the
    factor ETFs' prices, which one of the prices runs writes). Tagged with the session and the wave."""
    fetch, derived = waves(Plan([nightly_run(span)], [], []), chunks)
    return tuple(
        [replace(r, extra_tags=((NIGHTLY_TAG, str(day)), (WAVE_TAG, wave))) for r in runs]
        for wave, runs in ((FETCH, fetch), (DERIVED, derived))
    )


def nightly_run(span: Rectangle) -> PlannedRun:
    """The nightly's symbol layer over `span` as one run."""
    return PlannedRun(SYMBOL_LAYER_JOB, tuple(SYMBOL_DAY_ASSETS), rectangle=span)


def nightly_run_key(run: PlannedRun) -> str:
    """One key per (session, wave, block): a wave asked twice is one set of runs."""
    tags, r = dict(run.extra_tags), run.rectangle
    return f"nightly:{tags[NIGHTLY_TAG]}:{tags[WAVE_TAG]}:{r.keys[0]}..{r.keys[-1]}"
