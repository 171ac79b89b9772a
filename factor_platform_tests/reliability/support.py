"""What the reliability tests share: the ledger they report into, row dumps, and Postgres scratch databases.

The ledger is one object for the whole test session; ``conftest.pytest_terminal_summary`` prints it,
so a run says how much was tried and that nothing was lost, not just that nothing failed.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from factor_platform.storage import schema
from factor_platform_tests.conftest import PG_ADMIN_URL

# Columns that legitimately differ between two correct runs: wall-clock stamps of when a row was written.
VOLATILE_COLUMNS = {
    "company_profiles": {"updated_at"},
    "portfolios": {"created_at"},
    "symbol_failures": {"first_seen", "last_seen"},
    "stale_partitions": {"recorded_at"},
    "price_rebasings": {"recorded_at"},
}
TABLES = list(schema.DATA_TABLES)


@dataclass
class Ledger:
    """Counters the tests increment; printed once at the end of the session (the root conftest: with
    xdist, each worker's counts are added up in the controller)."""

    faults: Counter = field(default_factory=Counter)  # kind -> how many injected
    bad_inputs: int = 0
    rows_compared: int = 0
    rows_lost: int = 0
    rows_extra: int = 0
    rows_changed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def fault(self, kind: str, n: int = 1) -> None:
        with self._lock:
            self.faults[kind] += n

    def bad_input(self, n: int = 1) -> None:
        with self._lock:
            self.bad_inputs += n

    def compared(self, diff: TableDiff) -> None:
        with self._lock:
            self.rows_compared += diff.rows
            self.rows_lost += diff.lost
            self.rows_extra += diff.extra
            self.rows_changed += diff.changed

    _COUNTS = ("bad_inputs", "rows_compared", "rows_lost", "rows_extra", "rows_changed")

    def state(self) -> dict:
        """The counts as plain data: an xdist worker hands them to the controller, which prints the line."""
        with self._lock:
            return {"faults": dict(self.faults), **{name: getattr(self, name) for name in self._COUNTS}}

    def add(self, state: dict) -> None:
        """Add the counts of another process (`state()` of a worker's ledger)."""
        with self._lock:
            self.faults.update(state["faults"])
            for name in self._COUNTS:
                setattr(self, name, getattr(self, name) + state[name])

    @property
    def used(self) -> bool:
        return bool(self.faults or self.bad_inputs or self.rows_compared)

    def summary(self) -> str:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.faults.items()))
        damaged = self.rows_lost + self.rows_extra
        return (
            f"reliability: {sum(self.faults.values())} faults injected ({kinds or 'none'}), "
            f"{self.bad_inputs} bad inputs tried, {self.rows_compared:,} rows compared, "
            f"{damaged} rows lost or duplicated, {self.rows_changed} rows changed"
        )


LEDGER = Ledger()


# ---------------------------------------------------------------------------------- row dumps
def _normal(value):
    """One canonical Python value per cell, the same on SQLite and Postgres."""
    if isinstance(value, float):
        return None if math.isnan(value) else value + 0.0  # -0.0 == 0.0 already; NaN is never stored
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def dump(url: str, tables: list[str] | None = None, *, volatile: bool = False) -> dict[str, list[tuple]]:
    """Every row of every table, sorted, as tuples of canonical values (``volatile`` columns kept or dropped)."""
    engine = sa.create_engine(url, poolclass=NullPool)
    out: dict[str, list[tuple]] = {}
    try:
        with engine.connect() as conn:
            for name in tables or TABLES:
                table = schema.DATA_TABLES[name]
                skip = set() if volatile else VOLATILE_COLUMNS.get(name, set())
                columns = [c for c in table.columns if c.name not in skip]
                rows = conn.execute(sa.select(*columns)).fetchall()
                out[name] = sorted((tuple(_normal(v) for v in row) for row in rows), key=repr)
    finally:
        engine.dispose()
    return out


def dump_text(url: str) -> bytes:
    """The byte image of a whole database: every table, every column (timestamps included), row by row."""
    tables = dump(url, volatile=True)
    lines = [f"{name}\t{row!r}" for name, rows in tables.items() for row in rows]
    return "\n".join(lines).encode("utf-8")


@dataclass
class TableDiff:
    table: str
    rows: int
    lost: int
    extra: int
    changed: int
    examples: list[str]

    @property
    def ok(self) -> bool:
        return not (self.lost or self.extra or self.changed)


# Two correct runs may compute a window over differently shaped rectangles (one run over
# 2024-01-02..12, or two over overlapping halves); floating-point sums then differ in the last bits
# (seen: 4e-14 relative). Anything a bug changes differs by far more.
FLOAT_RTOL, FLOAT_ATOL = 1e-10, 1e-12


