"""`materialize`: plan the missing partitions, then run them through Dagster on one of three executors.

- `local`: this process, one run per rectangle, layer after layer;
- `processes`: the plan cut into chunk runs (`planning.waves`), run in waves on spawned processes;
- `celery`: the same waves, each step a task of the dagster-celery workers (`running.celery_workers`).
`auto` (the default) is `processes` for a plan of PARALLEL_MIN_PARTITIONS or more with `workers` > 1,
else `local`. Every executor has one signature (`running.runs.PlanExecutor`) and gets the same plan,
the same passes and the same outcome; what they share is `running.runs`.

While it runs, `materialize` reports a `running.progress.Progress`: lines for a person, and the
partition counts behind them (`app.progress` renders them; no terminal code here).
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

import dagster as dg
import pandas as pd

from factor_platform.defs.archive import archive_moved_window
from factor_platform.domain import sessions
from factor_platform.layers.prices import FAILING_STAGES
from factor_platform.planning.plan import Plan, PlannedRun
from factor_platform.planning.planner import plan_materialization, register_plan
from factor_platform.planning.waves import PARALLEL_MIN_PARTITIONS, waves
from factor_platform.running.instance import get_instance
from factor_platform.running.progress import ProgressLike, as_progress
from factor_platform.running.runs import (
    ChunkOutcome,
    Executed,
    PlanExecutor,
    execute_run,
    executed_waves,
    load_definitions,
    partition_count,
    plan_partitions,
    prepare_concurrent_runs,
    run_chunk_waves,
    run_error,
    run_label,
)
from factor_platform.settings import Settings
from factor_platform.storage import Database

if TYPE_CHECKING:
    from factor_platform.running.celery_workers import CeleryConfig


# ------------------------------------------------------------------------------------------ executors
def execute_plan(
    plan: Plan,
    *,
    instance: dg.DagsterInstance,
    workers: int,
    calendar: str,
    progress: ProgressLike,
) -> Executed:
    """Execute the layers in order (symbols, reference data, portfolios), one run at a time, in this
    process (`workers` unused).

    When a symbol-layer run fails, the portfolio runs are not executed: they would read the
    missing betas and prices, be recorded as materialized, and never be planned again. They are
    listed as failed instead, and the next `materialize` runs them.
    """
    defs = load_definitions()
    report = as_progress(progress)
    failed: list[str] = []
    run_ids: list[str] = []
    partitions = 0
    runs = plan.runs
    symbols_failed = False
    for i, run in enumerate(runs, 1):
        count = partition_count(run, calendar)
        if symbols_failed and run in plan.portfolio_runs:
            failed.append(f"{run.describe()} not run: a symbol-layer run failed; the next materialize runs it")
            report(f"[{i}/{len(runs)}] {run_label(run)}: {count} partitions, NOT RUN (symbol layer failed)")
            continue
        started = time.perf_counter()
        result = execute_run(defs, instance, run)
        run_ids.append(result.run_id)
        partitions += count
        seconds = time.perf_counter() - started
        if not result.success:
            failed.append(f"run {result.run_id} ({run.describe()}) failed: {run_error(result)}")
            symbols_failed = symbols_failed or run in plan.symbol_runs
        state = "ok" if result.success else "FAILED"
        report.finished(count, f"[{i}/{len(runs)}] {run_label(run)}: {count} partitions, {seconds:.1f} s, {state}")
    return Executed(partitions, failed, len(runs), run_ids)


def _load_definitions_once() -> None:
    load_definitions().get_repository_def()


def _execute_in_child(run: PlannedRun, instance_ref) -> ChunkOutcome:
    """One chunk as one in-process Dagster run, in a pool process of `execute_plan_in_processes`."""
    started = time.perf_counter()
    with dg.DagsterInstance.from_ref(instance_ref) as instance:
        try:
            # ERROR: Dagster warns that the other chunk's run wrote the same assets last ("Data version
            # mismatch ... provenance"), which concurrent runs of one layer always do; it stays in the event log.
            result = execute_run(load_definitions(), instance, run, console_level="ERROR")
        except Exception as exc:  # the run could not start (storage down): a failed chunk
            return ChunkOutcome(run, None, False, time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
    error = None if result.success else run_error(result)
    return ChunkOutcome(run, result.run_id, result.success, time.perf_counter() - started, error)


def execute_plan_in_processes(
    plan: Plan,
    *,
    instance: dg.DagsterInstance,
    workers: int,
    calendar: str,
    progress: ProgressLike,
) -> Executed:
    """`execute_plan`'s contract with each run cut into `workers` chunks of contiguous keys, run
    `workers` at a time by fresh processes (spawned: a fork would share this process's database
    connections), every chunk an ordinary Dagster run in this instance."""
    planned = waves(plan, workers)
    if not planned:
        return Executed(0, [], 0, [])
    prepare_concurrent_runs(instance)
    runner = partial(_execute_in_child, instance_ref=instance.get_ref())
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_load_definitions_once) as pool:
        return executed_waves(planned, *run_chunk_waves(planned, runner, pool, calendar=calendar, progress=progress))


def execute_plan_on_celery(plan: Plan, **executor_arguments) -> Executed:
    """`running.celery_workers.execute_plan_on_celery` (the same arguments), imported when a plan runs on
    Celery: the project's own code location never needs dagster_celery."""
    from factor_platform.running import celery_workers

    return celery_workers.execute_plan_on_celery(plan, **executor_arguments)


