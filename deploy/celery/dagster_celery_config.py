"""Celery settings of the factor_platform workers, read by `dagster_celery.app` from PYTHONPATH.

`celery -A dagster_celery.app worker` imports a module named `dagster_celery_config` when one is
importable and applies its names over dagster-celery's defaults. This one takes the broker, the
result backend and the queue from the same environment variables as the process that launches
the runs (factor_platform.running.celery_workers.CeleryConfig), so no URL — nor its password — is written to disk.
"""

import os

broker_url = os.environ.get("FACTOR_PLATFORM_CELERY_BROKER") or "redis://127.0.0.1:6379/0"
result_backend = os.environ.get("FACTOR_PLATFORM_CELERY_BACKEND") or broker_url
task_default_queue = os.environ.get("FACTOR_PLATFORM_CELERY_QUEUE") or "dagster"
result_expires = 3600  # a step's result (its events) is read by its run within seconds
worker_prefetch_multiplier = 1  # a worker holds one step at a time: an idle worker takes the next
# Loads the definitions in the worker's main process before it forks its pool (celery's worker_init).
imports = ["factor_platform.running.celery_workers"]
