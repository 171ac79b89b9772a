"""``Database``: the one door to the analytics database (SQLAlchemy Core; SQLite or Postgres).

Every table and column name that reaches SQL comes from :mod:`factor_platform.storage.schema`;
user-supplied strings are only ever values (bound parameters, or bytes of a binary COPY).

Semantics shared by the writers:

* ``upsert`` is keyed on the table's natural primary key. Columns absent from the frame are left
  untouched on update (and take their default on insert). NaN/NaT/None/pd.NA are NULL.
* Rows are written sorted by key, so overlapping concurrent runs lock in the same order.
* ``where``/``scope`` dicts: ``list`` (or set/array/Series) -> ``IN``; ``(lo, hi)`` tuple ->
  ``BETWEEN`` inclusive (``None`` = open end); ``None`` -> ``IS NULL``; any other scalar -> ``=``.
* ``conn=None`` runs in a transaction of its own; passing the connection of ``with db.begin()``
  makes the call part of that transaction.
"""

from __future__ import annotations

import datetime as dt
import io
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection

from factor_platform.storage import frames, schema

SQLITE_BUSY_TIMEOUT_S = 60.0
SQLITE_CHUNK_ROWS = 20_000
COPY_CHUNK_ROWS = 100_000
IN_CHUNK = 900  # values per IN (...) list; bigger lists are split over several statements
_WRITE = "factor_platform_write"  # execution option: SQLite transaction takes the write lock up front
_SCHEMA_LOCK_KEY = 0x66705F736368  # pg_advisory_xact_lock key serializing concurrent init_schema()
TRANSIENT_RETRIES = 5
_TRANSIENT_PGCODES = {"40P01", "40001"}  # deadlock_detected, serialization_failure

T = TypeVar("T")

Where = Mapping[str, Any] | None