MAX_PASSES = 3  # plans per materialize: the first, and again after prices that changed stored data
EXECUTORS: dict[str, PlanExecutor] = {
    "local": execute_plan,
    "processes": execute_plan_in_processes,
    "celery": execute_plan_on_celery,
}
EXECUTOR_NAMES = ("auto", *EXECUTORS)


def check_executor(executor: str) -> None:
    if executor not in EXECUTOR_NAMES:
        raise ValueError(f"executor {executor!r}: expected one of {', '.join(EXECUTOR_NAMES)}")


def resolve_executor(executor: str, plan: Plan, *, workers: int, calendar: str) -> str:
    """`auto` -> `processes` for a plan of PARALLEL_MIN_PARTITIONS or more with `workers` > 1, else `local`."""
    check_executor(executor)
    if executor != "auto":
        return executor
    large = plan_partitions(plan, calendar) >= PARALLEL_MIN_PARTITIONS
    return "processes" if workers > 1 and large else "local"


def execute(
    plan: Plan,
    *,
    executor: str,
    instance: dg.DagsterInstance,
    workers: int,
    celery: CeleryConfig | None,
    calendar: str,
    progress: ProgressLike,
) -> Executed:
    """Run `plan` on `executor` (`celery`: where the celery executor's workers listen)."""
    name = resolve_executor(executor, plan, workers=workers, calendar=calendar)
    run = partial(execute_plan_on_celery, celery=celery) if name == "celery" else EXECUTORS[name]
    return run(plan, instance=instance, workers=workers, calendar=calendar, progress=progress)


def _stale_rows(db: Database) -> set[tuple]:
    rows = db.read("stale_partitions", columns=["asset", "key", "first_date", "last_date"])
    return set(rows.itertuples(index=False, name=None))


