"""Bulk writes: a frame validated and encoded once (`prepare`), then upserted by the natural key
(`write`) — sorted by key, so overlapping runs lock in the same order; identical rows are not rewritten."""

from __future__ import annotations

import io
import uuid
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection

from factor_platform.storage import frames

SQLITE_CHUNK_ROWS = 20_000
COPY_CHUNK_ROWS = 100_000


def is_list(value: Any) -> bool:
    return isinstance(value, (list, set, frozenset, np.ndarray, pd.Series, pd.Index))


def column_of(table: sa.Table, name: str) -> sa.Column:
    if name not in table.c:
        raise ValueError(f"{table.name}: unknown column {name!r}; columns: {', '.join(table.c.keys())}")
    return table.c[name]


def on_conflict(insert, table: sa.Table, names: list[str]):
    keys = [c.name for c in table.primary_key.columns]
    updates = [name for name in names if name not in keys]
    if not updates:
        return insert.on_conflict_do_nothing(index_elements=keys)
    new = insert.excluded
    # Identical rows are not rewritten: a re-run costs reads, not writes (WAL, dead tuples).
    where = sa.tuple_(*(table.c[n] for n in updates)).is_distinct_from(sa.tuple_(*(new[n] for n in updates)))
    return insert.on_conflict_do_update(index_elements=keys, set_={n: new[n] for n in updates}, where=where)


class Prepared:
    """A validated frame: canonical column vectors sorted by the natural key."""

    def __init__(self, names: list[str], vectors: list[frames.Vector], n_rows: int):
        self.names, self.vectors, self.n_rows = names, vectors, n_rows


def prepare(table: sa.Table, frame: pd.DataFrame) -> Prepared | None:
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
    required = keys + [
        c.name for c in table.columns if not c.nullable and c.server_default is None and c.name not in keys
    ]
    missing = [n for n in required if n not in names]
    if missing:
        raise ValueError(f"{table.name}: missing required column(s) {missing}")
    if len(frame) == 0:
        return None
    vectors = [frames.encode(frame.iloc[:, i], table.c[name]) for i, name in enumerate(names)]
    for name, vector in zip(names, vectors):
        if not table.c[name].nullable and vector.mask.any():
            first = frame.index[int(np.argmax(vector.mask))]
            raise ValueError(
                f"{table.name}: column {name!r} is NULL in {int(vector.mask.sum())} row(s) "
                f"(first at index {first!r}); it is part of the key or NOT NULL"
            )
    key_frame = pd.DataFrame({k: vectors[names.index(k)].values for k in keys})
    duplicated = key_frame.duplicated(keep=False).to_numpy()
    if duplicated.any():
        example = key_frame[duplicated].iloc[0].to_dict()
        raise ValueError(
            f"{table.name}: {int(duplicated.sum())} rows share a key with another row of the frame, e.g. {example}"
        )
    order = key_frame.sort_values(keys, kind="mergesort").index.to_numpy()
    if not (order[1:] > order[:-1]).all():
        vectors = [frames.Vector(v.kind, v.values[order], v.mask[order]) for v in vectors]
    return Prepared(names, vectors, len(frame))


def check_in_scope(table: sa.Table, prepared: Prepared, scope: Mapping[str, Any]) -> None:
    """Every row of a replace() frame must match the scope it replaces (else ValueError)."""
    for name, wanted in scope.items():
        column = column_of(table, name)
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
            elif is_list(wanted):
                allowed = frames.encode(pd.Series(list(wanted), dtype=object), column)
                inside = present & values.isin(allowed.values[~allowed.mask]).to_numpy()
            else:
                inside = present & (values == canonical(wanted)).to_numpy()
        if not inside.all():
            example = vector.python()[int(np.argmin(inside))]
            raise ValueError(
                f"{table.name}: {int((~inside).sum())} row(s) of the frame lie outside the scope "
                f"on {name!r} (e.g. {example!r} not in {wanted!r})"
            )


def write(conn: Connection, table: sa.Table, prepared: Prepared) -> int:
    """Upsert the prepared rows: executemany on SQLite, binary COPY into a temp table then one
    INSERT .. SELECT .. ON CONFLICT on Postgres. Returns the number of rows."""
    if conn.dialect.name == "sqlite":
        _write_sqlite(conn, table, prepared)
    else:
        _write_postgres(conn, table, prepared)
    return prepared.n_rows


def _write_sqlite(conn: Connection, table: sa.Table, prepared: Prepared) -> None:
    insert = sqlite_dialect.insert(table).values({name: sa.bindparam(name) for name in prepared.names})
    insert = on_conflict(insert, table, prepared.names)
    compiled = insert.compile(dialect=conn.dialect)
    # Values are converted to what SQLAlchemy itself stores on SQLite (ISO text, 0/1), so the
    # statement runs on the driver without per-value type processing.
    columns = [prepared.vectors[prepared.names.index(name)].sqlite() for name in compiled.positiontup]
    for start in range(0, prepared.n_rows, SQLITE_CHUNK_ROWS):
        stop = start + SQLITE_CHUNK_ROWS
        rows = list(zip(*(column[start:stop].tolist() for column in columns)))
        conn.exec_driver_sql(compiled.string, rows)


def _write_postgres(conn: Connection, table: sa.Table, prepared: Prepared) -> None:
    q = conn.dialect.identifier_preparer.quote
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
    conn.execute(on_conflict(insert, table, prepared.names))
    conn.exec_driver_sql(f"DROP TABLE {temp}")
