"""`materialize`: plan the missing partitions, then run them through Dagster on one of three executors.

- `local`: this process, one run per rectangle, layer after layer;
- `processes`: the plan cut into chunk runs (`planning.waves`), run in waves on spawned processes;
- `celery`: the same waves, each step a task of the dagster-celery workers (`running.celery_workers`).
`auto` (the default) is `processes` for a plan of PARALLEL_MIN_PARTITIONS or more with `workers` > 1,
else `local`. Every executor gets the same plan, the same passes and the same outcome.

While it runs, `materialize` reports a `Progress`: lines for a person, and the partition counts
behind them (`app.progress` renders them; no terminal code here).
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import dagster as dg
import pandas as pd

from factor_platform.domain import sessions
from factor_platform.layers.prices import FAILING_STAGES
from factor_platform.planning.planner import Plan, PlannedRun, plan_materialization
from factor_platform.planning.waves import waves
from factor_platform.running.instance import get_instance
from factor_platform.settings import Settings
from factor_platform.storage import Database

if TYPE_CHECKING:
    from factor_platform.running.celery_workers import CeleryConfig


def quiet_run_config(level: str = "WARNING") -> dict:
    """Run config whose console logger shows `level` and above: at DEBUG it prints a line per
    materialized partition, which our progress lines replace."""
    return {"loggers": {"console": {"config": {"log_level": level}}}}


QUIET_RUN_CONFIG = quiet_run_config()
# A plan this large runs as concurrent chunk runs when `workers` > 1 (docs/benchmarks.md): Dagster
# writes its events from one Python thread, so one run keeps one core busy. Smaller plans stay in
# this process: starting the worker processes costs ~2 s.
PARALLEL_MIN_PARTITIONS = 50_000


# ------------------------------------------------------------------------------------------ progress
@runtime_checkable
class Progress(Protocol):
    """What a materialize reports while it runs: called with a line, it is the plain line callback
    `progress` always was; the two events carry the partition counts behind their lines.

    - `planned(partitions, line)`: a plan (one per pass) adds `partitions` to the total;
    - `finished(partitions, line)`: a Dagster run (a chunk run for `processes` and `celery`) ran, ok or
      failed, over `partitions`. A run that is not run is only a line: its partitions stay to do.
    """

    def __call__(self, line: str) -> None: ...

    def planned(self, partitions: int, line: str) -> None: ...

    def finished(self, partitions: int, line: str) -> None: ...


@dataclass(frozen=True)
class Lines:
    """A `Progress` from a line callback (`print`, `list.append`, None): it gets exactly its lines."""

    say: Callable[[str], None] | None = None

    def __call__(self, line: str) -> None:
        if self.say is not None:
            self.say(line)

    def planned(self, partitions: int, line: str) -> None:
        self(line)

    def finished(self, partitions: int, line: str) -> None:
        self(line)


ProgressLike = Progress | Callable[[str], None] | None


def as_progress(progress: ProgressLike) -> Progress:
    """`progress` as a `Progress`: a `Progress` itself, else its lines only (None: nothing)."""
    return progress if isinstance(progress, Progress) else Lines(progress)


@lru_cache(maxsize=1)
def load_definitions() -> dg.Definitions:
    from factor_platform.definitions import defs

    return defs()


def execute_run(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    run: PlannedRun,
    tags: dict | None = None,
    *,
    console_level: str = "WARNING",
) -> dg.ExecuteInProcessResult:
    # execute_in_process(asset_selection=...) would add back every asset check of the selected assets,
    # which jobs.py keeps out of the layer runs: each check resolves ALL partitions of its asset
    # (sessions since START_DATE x every symbol: ~40 s per check at 500 symbols). An explicit empty
    # check selection keeps them out (docs/benchmarks.md).
    job = defs.resolve_job_def(run.job_name).get_subset(
        asset_selection={dg.AssetKey(a) for a in run.assets}, asset_check_selection=set()
    )
    return job.execute_in_process(
        run_config=quiet_run_config(console_level),
        instance=instance,
        tags={**run.tags(), **(tags or {})},
        raise_on_error=False,
    )


def _partition_count(run: PlannedRun, calendar: str) -> int:
    if run.rectangle is None:
        return len(run.keys) * len(run.assets)
    days = len(sessions.sessions_in_range(run.rectangle.first, run.rectangle.last, calendar))
    return days * len(run.rectangle.keys) * len(run.assets)


def plan_partitions(plan: Plan, calendar: str) -> int:
    """Asset partitions the plan's runs cover (its chunk runs cover the same)."""
    return sum(_partition_count(run, calendar) for run in plan.runs)


@dataclass
class Executed:
    """What an executor did with a plan."""

    partitions: int
    failures: list[str]
    runs: int  # planned runs (chunk runs for `processes` and `celery`), those not run included
    run_ids: list[str]


def execute_plan(
    plan: Plan,
    *,
    instance: dg.DagsterInstance,
    defs: dg.Definitions | None = None,
    calendar: str = "XNYS",
    progress: ProgressLike = None,
) -> Executed:
    """Execute the layers in order (symbols, reference data, portfolios), one run at a time.

    When a symbol-layer run fails, the portfolio runs are not executed: they would read the
    missing betas and prices, be recorded as materialized, and never be planned again. They are
    listed as failed instead, and the next `materialize` runs them.
    """
    defs = defs or load_definitions()
    report = as_progress(progress)
    failed: list[str] = []
    run_ids: list[str] = []
    partitions = 0
    runs = plan.runs
    symbols_failed = False
    for i, run in enumerate(runs, 1):
        count = _partition_count(run, calendar)
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
            failed.append(f"run {result.run_id} ({run.describe()}) failed: {_run_error(result)}")
            symbols_failed = symbols_failed or run in plan.symbol_runs
        state = "ok" if result.success else "FAILED"
        report.finished(count, f"[{i}/{len(runs)}] {run_label(run)}: {count} partitions, {seconds:.1f} s, {state}")
    return Executed(partitions, failed, len(runs), run_ids)