def utcnow() -> dt.datetime:
    """Naive UTC now, microsecond precision (the timestamps of the schema are naive UTC)."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def split_sql_statements(text: str) -> list[str]:
    """Split a SQL script on ``;`` outside quotes and comments; comments are dropped."""
    statements, current, i, n = [], [], 0, len(text)
    has_code = False
    while i < n:
        ch = text[i]
        if ch == "-" and text.startswith("--", i):
            end = text.find("\n", i)
            end = n if end == -1 else end
            current.append(" ")
            i = end
            continue
        if ch == "/" and text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end == -1 else end + 2
            current.append(" ")
            i = end
            continue
        if ch in ("'", '"'):
            end = i + 1
            while end < n:
                if text[end] == ch:
                    if end + 1 < n and text[end + 1] == ch:  # doubled quote = escaped quote
                        end += 2
                        continue
                    break
                end += 1
            current.append(text[i:end + 1])
            has_code = True
            i = end + 1
            continue
        if ch == ";":
            if has_code:
                statements.append("".join(current).strip())
            current, has_code = [], False
            i += 1
            continue
        if not ch.isspace():
            has_code = True
        current.append(ch)
        i += 1
    if has_code:
        statements.append("".join(current).strip())
    return statements


def _is_list(value: Any) -> bool:
    return isinstance(value, (list, set, frozenset, np.ndarray, pd.Series, pd.Index))


class Database:
    """The analytics database at ``url`` (``sqlite:///…`` or ``postgresql+psycopg2://…``)."""

    def __init__(self, url: str | sa.URL):
        self.url = sa.make_url(url)
        backend = self.url.get_backend_name()
        if backend == "sqlite":
            self.engine = _sqlite_engine(self.url)
        elif backend == "postgresql":
            if self.url.get_driver_name() != "psycopg2":
                raise ValueError(f"Postgres needs the psycopg2 driver (postgresql+psycopg2://…), got {self.url.drivername!r}")
            self.engine = sa.create_engine(self.url, pool_pre_ping=True, client_encoding="utf8")
        else:
            raise ValueError(f"unsupported database {self.url.drivername!r}: use sqlite:/// or postgresql+psycopg2://")
        self.dialect: str = backend
        self.tables: dict[str, sa.Table] = dict(schema.DATA_TABLES)

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"

    def dispose(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ schema
    def init_schema(self) -> None:
        """Create or upgrade the schema (idempotent): apply ``sql/<dialect>.sql``, add new columns."""
        path = schema.sql_path(self.dialect)
        text = path.read_text(encoding="utf-8") if path.exists() else schema.ddl(self.dialect)
        with self.begin() as conn:
            if self.dialect == "postgresql":  # concurrent CREATE IF NOT EXISTS can still collide
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK_KEY})")
            statements = split_sql_statements(text)
            creates = [s for s in statements if s.upper().startswith("CREATE TABLE")]
            for statement in creates:
                conn.exec_driver_sql(statement)
            self._add_missing_columns(conn)  # before the indexes, which may be on new columns
            for statement in statements:
                if statement not in creates:
                    conn.exec_driver_sql(statement)

    def _add_missing_columns(self, conn: Connection) -> None:
        """Upgrade path for tables created by an older version: columns are only ever added."""
        inspector = sa.inspect(conn)
        for table in schema.metadata.tables.values():
            existing = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name not in existing:
                    spec = sa.schema.CreateColumn(column).compile(dialect=conn.dialect)
                    conn.exec_driver_sql(f"ALTER TABLE {self._q(table.name)} ADD COLUMN {spec}")

    def schema_version(self) -> int | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.max(schema.schema_version.c.version))).scalar()

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One transaction: commits when the block ends, rolls back (writes nothing) if it raises."""
        with self.engine.connect() as conn:
            conn.execution_options(**{_WRITE: True})
            with conn.begin():
                yield conn

    def _run(self, conn: Connection | None, work: Callable[[Connection], T]) -> T:
        """``work(conn)`` in the caller's transaction, or in one of its own.

        An own transaction that Postgres aborts as a deadlock victim or serialization failure
        (possible when overlapping runs write the same keys) is retried from the start; in a
        caller's transaction the error propagates, as only the caller can redo the whole of it.
        """
        if conn is not None:
            return work(conn)
        for attempt in range(1, TRANSIENT_RETRIES + 1):
            try:
                with self.begin() as own:
                    return work(own)
            except sa.exc.DBAPIError as exc:
                if attempt == TRANSIENT_RETRIES or getattr(exc.orig, "pgcode", None) not in _TRANSIENT_PGCODES:
                    raise
                time.sleep(random.uniform(0.01, 0.05) * attempt)
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ helpers
    def table(self, table: str | sa.Table) -> sa.Table:
        name = table.name if isinstance(table, sa.Table) else table
        try:
            return self.tables[name]
        except KeyError:
            raise ValueError(f"unknown table {name!r}; tables: {', '.join(self.tables)}") from None

    def _q(self, identifier: str) -> str:
        return self.engine.dialect.identifier_preparer.quote(identifier)

    @staticmethod
    def _column(table: sa.Table, name: str) -> sa.Column:
        if name not in table.c:
            raise ValueError(f"{table.name}: unknown column {name!r}; columns: {', '.join(table.c.keys())}")
        return table.c[name]

    def _conditions(self, table: sa.Table, where: Where) -> Iterator[list[sa.ColumnElement]]:
        """Yield lists of clauses; a long IN list is split over several yields (disjoint chunks)."""
        clauses: list[sa.ColumnElement] = []
        lists: list[tuple[sa.Column, list]] = []
        empty = False
        for name, value in (where or {}).items():
            column = self._column(table, name)
            if isinstance(value, tuple):
                if len(value) != 2:
                    raise ValueError(f"{table.name}.{name}: a range is a (lo, hi) tuple, got {value!r}")
                lo, hi = (frames.bind_value(column, v) for v in value)
                if lo is not None and hi is not None:
                    clauses.append(column.between(lo, hi))
                elif lo is not None:
                    clauses.append(column >= lo)
                elif hi is not None:
                    clauses.append(column <= hi)
            elif _is_list(value):
                values = list(dict.fromkeys(frames.bind_values(column, list(value))))
                if any(v is None for v in values):
                    raise ValueError(f"{table.name}.{name}: a list of values cannot contain NULL")
                if not values:
                    empty = True
                lists.append((column, values))
            elif value is None:
                clauses.append(column.is_(None))
            else:
                clauses.append(column == frames.bind_value(column, value))
        if empty:
            return  # an empty IN list matches nothing
        lists.sort(key=lambda item: len(item[1]))
        fixed = clauses + [column.in_(values) for column, values in lists[:-1]]
        if not lists:
            yield fixed
            return
        column, values = lists[-1]
        for start in range(0, len(values), IN_CHUNK):
            yield fixed + [column.in_(values[start:start + IN_CHUNK])]

    # ------------------------------------------------------------------ reading
    def read(self, table: str | sa.Table, where: Where = None, columns: Sequence[str] | None = None, *,
             conn: Connection | None = None) -> pd.DataFrame:
        """Rows matching ``where`` ordered by key; DATE/TIMESTAMP -> datetime64[ns], BOOLEAN -> bool."""
        t = self.table(table)
        if columns is None:
            selected = list(t.columns)
        else:
            if isinstance(columns, str):
                raise TypeError("columns is a list of column names, not a string")
            if len(set(columns)) != len(columns):
                raise ValueError(f"{t.name}: duplicate names in columns={list(columns)}")
            selected = [self._column(t, c) for c in columns]
        rows: list = []
        chunks = 0
        with self._reading(conn) as c:
            for clauses in self._conditions(t, where):
                query = sa.select(*selected).where(*clauses).order_by(*t.primary_key.columns)
                rows.extend(c.execute(query).fetchall())
                chunks += 1
        frame = frames.decode(rows, selected)
        keys = [c.name for c in t.primary_key.columns if c in selected]
        if chunks > 1 and keys:
            frame = frame.sort_values(keys, kind="mergesort", ignore_index=True)
        return frame

    def count(self, table: str | sa.Table) -> int:
        t = self.table(table)
        with self._reading(None) as c:
            return int(c.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())

    def max_date(self, table: str | sa.Table) -> dt.date | None:
        """The newest `date` in a table (None when empty): the layer's freshness."""
        t = self.table(table)
        with self._reading(None) as c:
            return c.execute(sa.select(sa.func.max(t.c.date))).scalar_one()

    def max_date_by(self, table: str | sa.Table, column: str, keys: Sequence[str] | None = None, *,
                    oldest: bool = False, conn: Connection | None = None) -> dict[str, dt.date]:
        """{key: newest `date`} per value of `column` (restricted to `keys` when given); the oldest with `oldest`."""
        t = self.table(table)
        by = self._column(t, column)
        bound = sa.func.min if oldest else sa.func.max
        out: dict[str, dt.date] = {}
        with self._reading(conn) as c:
            for clauses in self._conditions(t, None if keys is None else {column: list(keys)}):
                query = sa.select(by, bound(t.c.date)).where(*clauses).group_by(by)
                out.update({k: d for k, d in c.execute(query).all()})
        return out

    def count_by(self, table: str | sa.Table, column: str, where: Where = None) -> dict[str, int]:
        """{key: number of rows matching ``where``} per value of `column` (a GROUP BY, no rows read)."""
        t = self.table(table)
        by = self._column(t, column)
        out: dict[str, int] = {}
        with self._reading(None) as c:
            for clauses in self._conditions(t, where):
                for key, n in c.execute(sa.select(by, sa.func.count()).where(*clauses).group_by(by)).all():
                    out[key] = out.get(key, 0) + n
        return out

    @contextmanager
    def _reading(self, conn: Connection | None) -> Iterator[Connection]:
        if conn is not None:
            yield conn
        else:
            with self.engine.connect() as own:  # one snapshot for all chunks
                with own.begin():
                    yield own

    # ------------------------------------------------------------------ writing
    def upsert(self, table: str | sa.Table, frame: pd.DataFrame, conn: Connection | None = None) -> int:
        """Insert or update ``frame`` by the table's natural key; returns the number of rows written."""
        t = self.table(table)
        prepared = _prepare(t, frame)
        if prepared is None:
            return 0
        return self._run(conn, lambda c: self._write(c, t, prepared))

    def replace(self, table: str | sa.Table, frame: pd.DataFrame, scope: Mapping[str, Any],
                conn: Connection | None = None) -> int:
        """Delete the rows matching ``scope``, then upsert ``frame`` — one transaction.

        Every row of ``frame`` must lie inside ``scope`` (ValueError otherwise), so after the call the
        scope holds exactly ``frame``. Returns the number of rows written.
        """
        t = self.table(table)
        if not scope:
            raise ValueError(f"{t.name}: replace() needs a non-empty scope (refusing to empty the table)")
        prepared = _prepare(t, frame)
        if prepared is not None:
            _check_in_scope(t, prepared, scope)
        condition_sets = list(self._conditions(t, scope))

        def work(c: Connection) -> int:
            self._delete(c, t, condition_sets)
            return 0 if prepared is None else self._write(c, t, prepared)

        return self._run(conn, work)

    def delete(self, table: str | sa.Table, scope: Mapping[str, Any], conn: Connection | None = None) -> int:
        """Delete the rows matching ``scope`` (non-empty); returns the number deleted."""
        t = self.table(table)
        if not scope:
            raise ValueError(f"{t.name}: delete() needs a non-empty scope")
        condition_sets = list(self._conditions(t, scope))
        return self._run(conn, lambda c: self._delete(c, t, condition_sets))

    def _delete(self, conn: Connection, table: sa.Table, condition_sets: list[list[sa.ColumnElement]]) -> int:
        deleted = 0
        for clauses in condition_sets:
            if self.dialect == "postgresql":  # lock in key order, like the upserts, before deleting
                keys = list(table.primary_key.columns)
                locked = (sa.select(sa.literal(1).label("one")).select_from(table).where(*clauses)
                          .order_by(*keys).with_for_update().subquery())
                conn.execute(sa.select(sa.func.count()).select_from(locked))
            deleted += conn.execute(sa.delete(table).where(*clauses)).rowcount
        return deleted

    def _write(self, conn: Connection, table: sa.Table, prepared: "_Prepared") -> int:
        if self.dialect == "sqlite":
            self._write_sqlite(conn, table, prepared)
        else:
            self._write_postgres(conn, table, prepared)
        return prepared.n_rows

    def _write_sqlite(self, conn: Connection, table: sa.Table, prepared: "_Prepared") -> None:
        insert = sqlite_dialect.insert(table).values({name: sa.bindparam(name) for name in prepared.names})
        insert = _on_conflict(insert, table, prepared.names)
        compiled = insert.compile(dialect=conn.dialect)
        # Values are converted to what SQLAlchemy itself stores on SQLite (ISO text, 0/1), so the
        # statement runs on the driver without per-value type processing.
        columns = [prepared.vectors[prepared.names.index(name)].sqlite() for name in compiled.positiontup]
        for start in range(0, prepared.n_rows, SQLITE_CHUNK_ROWS):
            stop = start + SQLITE_CHUNK_ROWS
            rows = list(zip(*(column[start:stop].tolist() for column in columns)))
            conn.exec_driver_sql(compiled.string, rows)

    def _write_postgres(self, conn: Connection, table: sa.Table, prepared: "_Prepared") -> None:
        q = self._q
        temp = f"_fp_upsert_{uuid.uuid4().hex}"
        column_list = ", ".join(q(name) for name in prepared.names)
        conn.exec_driver_sql(
            f"CREATE TEMP TABLE {temp} ON COMMIT DROP AS SELECT {column_list} FROM {q(table.name)} WITH NO DATA"
        )
        columns = [table.c[name] for name in prepared.names]
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            for start in range(0, prepared.n_rows, COPY_CHUNK_ROWS):
                stream = frames.copy_binary(prepared.vectors, columns, start, start + COPY_CHUNK_ROWS)
                cursor.copy_expert(f"COPY {temp} ({column_list}) FROM STDIN (FORMAT binary)", io.BytesIO(stream))
        finally:
            cursor.close()
        # The temp table was filled in key order (the frame is sorted), and a fresh heap scans in
        # insertion order, so the upsert takes its row locks in key order without an ORDER BY.
        source = sa.table(temp, *(sa.column(name) for name in prepared.names))
        select = sa.select(*(source.c[name] for name in prepared.names))
        insert = pg_dialect.insert(table).from_select(prepared.names, select)
        conn.execute(_on_conflict(insert, table, prepared.names))
        conn.exec_driver_sql(f"DROP TABLE {temp}")

    # ------------------------------------------------------------------ failures
    def _insert(self, table: sa.Table):
        return (sqlite_dialect if self.dialect == "sqlite" else pg_dialect).insert(table)

    def record_failures(self, failures: pd.DataFrame, conn: Connection | None = None) -> int:
        """Upsert open failures ``[symbol, stage, date, error (, status)]``.

        New (symbol, stage): attempts 1, first_seen = last_seen = now, status 'open' unless given.
        Existing: attempts + 1, last_seen = now, date = the later of the two, error = the new one,
        first_seen kept, status kept unless the frame sets it.
        """
        t = schema.symbol_failures
        allowed = {"symbol", "stage", "date", "error", "status"}
        unknown = [c for c in failures.columns if c not in allowed]
        if unknown:
            raise ValueError(f"symbol_failures: record_failures() got unknown column(s) {unknown}; "
                             f"expected symbol, stage, date, error (, status)")
        prepared = _prepare(t, failures)
        if prepared is None:
            return 0
        values = {name: vector.python() for name, vector in zip(prepared.names, prepared.vectors)}
        if "status" in values:
            bad = {s for s in values["status"] if s is not None and s not in schema.FAILURE_STATUSES}
            if bad:
                raise ValueError(f"symbol_failures.status: {sorted(bad)} not in {schema.FAILURE_STATUSES}")
        now = utcnow()
        absent = [None] * prepared.n_rows
        rows = [
            {"symbol": symbol, "stage": stage, "date": date, "error": error, "status": status}
            for symbol, stage, date, error, status in zip(
                values["symbol"], values["stage"], values.get("date", absent),
                values.get("error", absent), values.get("status", absent),
            )
        ]

        def work(c: Connection) -> None:
            for given in (False, True):
                batch = [
                    {**r, "status": r["status"] or "open", "attempts": 1, "first_seen": now, "last_seen": now}
                    for r in rows if (r["status"] is not None) == given
                ]
                if not batch:
                    continue
                insert = self._insert(t)
                new = insert.excluded
                set_ = {
                    "date": sa.case(
                        (new.date.is_(None), t.c.date),
                        (t.c.date.is_(None), new.date),
                        (new.date > t.c.date, new.date),
                        else_=t.c.date,
                    ),
                    "error": sa.func.coalesce(new.error, t.c.error),
                    "attempts": t.c.attempts + 1,
                    "last_seen": new.last_seen,
                }
                if given:
                    set_["status"] = new.status
                c.execute(insert.on_conflict_do_update(index_elements=["symbol", "stage"], set_=set_), batch)

        self._run(conn, work)
        return len(rows)

    def clear_failures(self, symbol_stage_pairs: pd.DataFrame, conn: Connection | None = None, *,
                       statuses: Sequence[str] = ("open",)) -> int:
        """Delete the failures of these (symbol, stage) pairs whose status is in ``statuses``.

        Extra columns of the frame are ignored (a success frame can be passed as is). Returns rows deleted.
        """
        missing = [c for c in ("symbol", "stage") if c not in symbol_stage_pairs.columns]
        if missing:
            raise ValueError(f"symbol_failures: clear_failures() needs columns symbol, stage; missing {missing}")
        pairs = symbol_stage_pairs[["symbol", "stage"]].dropna().drop_duplicates()
        condition_sets = [
            clauses
            for stage, group in pairs.groupby("stage", sort=True)
            for clauses in self._conditions(
                schema.symbol_failures,
                {"stage": stage, "status": list(statuses), "symbol": sorted(group["symbol"].astype(str))},
            )
        ]
        return self._run(conn, lambda c: self._delete(c, schema.symbol_failures, condition_sets))

    def mark_skipped(self, symbols: Sequence[str], stage: str, conn: Connection | None = None, *,
                     error: str | None = None) -> int:
        """Mark (symbol, stage) as 'skipped' (given up, e.g. delisted); creates the row if needed."""
        if isinstance(symbols, str):
            symbols = [symbols]
        symbols = sorted(dict.fromkeys(str(s) for s in symbols))
        if not symbols:
            return 0
        t = schema.symbol_failures
        now = utcnow()
        rows = [
            {"symbol": s, "stage": stage, "date": None, "error": error or "marked skipped", "attempts": 0,
             "first_seen": now, "last_seen": now, "status": "skipped"}
            for s in symbols
        ]
        insert = self._insert(t)
        set_ = {"status": insert.excluded.status, "last_seen": insert.excluded.last_seen}
        if error is not None:
            set_["error"] = insert.excluded.error
        statement = insert.on_conflict_do_update(index_elements=["symbol", "stage"], set_=set_)
        self._run(conn, lambda c: c.execute(statement, rows))
        return len(rows)


