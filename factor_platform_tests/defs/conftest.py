"""Dagster instances for the definitions' tests: a real one on the machine's Postgres, and Dagster's SQLite one.

What several tests of a module start from (a materialized book, a first night) is built once per module
and dialect (`build_once`): a test that only reads it reads the Snapshot, a test that goes on from it
works on its own copy (`copy_of_build`: the SQLite file copied; on Postgres CREATE DATABASE ... TEMPLATE,
for the analytics database and for the Dagster instance's). A key made with `fingerprint` names a build
by the bytes it reads. The Postgres instances' dagster.yaml names Dagster's Postgres storage holding its
connections as dagster-webserver does (factor_platform_tests/dagster_storage.py: ~40 % of a materialize's time
is otherwise opening connections).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from factor_platform.domain import sessions
from factor_platform.storage import Database
from factor_platform_tests.conftest import _admin_engine, _fresh_postgres_database
from factor_platform_tests.dagster_storage import instance_yaml

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


@pytest.fixture(scope="session")
def _sqlite_instance_template(tmp_path_factory) -> Path:
    """A folder with Dagster's SQLite storage created (its schema migrated: ~1.5 s), once; each test copies it."""
    folder = tmp_path_factory.mktemp("sqlite_instance_template")
    with dg.instance_for_test(temp_dir=str(folder)):
        pass
    return folder


@pytest.fixture
def sqlite_instance(tmp_path, _sqlite_instance_template):
    """Dagster's SQLite instance (`instance_for_test`) in a copy of the template folder (~0.1 s)."""
    shutil.copytree(_sqlite_instance_template, tmp_path / "dagster")
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        yield instance


def _instance_for(url: str, home, extra: str = "") -> dg.DagsterInstance:
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(f"{instance_yaml(url)}telemetry:\n  enabled: false\n{extra}")
    return dg.DagsterInstance.from_config(str(home))


@pytest.fixture(scope="session")
def _dagster_template(tmp_path_factory):
    """A Postgres database with Dagster's schema migrated once; each test copies it (CREATE ... TEMPLATE)."""
    with _fresh_postgres_database(f"fp_dagster_tmpl_{uuid.uuid4().hex[:10]}") as url:
        name = url.rsplit("/", 1)[1]
        _instance_for(url, tmp_path_factory.mktemp("template_home")).dispose()
        _end_sessions_on(name)  # the pooled connections (dagster_storage.py): a template is copied with none open
        yield name


def _instance_environment(monkeypatch) -> None:
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")
    monkeypatch.setenv("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "true")


@contextmanager
def _postgres_instance(home, template: str, monkeypatch, extra: str = "") -> Iterator[dg.DagsterInstance]:
    _instance_environment(monkeypatch)
    with _fresh_postgres_database(f"fp_dagster_{uuid.uuid4().hex[:12]}", template=template) as url:
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
                (name,),
            )
    finally:
        admin.dispose()


def fingerprint(*paths: Path, extra: object = ()) -> str:
    """The bytes a build reads: each of `paths` (by name, in order) with its companions (`vendor.csv`:
    `vendor.actions.csv`, `vendor.profiles.csv`), and `extra` (its range ...) -- equal fingerprints, equal
    builds. Directories stay out, as they do of what the CSV source records."""
    digest = hashlib.sha256(repr(extra).encode())
    for path in paths:
        stem = path.name.removesuffix(".csv")
        for file in sorted(p for p in path.parent.iterdir() if p == path or p.name.startswith(stem + ".")):
            digest.update(b"\0" + file.name.encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def csv_paths(source: str) -> list[Path]:
    """The exports of a FACTOR_PLATFORM_PRICE_SOURCE of CSV files (`csv:a.csv,csv:b.csv`), in order."""
    return [Path(spec.split(":", 1)[1]) for spec in source.split(",")]


@dataclass
class Snapshot:
    """What a build left: its analytics database (read, or copied from; never written again), the name
    of its Dagster instance's database (the instance disposed: a template), and what the build returned."""

    db: Database
    dagster_database: str
    value: Any = None


Build = Callable[[Database, dg.DagsterInstance, pytest.MonkeyPatch, Path], Any]


@pytest.fixture(scope="module")
def build_once(tmp_path_factory, _dagster_template) -> Iterator[Callable[[str, str, Build], Snapshot]]:
    """`build_once(key, dialect, build)`: `build(db, instance, env, folder)` run the first time a test of the
    module asks for `key` on `dialect` (one of DIALECTS), into an analytics database and a Dagster instance
    of its own, FACTOR_PLATFORM_DB_URL and DAGSTER_HOME set to them (`env`: a MonkeyPatch undone after the
    build; `folder`: its own); the Snapshot it left, then and on every later call."""
    snapshots: dict[tuple[str, str], Snapshot] = {}
    with ExitStack() as stack:

        def once(key: str, dialect: str, build: Build) -> Snapshot:
            if (key, dialect) not in snapshots:
                folder = tmp_path_factory.mktemp("build_once")
                db = stack.enter_context(own_database(dialect, folder))
                name = f"fp_dagster_{uuid.uuid4().hex[:12]}"
                url = stack.enter_context(_fresh_postgres_database(name, template=_dagster_template))
                with pytest.MonkeyPatch.context() as env:
                    _instance_environment(env)
                    instance = _instance_for(url, folder / "dagster_home")
                    env.setenv("FACTOR_PLATFORM_DB_URL", db_url(db))
                    env.setenv("DAGSTER_HOME", instance.root_directory)
                    try:
                        value = build(db, instance, env, folder)
                    finally:
                        instance.dispose()
                        _end_sessions_on(name)
                db.dispose()
                snapshots[(key, dialect)] = Snapshot(db, name, value)
            return snapshots[(key, dialect)]

        yield once


@pytest.fixture
def copy_of_build(
    build_once, tmp_path, monkeypatch
) -> Iterator[Callable[[str, str, Build], tuple[Database, dg.DagsterInstance]]]:
    """`copy_of_build(key, dialect, build)`: this test's own copy of `build_once(key, dialect, build)` --
    the analytics database and the Dagster instance, FACTOR_PLATFORM_DB_URL and DAGSTER_HOME set to them."""
    with ExitStack() as stack:

        def copy(key: str, dialect: str, build: Build) -> tuple[Database, dg.DagsterInstance]:
            snapshot = build_once(key, dialect, build)
            db = stack.enter_context(copy_of(snapshot.db, tmp_path))
            home = tmp_path / f"dagster_home_{uuid.uuid4().hex[:6]}"
            instance = stack.enter_context(_postgres_instance(home, snapshot.dagster_database, monkeypatch))
            monkeypatch.setenv("FACTOR_PLATFORM_DB_URL", db_url(db))
            monkeypatch.setenv("DAGSTER_HOME", instance.root_directory)
            return db, instance

        yield copy


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
