"""Dagster's Postgres storage for the tests' instances, holding its connections the way dagster-webserver does.

`dagster_postgres` opens a new connection for every statement (SQLAlchemy's NullPool, so that no idle
connection stays behind a DagsterInstance); dagster-webserver calls `optimize_for_webserver` to keep one open
per store instead. A materialize makes ~110 connections per run, ~4 ms each on this machine: about 40 % of an
end-to-end test's time. The tests' dagster.yaml (defs/conftest.py) names this class, so that every process
reading that DAGSTER_HOME -- a test, `factor-platform` in-process or in a subprocess, the runs it spawns --
uses Dagster's own storage classes in the webserver's connection mode. Nothing else differs.
"""

from __future__ import annotations

from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.utils import pg_url_from_config

# dagster-webserver's defaults (--db-pool-recycle, --db-pool-max-overflow), and no statement timeout (0).
POOL_RECYCLE_S = 3600
MAX_OVERFLOW = 20


class PooledPostgresStorage(DagsterPostgresStorage):
    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True, inst_data=None):
        super().__init__(postgres_url, should_autocreate_tables, inst_data=inst_data)
        for storage in (self._run_storage, self._event_log_storage, self._schedule_storage):
            storage.optimize_for_webserver(statement_timeout=0, pool_recycle=POOL_RECYCLE_S, max_overflow=MAX_OVERFLOW)

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> PooledPostgresStorage:
        return cls(
            pg_url_from_config(config_value),
            config_value.get("should_autocreate_tables", True),
            inst_data=inst_data,
        )


def instance_yaml(url: str) -> str:
    """The `storage:` section of a dagster.yaml on Postgres database `url`, with this class."""
    return (
        "storage:\n  custom:\n    module: factor_platform_tests.dagster_storage\n"
        f'    class: PooledPostgresStorage\n    config:\n      postgres_url: "{url}"\n'
    )