# ---------------------------------------------------------------------- module helpers
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
        mode = "IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _on_conflict(insert, table: sa.Table, names: list[str]):
    keys = [c.name for c in table.primary_key.columns]
    updates = [name for name in names if name not in keys]
    if not updates:
        return insert.on_conflict_do_nothing(index_elements=keys)
    new = insert.excluded
    # Identical rows are not rewritten: a re-run costs reads, not writes (WAL, dead tuples).
    where = sa.tuple_(*(table.c[n] for n in updates)).is_distinct_from(sa.tuple_(*(new[n] for n in updates)))
    return insert.on_conflict_do_update(index_elements=keys, set_={n: new[n] for n in updates}, where=where)


class _Prepared:
    """A validated frame: canonical column vectors sorted by the natural key."""

    def __init__(self, names: list[str], vectors: list[frames.Vector], n_rows: int):
        self.names, self.vectors, self.n_rows = names, vectors, n_rows


def _prepare(table: sa.Table, frame: pd.DataFrame) -> _Prepared | None:
    """Validate ``frame`` for ``table`` (ValueError naming table and column); None when empty."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{table.name}: expected a pandas DataFrame, got {type(frame).__name__}")
    if len(frame.columns) == 0 and len(frame) == 0:
        return None
    names = [str(c) for c in frame.columns]
    if len(set(names)) != len(names):
        duplicated = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"{table.name}: duplicate column(s) {duplicated} in the frame")
    unknown = [n for n in names if n not in table.c]
    if unknown:
        raise ValueError(f"{table.name}: unknown column(s) {unknown}; the table has {', '.join(table.c.keys())}")
    keys = [c.name for c in table.primary_key.columns]
    required = keys + [c.name for c in table.columns
                       if not c.nullable and c.server_default is None and c.name not in keys]
    missing = [n for n in required if n not in names]
    if missing:
        raise ValueError(f"{table.name}: missing required column(s) {missing}")
    if len(frame) == 0:
        return None
    vectors = [frames.encode(frame.iloc[:, i], table.c[name]) for i, name in enumerate(names)]
    for name, vector in zip(names, vectors):
        if not table.c[name].nullable and vector.mask.any():
            first = frame.index[int(np.argmax(vector.mask))]
            raise ValueError(f"{table.name}: column {name!r} is NULL in {int(vector.mask.sum())} row(s) "
                             f"(first at index {first!r}); it is part of the key or NOT NULL")
    key_frame = pd.DataFrame({k: vectors[names.index(k)].values for k in keys})
    duplicated = key_frame.duplicated(keep=False).to_numpy()
    if duplicated.any():
        example = key_frame[duplicated].iloc[0].to_dict()
        raise ValueError(f"{table.name}: {int(duplicated.sum())} rows share a key with another row "
                         f"of the frame, e.g. {example}")
    order = key_frame.sort_values(keys, kind="mergesort").index.to_numpy()
    if not (order[1:] > order[:-1]).all():
        vectors = [frames.Vector(v.kind, v.values[order], v.mask[order]) for v in vectors]
    return _Prepared(names, vectors, len(frame))


def _check_in_scope(table: sa.Table, prepared: _Prepared, scope: Mapping[str, Any]) -> None:
    """Every row of a replace() frame must match the scope it replaces (else ValueError)."""
    for name, wanted in scope.items():
        column = Database._column(table, name)
        if name not in prepared.names:
            continue
        vector = prepared.vectors[prepared.names.index(name)]
        values = pd.Series(vector.values)

        def canonical(value: Any) -> Any:
            encoded = frames.encode(pd.Series([value], dtype=object), column)
            return None if encoded.mask[0] else encoded.values[0]

        if wanted is None:
            inside = vector.mask.copy()
        else:
            present = ~vector.mask
            if isinstance(wanted, tuple):
                lo, hi = (None if v is None else canonical(v) for v in wanted)
                inside = present.copy()
                if lo is not None:
                    inside[present] &= (values[present] >= lo).to_numpy()
                if hi is not None:
                    inside[present] &= (values[present] <= hi).to_numpy()
            elif _is_list(wanted):
                allowed = frames.encode(pd.Series(list(wanted), dtype=object), column)
                inside = present & values.isin(allowed.values[~allowed.mask]).to_numpy()
            else:
                inside = present & (values == canonical(wanted)).to_numpy()
        if not inside.all():
            example = vector.python()[int(np.argmin(inside))]
            raise ValueError(f"{table.name}: {int((~inside).sum())} row(s) of the frame lie outside the scope "
                             f"on {name!r} (e.g. {example!r} not in {wanted!r})")


__all__ = ["Database", "split_sql_statements", "utcnow"]