def source_universe(settings: Settings) -> list[str]:
    """Symbols the configured source names itself (a CSV export), validated; [] for open-ended sources."""
    from factor_platform.domain.symbols import validate_symbol
    from factor_platform.sources import price_source

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
    progress: ProgressLike = None,
    instance: dg.DagsterInstance | None = None,
    workers: int = 1,
    refresh: bool = False,
    executor: str = "auto",
    celery: CeleryConfig | None = None,
) -> dict:
    """Materialize exactly the missing partitions of every layer for the sessions in [start, end],
    and every stale one (data the source changed under figures already computed).

    A prices run that finds changed data marks what depends on it stale; the plan is then made
    again and run, until nothing new is stale (at most MAX_PASSES plans). `refresh` re-reads the
    whole stored history of every planned symbol first.

    `executor` (module docstring): `workers` is the processes of `processes`, and the chunks per
    rectangle of `celery` (about the workers' slots); `celery`: where its workers listen (default:
    the environment, `CeleryConfig.from_env`). `progress`: a `Progress`, or a line callback (the lines
    only). The outcome: partitions, runs, their Dagster run ids,
    failures (failed runs, symbols without prices) and warnings (recorded failures of other stages).
    """
    check_executor(executor)
    report = as_progress(progress)
    settings = settings or Settings.from_env()
    instance = instance or get_instance()
    first = sessions.first_session(settings)
    latest = sessions.latest_closed_session(name=settings.calendar)
    if end > latest:
        report(f"end {end} is after the latest closed session {latest}; using {latest}")
        end = latest
    if start < first:
        raise ValueError(
            f"start {start} is before the first session {first} (FACTOR_PLATFORM_START_DATE); "
            "history before it cannot be materialized"
        )
    window_from, archived = archive_moved_window(instance, db, settings)  # the window moved on (a month began)
    if archived:
        report(
            f"archive: {archived} partitions before {window_from} recorded as history spans, out of Dagster's event log"
        )
    began = pd.Timestamp.now(tz="UTC").tz_localize(None)
    started = time.perf_counter()
    universe = source_universe(settings)
    partitions, failed, runs, run_ids = 0, [], 0, []
    for number in range(1, MAX_PASSES + 1):
        stale_before = _stale_rows(db)
        plan = plan_materialization(
            instance,
            db,
            start=start,
            end=end,
            portfolios=portfolios,
            symbols=symbols,
            calendar=settings.calendar,
            first_session=first,
            partitions_from=window_from,
            universe=universe,
            refresh=refresh and number == 1,
        )
        register_plan(instance, plan)  # the partitions its runs name
        if number > 1:  # the passes after the first recompute what became stale; failures retry next time
            plan = replace(plan, reference_runs=[])
            if not plan.runs:
                break
        again = "" if number == 1 else " (again: the source changed data already computed)"
        report.planned(
            plan_partitions(plan, settings.calendar),
            f"plan{again}: {len(plan.symbol_runs)} symbol run(s), {len(plan.reference_runs)} reference run(s), "
            f"{len(plan.portfolio_runs)} portfolio run(s)",
        )
        done = execute(
            plan,
            executor=executor,
            instance=instance,
            workers=workers,
            celery=celery,
            calendar=settings.calendar,
            progress=report,
        )
        partitions += done.partitions
        failed += done.failures
        runs += done.runs
        run_ids += done.run_ids
        stale_after = _stale_rows(db)
        if done.failures or not stale_after or stale_after <= stale_before:
            break  # nothing new became stale: what the plan computed rests on the final data
    failures = db.read("symbol_failures")
    fresh = failures[pd.to_datetime(failures["last_seen"]) >= began] if len(failures) else failures
    # A symbol without prices, or a re-basing no split explains, is a failed partition; a factor
    # without enough history, a missing profile, an inferred split or a price break is a recorded
    # warning (the contract's "no row, and a failure recorded").
    lines = {True: [], False: []}
    for r in fresh.itertuples():
        lines[r.stage in FAILING_STAGES].append(f"{r.symbol} {r.stage} ({r.status}, attempts={r.attempts}): {r.error}")
    return {
        "start": start,
        "end": end,
        "partitions": partitions,
        "runs": runs,
        "archived_partitions": archived,
        "run_ids": run_ids,
        "seconds": time.perf_counter() - started,
        "failures": failed + lines[True],
        "warnings": lines[False],
    }