def _same_value(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=FLOAT_RTOL, abs_tol=FLOAT_ATOL)
    return a == b and type(a) is type(b)


def _same_row(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))


def compare(
    reference: dict[str, list[tuple]], actual: dict[str, list[tuple]], *, ledger: Ledger = LEDGER
) -> list[TableDiff]:
    """Row-by-row comparison by primary key: rows missing, rows extra, and rows whose values differ."""
    diffs = []
    for name, ref_rows in reference.items():
        table = schema.DATA_TABLES[name]
        skip = VOLATILE_COLUMNS.get(name, set())
        names = [c.name for c in table.columns if c.name not in skip]
        key_at = [names.index(c.name) for c in table.primary_key.columns if c.name in names]
        got_rows = actual.get(name, [])

        def by_key(rows):
            keyed: dict[tuple, list[tuple]] = {}
            for row in rows:
                keyed.setdefault(tuple(row[i] for i in key_at), []).append(row)
            return keyed

        ref, got = by_key(ref_rows), by_key(got_rows)
        lost = [k for k in ref if k not in got]
        extra = [k for k in got if k not in ref] + [k for k, rows in got.items() if len(rows) > 1]
        changed = [k for k in ref if k in got and not _same_row(ref[k][0], got[k][0])]
        examples = [f"lost {k}" for k in lost[:3]] + [f"extra {k}" for k in extra[:3]]
        for k in changed[:3]:
            a, b = ref[k][0], got[k][0]
            cols = [f"{n}: {x!r} != {y!r}" for n, x, y in zip(names, a, b) if not _same_value(x, y)]
            examples.append(f"changed {k}: {', '.join(cols)}")
        diff = TableDiff(name, len(ref_rows), len(lost), len(extra), len(changed), examples)
        ledger.compared(diff)
        diffs.append(diff)
    return diffs


def assert_same_tables(
    reference: dict[str, list[tuple]],
    actual: dict[str, list[tuple]],
    what: str,
    *,
    may_be_empty: tuple[str, ...] = ("symbol_failures", "stale_partitions", "price_rebasings", "history_spans"),
    ledger: Ledger = LEDGER,
) -> None:
    """Row by row, every table; the reference must hold rows in every table (two empty databases are not 'identical')."""
    empty = [name for name, rows in reference.items() if not rows and name not in may_be_empty]
    assert not empty, f"the reference run left tables empty: {empty}"
    diffs = compare(reference, actual, ledger=ledger)
    bad = [d for d in diffs if not d.ok]
    assert not bad, f"{what}: tables differ from the clean reference run:\n" + "\n".join(
        f"  {d.table}: {d.lost} lost, {d.extra} extra, {d.changed} changed of {d.rows}; " + "; ".join(d.examples)
        for d in bad
    )


# ---------------------------------------------------------------------------------- Postgres
_admin_lock = threading.Lock()


def admin_engine() -> sa.Engine:
    return sa.create_engine(
        PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool, connect_args={"connect_timeout": 5}
    )


def create_database(prefix: str, template: str | None = None) -> str:
    """A fresh database on the machine's Postgres (optionally a copy of ``template``); returns its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    engine = admin_engine()
    quote = engine.dialect.identifier_preparer.quote
    try:
        with _admin_lock, engine.connect() as conn:  # copies of one template must not overlap
            suffix = f" TEMPLATE {quote(template)}" if template else ""
            conn.exec_driver_sql(f"CREATE DATABASE {quote(name)}{suffix}")
        return engine.url.set(database=name).render_as_string(hide_password=False)
    finally:
        engine.dispose()


def drop_database(url: str) -> None:
    name = sa.make_url(url).database
    engine = admin_engine()
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(
                f"DROP DATABASE IF EXISTS {engine.dialect.identifier_preparer.quote(name)} WITH (FORCE)"
            )
    finally:
        engine.dispose()


# Dagster's bookkeeping in these throwaway instances need not wait for the shared server's fsync: with
# synchronous_commit off a crash of the *server* could lose its last commits, and no test crashes the
# server that holds them (the restarted one holds only analytics tables, written with full durability).
_NO_FSYNC_WAIT = "options=-c%20synchronous_commit%3Doff"


def write_dagster_yaml(home: Path, storage_url: str | None) -> Path:
    """A DAGSTER_HOME whose instance stores runs and events in ``storage_url`` (Dagster's SQLite when None)."""
    home.mkdir(parents=True, exist_ok=True)
    if storage_url:
        storage_url += ("&" if "?" in storage_url else "?") + _NO_FSYNC_WAIT
    storage = f'storage:\n  postgres:\n    postgres_url: "{storage_url}"\n' if storage_url else ""
    (home / "dagster.yaml").write_text(f"{storage}telemetry:\n  enabled: false\n")
    return home
