"""Dagster instances for the definitions' tests: a real one on the machine's Postgres, and Dagster's SQLite one.

What a module builds once (a materialized book, a first night) and its tests only read is built in a
module-scoped fixture with `own_database` and `postgres_instance_at`; a test that changes it works on
`copy_of` it (the SQLite file copied; on Postgres CREATE DATABASE ... TEMPLATE, for the analytics
database and for the Dagster instance's).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import dagster as dg
import pytest

from factor_platform.domain import sessions
from factor_platform.storage import Database
from factor_platform_tests.conftest import _admin_engine, _fresh_postgres_database

# A short, fixed span keeps the suite fast; one full 90-return window plus a few target sessions.
TEST_END = dt.date(2025, 6, 30)
TEST_START = sessions.sessions_before(TEST_END, 9)


def db_url(db: Database) -> str:
    return db.engine.url.render_as_string(hide_password=False)


@pytest.fixture
def analytics(database, monkeypatch) -> Database:
    """The `database` fixture (SQLite and Postgres) wired into the assets through the env vars."""
    monkeypatch.setenv("FACTOR_PLATFORM_DB_URL", db_url(database))
    monkeypatch.setenv("FACTOR_PLATFORM_PRICE_SOURCE", "sample")
    return database


@pytest.fixture
def sqlite_instance(tmp_path):
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        yield instance


def _instance_for(url: str, home, extra: str = "") -> dg.DagsterInstance:
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(f'storage:\n  postgres:\n    postgres_url: "{url}"\ntelemetry:\n  enabled: false\n{extra}')
    return dg.DagsterInstance.from_config(str(home))


@pytest.fixture(scope="session")
def _dagster_template(tmp_path_factory):
    """A Postgres database with Dagster's schema migrated once; each test copies it (CREATE ... TEMPLATE)."""
    with _fresh_postgres_database(f"fp_dagster_tmpl_{uuid.uuid4().hex[:10]}") as url:
        _instance_for(url, tmp_path_factory.mktemp("template_home")).dispose()
        yield url.rsplit("/", 1)[1]


@contextmanager
def _postgres_instance(home, template: str, monkeypatch, extra: str = "", *, name: str | None = None) -> Iterator[dg.DagsterInstance]:
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")
    monkeypatch.setenv("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "true")
    with _fresh_postgres_database(name or f"fp_dagster_{uuid.uuid4().hex[:12]}", template=template) as url:
        instance = _instance_for(url, home, extra)
        try:
            yield instance
        finally:
            instance.dispose()


DIALECTS = [pytest.param("sqlite", id="sqlite"), pytest.param("postgresql", id="postgres", marks=pytest.mark.postgres)]


@contextmanager
def own_database(dialect: str, folder: Path) -> Iterator[Database]:
    """An initialized analytics database outside the `database` fixture: a SQLite file in `folder`, or
    a Postgres database of its own (dropped at the end); `dialect` one of DIALECTS."""
    if dialect == "sqlite":
        db = Database(f"sqlite:///{folder / 'factor_platform.db'}")
        db.init_schema()
        try:
            yield db
        finally:
            db.dispose()
        return
    with _fresh_postgres_database(f"fp_built_{uuid.uuid4().hex[:12]}") as url:
        db = Database(url)
        db.init_schema()
        try:
            yield db
        finally:
            db.dispose()


@contextmanager
def copy_of(db: Database, folder: Path) -> Iterator[Database]:
    """A copy of `db`, for one test to change: its SQLite file copied into `folder`, or a Postgres
    database created from it as a template."""
    db.dispose()  # a template is copied with no connection open on it
    if db.dialect == "sqlite":
        target = folder / f"copy_{uuid.uuid4().hex[:8]}.db"
        # SQLite's backup API, not a file copy: committed pages still in the -wal file come along
        with closing(sqlite3.connect(db.url.database)) as source, closing(sqlite3.connect(target)) as copied:
            source.backup(copied)
        copy = Database(f"sqlite:///{target}")
        try:
            yield copy
        finally:
            copy.dispose()
        return
    _end_sessions_on(db.url.database)
    with _fresh_postgres_database(f"fp_copy_{uuid.uuid4().hex[:12]}", template=db.url.database) as url:
        copy = Database(url)
        try:
            yield copy
        finally:
            copy.dispose()


def _end_sessions_on(name: str) -> None:
    """End the sessions still open on database `name`: the resources' cached engines (defs/resources.py)
    keep one; they reconnect when used again (pool_pre_ping)."""
    admin = _admin_engine()
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,))
    finally:
        admin.dispose()


@contextmanager
def postgres_instance_at(home, template: str, monkeypatch) -> Iterator[tuple[dg.DagsterInstance, str]]:
    """A Dagster instance on a new Postgres database copied from `template` (a database name), and the
    name of its database: once the instance is disposed, a template for `copy_of`-like copies."""
    name = f"fp_dagster_{uuid.uuid4().hex[:12]}"
    with _postgres_instance(home, template, monkeypatch, name=name) as instance:
        yield instance, name


@pytest.fixture
def postgres_instance(tmp_path, monkeypatch, _dagster_template):
    """A Dagster instance whose run, event-log and schedule storage is a fresh Postgres database."""
    with _postgres_instance(tmp_path / "dagster_home", _dagster_template, monkeypatch) as instance:
        yield instance


@pytest.fixture
def pooled_postgres_instance(tmp_path, monkeypatch, _dagster_template):
    """The same with the platform's pool limits (instance.py): a step of pool `market_data` claims a slot."""
    extra = "concurrency:\n  pools:\n    default_limit: 2\n"
    with _postgres_instance(tmp_path / "dagster_home", _dagster_template, monkeypatch, extra) as instance:
        yield instance
