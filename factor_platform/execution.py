"""Run a materialization plan through Dagster, in this process, one run per rectangle."""

from __future__ import annotations

import datetime as dt
import time
from functools import lru_cache
from typing import Callable

import dagster as dg
import pandas as pd

from factor_platform import sessions
from factor_platform.instance import get_instance
from factor_platform.orchestration import Plan, PlannedRun, plan_materialization
from factor_platform.settings import Settings
from factor_platform.storage import Database


# The console logger prints a DEBUG line per materialized partition; our progress lines replace it.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@lru_cache(maxsize=1)
def load_definitions() -> dg.Definitions:
    from factor_platform.definitions import defs

    return defs()


def execute_run(defs: dg.Definitions, instance: dg.DagsterInstance, run: PlannedRun, tags: dict | None = None) -> dg.ExecuteInProcessResult:
    # execute_in_process(asset_selection=...) would add back every asset check of the selected assets,
    # which jobs.py keeps out of the layer runs: each check resolves ALL partitions of its asset
    # (sessions since START_DATE x every symbol: ~40 s per check at 500 symbols). An explicit empty
    # check selection keeps them out (docs/benchmarks.md).
    job = defs.resolve_job_def(run.job_name).get_subset(
        asset_selection={dg.AssetKey(a) for a in run.assets}, asset_check_selection=set()
    )
    return job.execute_in_process(
        run_config=QUIET_RUN_CONFIG,
        instance=instance,
        tags={**run.tags(), **(tags or {})},
        raise_on_error=False,
    )


def _partition_count(run: PlannedRun, calendar: str) -> int:
    if run.rectangle is None:
        return len(run.keys) * len(run.assets)
    days = len(sessions.sessions_in_range(run.rectangle.first, run.rectangle.last, calendar))
    return days * len(run.rectangle.keys) * len(run.assets)


def execute_plan(
    plan: Plan,
    *,
    instance: dg.DagsterInstance,
    defs: dg.Definitions | None = None,
    calendar: str = "XNYS",
    progress: Callable[[str], None] | None = None,
) -> tuple[int, list[str]]:
    """Execute the layers in order (symbols, reference data, portfolios); return (partitions, failed runs).

    When a symbol-layer run fails, the portfolio runs are not executed: they would read the
    missing betas and prices, be recorded as materialized, and never be planned again. They are
    listed as failed instead, and the next `materialize` runs them.
    """
    defs = defs or load_definitions()
    failed: list[str] = []
    partitions = 0
    runs = plan.runs
    symbols_failed = False
    for i, run in enumerate(runs, 1):
        count = _partition_count(run, calendar)
        if symbols_failed and run in plan.portfolio_runs:
            failed.append(f"{run.describe()} not run: a symbol-layer run failed; the next materialize runs it")
            if progress:
                progress(f"[{i}/{len(runs)}] {run.describe()} [{', '.join(run.assets)}]: {count} partitions, NOT RUN (symbol layer failed)")
            continue
        started = time.perf_counter()
        result = execute_run(defs, instance, run)
        partitions += count
        seconds = time.perf_counter() - started
        if not result.success:
            failed.append(f"run {result.run_id} ({run.describe()}) failed: {_run_error(result)}")
            symbols_failed = symbols_failed or run in plan.symbol_runs
        if progress:
            state = "ok" if result.success else "FAILED"
            progress(f"[{i}/{len(runs)}] {run.describe()} [{', '.join(run.assets)}]: {count} partitions, {seconds:.1f} s, {state}")
    return partitions, failed


def _run_error(result: dg.ExecuteInProcessResult) -> str:
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            error = event.step_failure_data.error
            while error.cause is not None:  # Dagster's wrapper first; the cause says what went wrong
                error = error.cause
            lines = error.message.strip().splitlines() or [error.cls_name or "error"]
            return f"step {event.step_key}: {lines[0]}"
    return "see the run's logs in the Dagster UI"


def source_universe(settings: Settings) -> list[str]:
    """Symbols the configured source names itself (a CSV export), validated; [] for open-ended sources."""
    from factor_platform.sources import price_source
    from factor_platform.symbols import validate_symbol

    source = price_source(settings.price_source, calendar=settings.calendar)
    listed = getattr(source, "symbols", None)
    return [validate_symbol(s) for s in listed()] if callable(listed) else []


def materialize(
    db: Database,
    *,
    start: dt.date,
    end: dt.date,
    portfolios: list[str] | None = None,
    symbols: list[str] | None = None,
    settings: Settings | None = None,
    progress: Callable[[str], None] | None = None,
    instance: dg.DagsterInstance | None = None,
) -> dict:
    """Materialize exactly the missing partitions of every layer for the sessions in [start, end]."""
    from factor_platform.defs.partitions import START_DATE

    settings = settings or Settings.from_env()
    instance = instance or get_instance()
    latest = sessions.latest_closed_session(name=settings.calendar)
    if end > latest:
        if progress:
            progress(f"--end {end} is after the latest closed session; using {latest}")
        end = latest
    if start < START_DATE:
        raise ValueError(f"--start {start} is before FACTOR_PLATFORM_START_DATE ({START_DATE}); history before it cannot be materialized")
    began = pd.Timestamp.now(tz="UTC").tz_localize(None)
    started = time.perf_counter()
    plan = plan_materialization(
        instance, db, start=start, end=end, portfolios=portfolios, symbols=symbols,
        calendar=settings.calendar, first_session=START_DATE, universe=source_universe(settings),
    )
    if progress:
        progress(f"plan: {len(plan.symbol_runs)} symbol run(s), {len(plan.reference_runs)} reference run(s), "
                 f"{len(plan.portfolio_runs)} portfolio run(s)")
    partitions, failed = execute_plan(plan, instance=instance, calendar=settings.calendar, progress=progress)
    failures = db.read("symbol_failures")
    fresh = failures[pd.to_datetime(failures["last_seen"]) >= began] if len(failures) else failures
    # A symbol without prices is a failed partition; a factor without enough history or a missing
    # profile is a recorded warning (the contract's "no row, and a failure recorded").
    lines = {True: [], False: []}
    for r in fresh.itertuples():
        lines[r.stage == "prices"].append(f"{r.symbol} {r.stage} ({r.status}, attempts={r.attempts}): {r.error}")
    return {
        "start": start, "end": end, "runs": len(plan.runs), "partitions": partitions,
        "seconds": time.perf_counter() - started, "failures": failed + lines[True], "warnings": lines[False],
    }
