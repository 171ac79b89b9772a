"""What every executor shares: one planned rectangle as one Dagster run, its partitions and its
error, chunk runs in waves, and the one signature an executor has (`PlanExecutor`).

`running.execution` (the local and processes executors, `materialize`) and `running.celery_workers`
(the celery executor) both build on it; `celery_workers` never imports `execution`, which imports
`celery_workers` only when the celery executor runs.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, as_completed
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import dagster as dg

from factor_platform.defs.history import history_run_config
from factor_platform.layers.names import HISTORY_JOB
from factor_platform.planning.plan import Plan, PlannedRun
from factor_platform.running.progress import ProgressLike, as_progress


def quiet_run_config(level: str = "WARNING") -> dict:
    """Run config whose console logger shows `level` and above: at DEBUG it prints a line per
    materialized partition, which our progress lines replace."""
    return {"loggers": {"console": {"config": {"log_level": level}}}}


QUIET_RUN_CONFIG = quiet_run_config()


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
    # (sessions since the first session x every symbol: ~40 s per check at 500 symbols). An explicit
    # empty check selection keeps them out (docs/benchmarks.md).
    if run.job_name == HISTORY_JOB:  # sessions before the partition window: the rectangle is its config
        return defs.resolve_job_def(HISTORY_JOB).execute_in_process(
            run_config={
                **quiet_run_config(console_level),
                **history_run_config(run.rectangle, run.assets, refresh=run.refresh),
            },
            instance=instance,
            tags={**run.tags(), **(tags or {})},
            raise_on_error=False,
        )
    job = defs.resolve_job_def(run.job_name).get_subset(
        asset_selection={dg.AssetKey(a) for a in run.assets}, asset_check_selection=set()
    )
    return job.execute_in_process(
        run_config=quiet_run_config(console_level),
        instance=instance,
        tags={**run.tags(), **(tags or {})},
        raise_on_error=False,
    )


def run_error(result: dg.ExecuteInProcessResult | dg.ExecutionResult) -> str:
    """What made a failed run fail: its first failed step and the root cause's first line."""
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            error = event.step_failure_data.error
            while error.cause is not None:  # Dagster's wrapper first; the cause says what went wrong
                error = error.cause
            lines = error.message.strip().splitlines() or [error.cls_name or "error"]
            return f"step {event.step_key}: {lines[0]}"
    return "see the run's logs in the Dagster UI"


def run_label(run: PlannedRun) -> str:
    return f"{run.describe()} [{', '.join(run.assets)}]"


def partition_count(run: PlannedRun, calendar: str) -> int:
    """Asset partitions one run covers (`PlannedRun.partition_count`)."""
    return run.partition_count(calendar)


def plan_partitions(plan: Plan, calendar: str) -> int:
    """Asset partitions the plan's runs cover (its chunk runs cover the same)."""
    return sum(partition_count(run, calendar) for run in plan.runs)


# ------------------------------------------------------------------------------------------ executors
@dataclass
class Executed:
    """What an executor did with a plan."""

    partitions: int
    failures: list[str]
    runs: int  # planned runs (chunk runs for `processes` and `celery`), those not run included
    run_ids: list[str]


class PlanExecutor(Protocol):
    """The one signature of the local, processes and celery executors. `workers`: the processes of
    `processes`, the chunks per rectangle of `celery`; `local` runs one run at a time."""

    def __call__(
        self,
        plan: Plan,
        *,
        instance: dg.DagsterInstance,
        workers: int,
        calendar: str,
        progress: ProgressLike,
    ) -> Executed: ...


# ------------------------------------------------------------------------------------ waves of chunks
@dataclass(frozen=True)
class ChunkOutcome:
    run: PlannedRun
    run_id: str | None
    success: bool
    seconds: float
    error: str | None = None


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
            count = partition_count(outcome.run, calendar)
            state = "ok" if outcome.success else "FAILED"
            report.finished(
                count,
                f"[wave {number}/{len(planned)}] {run_label(outcome.run)}: {count} partitions, "
                f"{outcome.seconds:.1f} s, {state}",
            )
        done = [future.result() for future in futures]
        for outcome in done:
            if outcome.success:
                partitions += partition_count(outcome.run, calendar)
            else:
                failed.append(f"run {outcome.run_id} ({outcome.run.describe()}) failed: {outcome.error}")
        outcomes += done
    return partitions, failed, outcomes


def executed_waves(
    planned: list[list[PlannedRun]], partitions: int, failed: list[str], outcomes: list[ChunkOutcome]
) -> Executed:
    """`run_chunk_waves`' outcome as an executor's: every planned chunk run counts, run or not."""
    return Executed(partitions, failed, sum(len(wave) for wave in planned), [o.run_id for o in outcomes if o.run_id])


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
