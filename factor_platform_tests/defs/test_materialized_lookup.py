"""`planning.state.materialized`: which wanted partitions Dagster has a materialization of.

Whole sessions are read as ranges of Dagster's event-log index through its table definition, the rest
key by key through Dagster's API. Both must give what Dagster reports -- on SQLite, on Postgres, and on
a Postgres database whose collation does not sort bytewise (ICU en-US: punctuation is weighed apart
from letters and digits), where a range over "YYYY-MM-DD|key" strings could lose keys.
"""

from __future__ import annotations

import datetime as dt
import uuid
from contextlib import contextmanager

import dagster as dg
import pytest

from factor_platform.planning import state
from factor_platform_tests.conftest import _admin_engine
from factor_platform_tests.defs.conftest import _instance_for

SESSIONS = [dt.date(2025, 6, d) for d in (23, 24, 25, 26, 27, 30)]
# symbols that sort differently by byte and by ICU: punctuation, digits, case, an OCC contract
SYMBOLS = ["A", "BF-B", "BRK.B", "BRK-A", "a1", "ZZ9", "^GSPC", "ZAVL271010C00135000", "Z_Z", "AA"]


def _key(day: dt.date, symbol: str) -> str:
    return f"{day.isoformat()}|{symbol}"


@contextmanager
def _icu_instance(home):
    """A Dagster instance on a Postgres database with an ICU en-US collation."""
    admin = _admin_engine()
    name = f"fp_icu_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(
            f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
        )
    try:
        instance = _instance_for(admin.url.set(database=name).render_as_string(hide_password=False), home)
        try:
            yield instance
        finally:
            instance.dispose()
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def instance(request):
    yield request.getfixturevalue(f"{request.param}_instance")


def _record(instance: dg.DagsterInstance, asset: str, keys) -> None:
    for key in keys:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=asset, partition=key))


def _world(instance: dg.DagsterInstance) -> set[str]:
    """Materializes about two thirds of SESSIONS x SYMBOLS for "prices", and decoys: the same keys
    of another asset, observations (not materializations) and the sessions just outside."""
    done = {_key(d, s) for i, d in enumerate(SESSIONS) for j, s in enumerate(SYMBOLS) if (i + j) % 3}
    _record(instance, "prices", sorted(done))
    _record(instance, "prices", [_key(d, s) for d in (dt.date(2025, 6, 20), dt.date(2025, 7, 1)) for s in SYMBOLS])
    _record(instance, "symbol_metrics", [_key(d, s) for d in SESSIONS for s in SYMBOLS])
    for key in [_key(d, "NEVER") for d in SESSIONS]:
        instance.report_runless_asset_event(dg.AssetObservation(asset_key="prices", partition=key))
    return done


def _check(instance: dg.DagsterInstance, done: set[str], monkeypatch) -> None:
    monkeypatch.setattr(state, "_RANGE_MIN_KEYS", 4)  # whole sessions at this size
    monkeypatch.setattr(state, "_KEYS_PER_QUERY", 7)  # and several IN lists for the rest
    # sessions 2-4 whole (a range of three), 1 and 6 sparse, 5 not wanted; never-seen keys too
    wanted = [_key(d, s) for d in SESSIONS[1:4] for s in [*SYMBOLS, "NEVER"]]
    wanted += [_key(SESSIONS[0], s) for s in SYMBOLS[:3]] + [_key(SESSIONS[5], s) for s in SYMBOLS[-2:]]
    found = state.materialized(instance, "prices", wanted)
    assert found == done & set(wanted)
    # by the API alone, key by key
    assert found == {k for k in wanted if state.materialized(instance, "prices", [k])}
    # a session with no key wanted between two whole ones is read, and left out
    gap = [_key(d, s) for d in (SESSIONS[1], SESSIONS[3]) for s in SYMBOLS]
    assert state.materialized(instance, "prices", gap) == done & set(gap)
    # plain keys (the symbol-partitioned assets) go through the API
    _record(instance, "company_profiles", ["BRK.B", "A"])
    assert state.materialized(instance, "company_profiles", ["A", "B", "BRK.B", "Z"]) == {"A", "BRK.B"}


def test_materialized_is_what_dagster_recorded(instance, monkeypatch):
    _check(instance, _world(instance), monkeypatch)


@pytest.mark.postgres
def test_materialized_under_a_non_bytewise_collation(tmp_path, monkeypatch):
    with _icu_instance(tmp_path / "home") as instance:
        with instance.event_log_storage.index_connection() as conn:
            collation = conn.exec_driver_sql(
                "SELECT datlocprovider FROM pg_database WHERE datname = current_database()"
            ).scalar()
        assert collation == "i"
        _check(instance, _world(instance), monkeypatch)
