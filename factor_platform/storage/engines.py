"""Engines for the two databases: Postgres through psycopg2 only, SQLite in WAL mode with
transactions begun by us (writers take the write lock up front)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection

SQLITE_BUSY_TIMEOUT_S = 60.0
WRITE_OPTION = "factor_platform_write"  # execution option: SQLite transaction takes the write lock up front


def create_engine(url: sa.URL) -> sa.Engine:
    """The engine of ``url`` (``sqlite:///…`` or ``postgresql+psycopg2://…``); ValueError for anything else."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url)
    if backend == "postgresql":
        if url.get_driver_name() != "psycopg2":
            raise ValueError(f"Postgres needs the psycopg2 driver (postgresql+psycopg2://…), got {url.drivername!r}")
        return sa.create_engine(url, pool_pre_ping=True, client_encoding="utf8")
    raise ValueError(f"unsupported database {url.drivername!r}: use sqlite:/// or postgresql+psycopg2://")


def _sqlite_engine(url: sa.URL) -> sa.Engine:
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # Transactions are begun explicitly below (pysqlite's implicit BEGIN is too late and too
        # lenient for concurrent writers).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front (waiting up to busy_timeout) instead of failing with
        # SQLITE_BUSY when a deferred read transaction tries to upgrade; readers stay deferred.
        mode = "IMMEDIATE" if conn.get_execution_options().get(WRITE_OPTION) else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine
