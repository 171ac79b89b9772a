"""Scale-out on Dagster's Celery executor: the plan's runs, cut into symbol chunks, run by dagster-celery workers.

The unit of parallelism is a *chunk*: one of the planner's rectangles (contiguous sessions x
contiguous symbols) cut into up to `workers` rectangles of contiguous symbols. Each chunk is one
Dagster run of a `*_celery_job` (the layer's asset job on `dagster_celery.celery_executor`), so
Dagster records every asset partition's materialization as usual; each step of the run (one per op:
prices, the symbol analytics -- exposures and metrics from one read --, the portfolio tables) is a
Celery task that whichever worker is free takes from the broker. The chunk runs of a wave start together, so N workers compute N chunks at once.

Waves keep the layers' order across runs (inside a run Dagster orders the steps itself):
1. `prices` chunks, and the reference data (profiles, fundamentals), which reads no prices;
2. `symbol_factor_exposures` and `symbol_metrics` chunks: a chunk's betas read the factor ETFs'
   prices, which another chunk of wave 1 wrote (the planner's `first_asset_alone` rule, across chunks);
3. the portfolio layer, chunked by portfolio.
A wave with a failed run stops the later ones (listed as not run; the next materialize plans them).

`defs` is the code location the workers reconstruct the jobs from (`factor_platform.running.celery_workers:defs`):
the project's definitions plus the Celery twins of the layer jobs (`layers.names.LAYERS`). `dagster_celery`
is imported only when the jobs are built, so the project's own code location never needs it. The
deployment — Postgres storage, broker, workers — is docs/scale-out.md and deploy/celery/.

`execute_plan_on_celery` has the signature of every executor (`running.runs.PlanExecutor`, plus
`celery`: where the workers listen); `materialize(executor="celery")` imports this module when it runs.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from factor_platform import settings
from factor_platform.layers.names import HISTORY_JOB, LAYER_TAG, LAYERS
from factor_platform.planning.plan import Plan, PlannedRun
from factor_platform.planning.waves import waves
from factor_platform.running.progress import ProgressLike
from factor_platform.running.runs import (
    QUIET_RUN_CONFIG,
    ChunkOutcome,
    Executed,
    execute_run,
    executed_waves,
    load_definitions,
    prepare_concurrent_runs,
    run_chunk_waves,
    run_error,
    run_label,
)

if TYPE_CHECKING:
    from dagster._core.definitions.reconstruct import ReconstructableJob
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

# The layer job -> its Celery twin (same assets and tags, another executor): symbol_layer_celery_job, ...
CELERY_JOBS = {layer.job: layer.job.removesuffix("_job") + "_celery_job" for layer in LAYERS}
CODE_LOCATION_MODULE = "factor_platform.running.celery_workers"
BROKER_ENV, BACKEND_ENV, QUEUE_ENV = settings.CELERY_BROKER_ENV, settings.CELERY_BACKEND_ENV, settings.CELERY_QUEUE_ENV
DEFAULT_BROKER = "redis://127.0.0.1:6379/0"
DEFAULT_QUEUE = "dagster"
DEFAULT_CHUNKS = 4
RESULT_EXPIRES_S = 3600  # a step's result (its events) is read by its run within seconds; Redis forgets it after
MAX_CONCURRENT_RUNS = 8  # local processes orchestrating a wave's runs; each mostly waits on the broker
WORKER_KEY = "Celery worker"  # metadata key of dagster-celery's "Executing steps ... in celery worker" event


# ------------------------------------------------------------------------------------------ config
@dataclass(frozen=True)
class CeleryConfig:
    """Where the workers listen: broker, result backend and queue.

    `from_env()`: FACTOR_PLATFORM_CELERY_BROKER (default redis://127.0.0.1:6379/0),
    FACTOR_PLATFORM_CELERY_BACKEND (default: the broker), FACTOR_PLATFORM_CELERY_QUEUE (default
    `dagster`). Run configs name the two URLs by environment variable only — Dagster stores and
    shows run configs, and a URL may carry a password — and so do the workers' settings
    (deploy/celery/dagster_celery_config.py): the workers and the process that launches the runs
    need the same variables set.
    """

    broker: str = DEFAULT_BROKER
    backend: str | None = None
    queue: str = DEFAULT_QUEUE

    @classmethod
    def from_env(cls) -> CeleryConfig:
        return cls(
            broker=settings.get(BROKER_ENV) or DEFAULT_BROKER,
            backend=settings.get(BACKEND_ENV),
            queue=settings.get(QUEUE_ENV) or DEFAULT_QUEUE,
        )

    def environment(self) -> dict[str, str]:
        return {BROKER_ENV: self.broker, BACKEND_ENV: self.backend or self.broker, QUEUE_ENV: self.queue}

    def executor_config(self) -> dict:
        """The `execution.config` block of a celery job's run config."""
        return {
            "broker": {"env": BROKER_ENV},
            "backend": {"env": BACKEND_ENV},
            "config_source": {"task_default_queue": self.queue, "result_expires": RESULT_EXPIRES_S},
        }

    def run_config(self) -> dict:
        return {**QUIET_RUN_CONFIG, "execution": {"config": self.executor_config()}}


def listening_workers(celery: CeleryConfig, *, timeout: float = 1.0) -> list[str]:
    """Node names (`name@host`) of the workers consuming `celery.queue`, by a broadcast over the broker."""
    from celery import Celery

    app = Celery("factor_platform", broker=celery.broker)
    app.conf.broker_transport_options = {"max_retries": 0}  # a broker that is down says so at once
    try:
        replies = app.control.inspect(timeout=timeout).active_queues() or {}
    finally:
        app.close()
    return sorted(node for node, queues in replies.items() if any(q.get("name") == celery.queue for q in queues))


# ---------------------------------------------------------------------------------- definitions
def celery_jobs() -> list[UnresolvedAssetJobDefinition]:
    """The layer jobs again, on `dagster_celery.celery_executor` (the `scale` extra)."""
    from dagster_celery import celery_executor

    # Launched from the UI, a run takes the broker from its process's environment and the default queue.
    config = {"execution": {"config": CeleryConfig().executor_config()}}
    return [
        dg.define_asset_job(
            CELERY_JOBS[layer.job],
            selection=dg.AssetSelection.assets(*layer.assets).without_checks(),
            executor_def=celery_executor,
            config=config,
            tags={LAYER_TAG: layer.tag, "factor_platform/executor": "celery"},
            description=f"{layer.job}, each step a Celery task (docs/scale-out.md)",
        )
        for layer in LAYERS
    ]


@lru_cache(maxsize=1)
def scaleout_definitions() -> dg.Definitions:
    # Cached: a worker reconstructs the job for every step it runs; the same object keeps Dagster's
    # resolved repository, so only a process's first step pays for loading it.
    return dg.Definitions.merge(load_definitions(), dg.Definitions(jobs=celery_jobs()))


@dg.definitions
def defs() -> dg.Definitions:
    """The project's code location plus the celery jobs: what the scale-out deployment loads."""
    return scaleout_definitions()


def reconstructable_job(name: str, assets: Iterable[str] = ()) -> ReconstructableJob:
    """A pointer the workers resolve by importing this module (the same code and venv on every worker).

    With `assets`: the job's subset of those assets and none of their checks — like the layer jobs,
    a run writes partitions; the checks scan whole tables and run in `asset_checks_job`.
    """
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    repo = ReconstructableRepository.for_module(
        CODE_LOCATION_MODULE, "defs", working_directory=str(Path(__file__).parents[2])
    )
    job = repo.get_reconstructable_job(name)
    keys = {dg.AssetKey(a) for a in assets}
    return job.get_subset(asset_selection=keys, asset_check_selection=set()) if keys else job


def warm_up(**_signal_kwargs) -> None:
    """Load the definitions once per process (a worker, an orchestrator), not once per step."""
    scaleout_definitions().get_repository_def()


# A worker that imports this module (deploy/celery/dagster_celery_config.py: `imports`) loads the
# definitions in its main process before it forks its pool, so no step pays for them. Outside a
# worker `worker_init` is never sent.
try:
    from celery.signals import worker_init
except ImportError:  # without the `scale` extra the module still imports
    pass
else:
    worker_init.connect(warm_up, weak=False)


# ------------------------------------------------------------------------------------ execution
def _execute_chunk(run: PlannedRun, instance_ref, run_config: dict, environment: dict[str, str]) -> ChunkOutcome:
    """One chunk as one Dagster run: this (pool) process orchestrates it, the workers execute its steps."""
    for name, value in environment.items():  # the run config names the broker by variable
        settings.export(name, value, overwrite=True)
    started = time.perf_counter()
    with dg.DagsterInstance.from_ref(instance_ref) as instance:
        if run.job_name == HISTORY_JOB:  # history is no Celery job: this process computes it (docs/scale.md)
            result = execute_run(load_definitions(), instance, run, console_level="ERROR")
            error = None if result.success else run_error(result)
            return ChunkOutcome(run, result.run_id, result.success, time.perf_counter() - started, error)
        try:
            result = dg.execute_job(
                reconstructable_job(CELERY_JOBS[run.job_name], run.assets),
                instance=instance,
                run_config=run_config,
                tags=run.tags(),
                raise_on_error=False,
            )
        except Exception as exc:  # the run could not start (bad config, storage down): a failed chunk
            return ChunkOutcome(run, None, False, time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
        error = None if result.success else run_error(result)
        return ChunkOutcome(run, result.run_id, result.success, time.perf_counter() - started, error)


def _no_consumer(celery: CeleryConfig) -> str | None:
    """Why no step could run — no broker, or no worker on the queue — or None."""
    try:
        if listening_workers(celery):
            return None
    except Exception as exc:  # Kombu's OperationalError and friends: the message names host and port, no password
        return f"the broker of {BROKER_ENV} is unreachable ({type(exc).__name__}: {exc})"
    return f"no Celery worker consumes queue {celery.queue!r} on the broker of {BROKER_ENV} (deploy/celery/README.md)"


def execute_plan_on_celery(
    plan: Plan,
    *,
    instance: dg.DagsterInstance,
    workers: int,
    calendar: str,
    progress: ProgressLike,
    celery: CeleryConfig | None = None,
) -> Executed:
    """Run the plan's chunks (`workers` per rectangle) wave by wave on the Celery workers of `celery`
    (default: the environment's, `CeleryConfig.from_env`).

    A wave's runs are orchestrated concurrently, one per process of a local pool: Dagster's run
    setup reconfigures Python logging (`logging.config.dictConfig`), which deadlocks against a run
    logging in another thread of the same process. The pool forks this process once the definitions
    are loaded (instant), unless threads run here: a fork copies the locks they hold, so then it
    spawns fresh interpreters (~10 s each, in parallel). For the same reason this process should
    hold no broker connection (a Celery app used here before). With no worker on the queue nothing
    runs: every chunk run is a failure that says why.
    """
    celery = celery or CeleryConfig.from_env()
    planned = waves(plan, workers)
    if not planned:
        return Executed(0, [], 0, [])
    # every run and every step lands in this instance's storage
    runner = partial(
        _execute_chunk,
        instance_ref=instance.get_ref(),
        run_config=celery.run_config(),
        environment=celery.environment(),
    )
    prepare_concurrent_runs(instance)
    warm_up()
    method = "fork" if threading.active_count() == 1 else "spawn"
    width = min(max(len(w) for w in planned), MAX_CONCURRENT_RUNS)
    with ProcessPoolExecutor(width, mp_context=multiprocessing.get_context(method), initializer=warm_up) as pool:
        # Asked from a child: a broker connection in this process would be inherited by the next
        # forks, and Kombu's after-fork cleanup blocks on it.
        why = pool.submit(_no_consumer, celery).result()
        if why:
            return executed_waves(
                planned, 0, [f"{run_label(run)} not run: {why}" for wave in planned for run in wave], []
            )
        return executed_waves(planned, *run_chunk_waves(planned, runner, pool, calendar=calendar, progress=progress))


# ----------------------------------------------------------------------------------- provenance
def step_workers(instance: dg.DagsterInstance, run_ids: Iterable[str]) -> dict[str, str]:
    """Step `<run_id>:<step_key>` -> node name of the Celery worker that executed it, from Dagster's event log."""
    out = {}
    for run_id in run_ids:
        for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
            event = record.dagster_event
            data = event.engine_event_data if event else None
            if data is not None and WORKER_KEY in (data.metadata or {}):
                out[f"{run_id}:{event.step_key}"] = data.metadata[WORKER_KEY].value
    return out