# ------------------------------------------------------------------------------------ waves of chunks
@dataclass(frozen=True)
class ChunkOutcome:
    run: PlannedRun
    run_id: str | None
    success: bool
    seconds: float
    error: str | None = None


def run_label(run: PlannedRun) -> str:
    return f"{run.describe()} [{', '.join(run.assets)}]"


def run_chunk_waves(
    planned: list[list[PlannedRun]],
    runner: Callable[[PlannedRun], ChunkOutcome],
    pool: Executor,
    *,
    calendar: str = "XNYS",
    progress: ProgressLike = None,
) -> tuple[int, list[str], list[ChunkOutcome]]:
    """The runs of each wave (`planning.waves.waves`) at once on `pool`, wave after wave; a wave with a
    failed run stops the later ones (listed as not run: the next materialize plans them).

    Each run is reported as it finishes; outcomes and failures keep the wave's order."""
    report = as_progress(progress)
    failed: list[str] = []
    outcomes: list[ChunkOutcome] = []
    partitions = 0
    for number, wave in enumerate(planned, 1):
        if failed:
            failed += [
                f"{run_label(run)} not run: an earlier wave failed; the next materialize runs it" for run in wave
            ]
            continue
        futures = [pool.submit(runner, run) for run in wave]
        for future in as_completed(futures):
            outcome = future.result()
            count = _partition_count(outcome.run, calendar)
            state = "ok" if outcome.success else "FAILED"
            report.finished(
                count,
                f"[wave {number}/{len(planned)}] {run_label(outcome.run)}: {count} partitions, "
                f"{outcome.seconds:.1f} s, {state}",
            )
        done = [future.result() for future in futures]
        for outcome in done:
            if outcome.success:
                partitions += _partition_count(outcome.run, calendar)
            else:
                failed.append(f"run {outcome.run_id} ({outcome.run.describe()}) failed: {outcome.error}")
        outcomes += done
    return partitions, failed, outcomes


def prepare_concurrent_runs(instance: dg.DagsterInstance) -> None:
    """Create the rows of the instance's default-limited pools before concurrent runs claim them.

    A pool's first claim inserts its row; two runs doing it at once fail on Postgres (Dagster
    1.13.27: the unique violation aborts the transaction its UPDATE fallback then runs in), and a
    chunk run fails with it (seen in bench/).
    """
    from factor_platform.defs.resources import POOLS

    storage = instance.event_log_storage
    if instance.global_op_concurrency_default_limit is None or not storage.supports_global_concurrency_limits:
        return
    known = {limit.name for limit in storage.get_pool_limits()}
    for pool in POOLS:
        if pool not in known:
            storage.initialize_concurrency_limit_to_default(pool)


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
    error = None if result.success else _run_error(result)
    return ChunkOutcome(run, result.run_id, result.success, time.perf_counter() - started, error)


def execute_plan_in_processes(
    plan: Plan,
    *,
    instance: dg.DagsterInstance,
    workers: int,
    calendar: str = "XNYS",
    progress: ProgressLike = None,
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
        partitions, failed, outcomes = run_chunk_waves(planned, runner, pool, calendar=calendar, progress=progress)
    return Executed(partitions, failed, sum(len(w) for w in planned), [o.run_id for o in outcomes if o.run_id])


def _run_error(result: dg.ExecuteInProcessResult) -> str:
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            error = event.step_failure_data.error
            while error.cause is not None:  # Dagster's wrapper first; the cause says what went wrong
                error = error.cause
            lines = error.message.strip().splitlines() or [error.cls_name or "error"]
            return f"step {event.step_key}: {lines[0]}"
    return "see the run's logs in the Dagster UI"


MAX_PASSES = 3  # plans per materialize: the first, and again after prices that changed stored data
EXECUTORS = ("auto", "local", "processes", "celery")


def check_executor(executor: str) -> None:
    if executor not in EXECUTORS:
        raise ValueError(f"executor {executor!r}: expected one of {', '.join(EXECUTORS)}")


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
    """Run `plan` on `executor`."""
    executor = resolve_executor(executor, plan, workers=workers, calendar=calendar)
    if executor == "local":
        return execute_plan(plan, instance=instance, calendar=calendar, progress=progress)
    if executor == "processes":
        return execute_plan_in_processes(plan, instance=instance, workers=workers, calendar=calendar, progress=progress)
    from factor_platform.running.celery_workers import run_waves

    partitions, failed, outcomes, planned = run_waves(
        plan, instance=instance, celery=celery, chunks=workers, calendar=calendar, progress=progress
    )
    return Executed(partitions, failed, planned, [o.run_id for o in outcomes if o.run_id])


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
    from factor_platform.defs.partitions import START_DATE

    report = as_progress(progress)
    settings = settings or Settings.from_env()
    instance = instance or get_instance()
    latest = sessions.latest_closed_session(name=settings.calendar)
    if end > latest:
        report(f"--end {end} is after the latest closed session; using {latest}")
        end = latest
    if start < START_DATE:
        raise ValueError(
            f"--start {start} is before FACTOR_PLATFORM_START_DATE ({START_DATE}); history before it cannot be materialized"
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
            first_session=START_DATE,
            universe=universe,
            refresh=refresh and number == 1,
        )
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
        "run_ids": run_ids,
        "seconds": time.perf_counter() - started,
        "failures": failed + lines[True],
        "warnings": lines[False],
    }
