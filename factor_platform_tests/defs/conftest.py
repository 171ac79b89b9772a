"""Dagster instances for the definitions' tests: a real one on the machine's Postgres, and Dagster's SQLite one."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import pytest

from factor_platform.domain import sessions
from factor_platform.storage import Database
from factor_platform_tests.conftest import _fresh_postgres_database

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
def _postgres_instance(home, template: str, monkeypatch, extra: str = "") -> Iterator[dg.DagsterInstance]:
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")
    monkeypatch.setenv("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "true")
    with _fresh_postgres_database(f"fp_dagster_{uuid.uuid4().hex[:12]}", template=template) as url:
        instance = _instance_for(url, home, extra)
        try:
            yield instance
        finally:
            instance.dispose()


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
