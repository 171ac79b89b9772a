"""DataFrame <-> database values, for the columns of :mod:`factor_platform.storage.schema`.

Writing: every column of a frame becomes a :class:`Vector` of *canonical* values — dates as
``datetime64[D]``, timestamps as naive-UTC ``datetime64[us]``, floats/ints/bools as numpy arrays,
text as ``str`` — plus a NULL mask (NaN, NaT, None, pd.NA). The dialects then encode those:
Python values for SQLite's executemany (dates as the ``'YYYY-MM-DD'`` / ``'YYYY-MM-DD
HH:MM:SS.ffffff'`` text that SQLAlchemy itself stores on SQLite), a binary COPY stream for Postgres.

Reading: rows -> a frame with ``datetime64[ns]`` dates/timestamps, ``float64`` floats, ``int64``
(``Int64`` when NULLs) integers, ``bool`` (``boolean`` when NULLs) booleans.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

# Kinds of column, from the SQLAlchemy type.
DATE, TIMESTAMP, FLOAT, INTEGER, BOOLEAN, TEXT = "date", "timestamp", "float", "integer", "boolean", "text"


def type_kind(type_: sa.types.TypeEngine) -> str | None:
    """The kind of a SQLAlchemy type (also of reflected ones), None when unsupported."""
    for base, kind in (
        (sa.DateTime, TIMESTAMP),
        (sa.Date, DATE),
        (sa.Boolean, BOOLEAN),
        (sa.Integer, INTEGER),
        (sa.Float, FLOAT),
        (sa.String, TEXT),
    ):
        if isinstance(type_, base):
            return kind
    return None


def column_kind(column: sa.Column) -> str:
    kind = type_kind(column.type)
    if kind is None:
        raise TypeError(f"{column.table.name}.{column.name}: unsupported column type {column.type!r}")
    return kind


@dataclass
class Vector:
    """One column of canonical values. ``values[mask]`` are meaningless (NULL)."""

    kind: str
    values: np.ndarray
    mask: np.ndarray

    def take(self, index: np.ndarray | slice) -> Vector:
        return Vector(self.kind, self.values[index], self.mask[index])

    def sqlite(self) -> np.ndarray:
        """Object array of the values SQLite stores for this column (None for NULL)."""
        if self.kind == DATE:
            out = self.values.astype(str).astype(object)
        elif self.kind == TIMESTAMP:
            out = np.char.replace(self.values.astype(str), "T", " ").astype(object)
        elif self.kind == BOOLEAN:
            out = self.values.astype(np.int64).astype(object)
        else:
            out = self.values.astype(object)  # numpy scalars -> Python int/float/str
        out[self.mask] = None
        return out

    def python(self) -> np.ndarray:
        """Object array of Python values (date, datetime, float, int, bool, str; None for NULL)."""
        out = self.values.astype(object)
        out[self.mask] = None
        return out


def _where(table: sa.Table, column: str) -> str:
    return f"{table.name}.{column}"


def _datetimes(series: pd.Series, table: sa.Table, name: str) -> pd.Series:
    """Series -> tz-naive datetime64 series (tz-aware values are converted to UTC)."""
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return series.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_dtype(series.dtype):
        return series
    try:
        parsed = pd.to_datetime(series, format="ISO8601")
    except (ValueError, TypeError) as exc:
        try:  # a mix of tz-aware objects
            parsed = pd.to_datetime(series, format="ISO8601", utc=True)
        except (ValueError, TypeError):
            raise ValueError(f"{_where(table, name)}: values are not ISO dates/timestamps ({exc})") from None
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed


def encode(series: pd.Series, column: sa.Column) -> Vector:
    """Validate and convert one frame column to canonical values (ValueError naming the column)."""
    table, name, kind = column.table, column.name, column_kind(column)
    if kind in (DATE, TIMESTAMP):
        stamps = _datetimes(series, table, name)
        mask = stamps.isna().to_numpy()
        raw = stamps.to_numpy()
        if kind == DATE:
            values = raw.astype("datetime64[D]")
            if (values[~mask] != raw[~mask]).any():
                raise ValueError(f"{_where(table, name)}: a DATE column got values with a time of day")
        else:
            values = raw.astype("datetime64[us]")
        return Vector(kind, values, mask)
    if kind == TEXT:
        values = series.to_numpy(dtype=object, na_value=None)
        mask = pd.isna(values)
        if not mask.all() and pd.api.types.infer_dtype(values[~mask], skipna=False) != "string":
            values = np.array([v if m or isinstance(v, str) else str(v) for v, m in zip(values, mask)], dtype=object)
        mask = np.asarray(mask, dtype=bool)
        if pd.Series(values[~mask], dtype=object).str.contains("\x00", regex=False).any():
            raise ValueError(f"{_where(table, name)}: text contains a NUL character (Postgres cannot store it)")
        return Vector(kind, values, mask)
    if kind == BOOLEAN:
        mask = series.isna().to_numpy()
        valid = series[~mask]
        if pd.api.types.is_bool_dtype(valid.dtype):
            flags = valid.to_numpy(dtype=bool)
        else:
            objects = valid.to_numpy(dtype=object)
            if not all(
                isinstance(v, (bool, np.bool_))
                or (isinstance(v, (int, float, np.integer, np.floating)) and v in (0, 1))
                for v in objects
            ):
                raise ValueError(f"{_where(table, name)}: BOOLEAN column needs True/False/NULL values")
            flags = objects.astype(bool)
        values = np.zeros(len(series), dtype=bool)
        values[~mask] = flags
        return Vector(kind, values, mask)
    # FLOAT and INTEGER
    try:
        numbers = pd.to_numeric(series, errors="raise")
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{_where(table, name)}: values are not numeric ({exc})") from None
    mask = numbers.isna().to_numpy()
    floats = numbers.to_numpy(dtype="float64", na_value=np.nan)
    if kind == FLOAT:
        return Vector(kind, floats, mask)
    if pd.api.types.is_integer_dtype(numbers.dtype):
        ints = numbers.to_numpy(dtype="int64", na_value=0)
    else:
        finite = floats[~mask]
        if not np.isfinite(finite).all() or (finite != np.round(finite)).any():
            raise ValueError(f"{_where(table, name)}: INTEGER column got non-integral values")
        ints = np.where(mask, 0, floats).astype("int64")
    return Vector(kind, ints, mask)


def bind_values(column: sa.Column, values: list) -> list:
    """Values of a where/scope clause -> the Python values SQLAlchemy binds for that column."""
    if not values:
        return []
    return encode(pd.Series(values, dtype=object), column).python().tolist()


def bind_value(column: sa.Column, value: Any) -> Any:
    return None if value is None else bind_values(column, [value])[0]


# ------------------------------------------------------------------ Postgres binary COPY
# COPY ... FROM STDIN (FORMAT binary): no text escaping at all (hostile strings are just bytes) and
# no float formatting (doubles travel as their 8 bytes), assembled with numpy in a few passes.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8  # signature, flags, header-extension length
_COPY_TRAILER = b"\xff\xff"
_PG_EPOCH_DAY = np.datetime64("2000-01-01", "D")
_PG_EPOCH_US = np.datetime64("2000-01-01T00:00:00", "us")


def _binary_payload(vector: Vector, column: sa.Column) -> tuple[np.ndarray, np.ndarray]:
    """(payload length per row, -1 = NULL; uint8 payload of the non-NULL rows in order)."""
    valid = ~vector.mask
    if vector.kind == TEXT:  # encode the distinct values once, then gather their bytes per row
        codes, uniques = pd.factorize(vector.values[valid])
        encoded = [u.encode("utf-8") for u in uniques]
        unique_lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        unique_starts = np.cumsum(unique_lengths) - unique_lengths
        lengths = np.full(len(vector.mask), -1, dtype=np.int64)
        lengths[valid] = unique_lengths[codes]
        blob = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        return lengths, _gather(blob, unique_starts[codes], unique_lengths[codes])
    if vector.kind == FLOAT:
        payload = vector.values[valid].astype(">f8")
    elif vector.kind == INTEGER:
        wide = isinstance(column.type, sa.BigInteger)
        values = vector.values[valid]
        if not wide and len(values) and (values.min() < -(2**31) or values.max() >= 2**31):
            raise ValueError(f"{_where(column.table, column.name)}: value out of INTEGER range")
        payload = values.astype(">i8" if wide else ">i4")
    elif vector.kind == BOOLEAN:
        payload = vector.values[valid].astype(np.uint8)
    elif vector.kind == DATE:  # days since 2000-01-01
        payload = (vector.values[valid] - _PG_EPOCH_DAY).astype(">i4")
    else:  # TIMESTAMP: microseconds since 2000-01-01
        payload = (vector.values[valid] - _PG_EPOCH_US).astype(">i8")
    width = payload.dtype.itemsize
    lengths = np.where(vector.mask, -1, width).astype(np.int64)
    return lengths, payload.view(np.uint8)


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(starts[i], starts[i] + lengths[i])`` for all i."""
    total = int(lengths.sum())
    piece_starts = np.cumsum(lengths) - lengths
    return np.repeat(starts - piece_starts, lengths) + np.arange(total, dtype=np.int64)


def _gather(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``data[starts[i]:starts[i] + lengths[i]]`` for all i."""
    return data[_ranges(starts, lengths)]


def copy_binary(vectors: list[Vector], columns: list[sa.Column], start: int, stop: int) -> bytes:
    """Rows ``start:stop`` as one Postgres binary COPY stream (header, tuples, trailer)."""
    n = max(0, min(stop, len(vectors[0].mask)) - start)
    payloads = [_binary_payload(v.take(slice(start, start + n)), c) for v, c in zip(vectors, columns)]
    field_sizes = [4 + np.maximum(lengths, 0) for lengths, _ in payloads]
    row_sizes = 2 + np.sum(field_sizes, axis=0) if payloads else np.full(n, 2)
    row_starts = len(_COPY_HEADER) + np.cumsum(row_sizes) - row_sizes
    total = len(_COPY_HEADER) + int(row_sizes.sum()) + len(_COPY_TRAILER)
    buffer = np.empty(total, dtype=np.uint8)
    buffer[: len(_COPY_HEADER)] = np.frombuffer(_COPY_HEADER, dtype=np.uint8)
    buffer[total - len(_COPY_TRAILER) :] = np.frombuffer(_COPY_TRAILER, dtype=np.uint8)
    two, four = np.arange(2), np.arange(4)
    count = np.full(n, len(vectors), dtype=">i2").view(np.uint8).reshape(n, 2)
    buffer[row_starts[:, None] + two] = count
    offsets = row_starts + 2
    for (lengths, data), sizes in zip(payloads, field_sizes):
        buffer[offsets[:, None] + four] = lengths.astype(">i4").view(np.uint8).reshape(n, 4)
        present = lengths >= 0
        buffer[_ranges((offsets + 4)[present], lengths[present])] = data
        offsets = offsets + sizes
    return buffer.tobytes()


# ------------------------------------------------------------------ reading
def decode(rows: list, columns: list[sa.Column]) -> pd.DataFrame:
    """Result rows (tuples) -> a frame with the dtypes described in the module docstring."""
    names = [c.name for c in columns]
    data = list(zip(*rows)) if rows else [()] * len(columns)
    out = {}
    for column, name, values in zip(columns, names, data):
        kind = column_kind(column)
        raw = pd.Series(values, dtype=object)
        if kind in (DATE, TIMESTAMP):
            series = pd.to_datetime(raw, format="ISO8601" if kind == TIMESTAMP else None).astype("datetime64[ns]")
        elif kind == FLOAT:
            series = raw.astype("float64")
        elif kind == INTEGER:
            series = raw.astype("Int64") if raw.isna().any() else raw.astype("int64")
        elif kind == BOOLEAN:
            series = raw.astype("boolean") if raw.isna().any() else raw.astype(bool)
        else:  # pandas' string dtype, NaN for NULL
            series = raw.astype("str")
        out[name] = series.reset_index(drop=True)
    return pd.DataFrame(out, columns=names)


def utcnow() -> dt.datetime:
    """Naive UTC now, microsecond precision (the timestamps of the schema are naive UTC)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


# ------------------------------------------------------------------ Postgres CSV COPY (reading)
# COPY (SELECT ...) TO STDOUT (FORMAT csv) parsed by pandas' C reader: ~3.5x faster than fetching
# rows through the driver (1.5M prices: 1.9 s against 6.7 s, docs/benchmarks.md). Each column is
# selected in a form whose text is exact: dates as days since 1970, timestamps as integer
# microseconds, booleans as 0/1, floats as Postgres' shortest round-trip text; a nullable text
# column travels with a NULL flag (CSV alone cannot tell NULL from an empty string to pandas).
_EPOCH_DATE = sa.literal_column("DATE '1970-01-01'")
_UNIX_DAY = np.datetime64("1970-01-01", "D")
_UNIX_US = np.datetime64("1970-01-01T00:00:00", "us")


def copy_selection(columns: list[sa.Column]) -> list[sa.ColumnElement]:
    """The select list whose CSV `decode_copy` reads back as `decode` would the rows of `columns`."""
    out: list[sa.ColumnElement] = []
    for column in columns:
        kind = column_kind(column)
        if kind == DATE:
            out.append(column - _EPOCH_DATE)
        elif kind == TIMESTAMP:
            out.append(sa.cast(sa.extract("epoch", column) * 1_000_000, sa.BigInteger))
        elif kind == BOOLEAN:
            out.append(sa.cast(column, sa.Integer))
        else:
            out.append(column)
        if kind == TEXT and column.nullable:
            out.append(sa.cast(column.is_(None), sa.Integer))
    return out


def decode_copy(data: bytes, columns: list[sa.Column]) -> pd.DataFrame:
    """The CSV of `copy_selection(columns)` -> the frame `decode` makes of the same rows."""
    labels, dtypes, missing = [], {}, {}
    for i, column in enumerate(columns):
        kind = column_kind(column)
        label = f"c{i}"
        labels.append(label)
        dtypes[label] = object if kind == TEXT else "float64" if kind == FLOAT else "Int64"
        missing[label] = [] if kind == TEXT else ["", "NaN"] if kind == FLOAT else [""]
        if kind == TEXT and column.nullable:
            labels.append(f"{label}_null")
            dtypes[f"{label}_null"], missing[f"{label}_null"] = "int64", []
    if data:
        raw = pd.read_csv(
            io.BytesIO(data),
            header=None,
            names=labels,
            dtype=dtypes,
            keep_default_na=False,
            na_values=missing,
            encoding="utf-8",
        )
    else:
        raw = pd.DataFrame({label: pd.Series([], dtype=dtypes[label]) for label in labels})
    out = {}
    for i, column in enumerate(columns):
        kind, series = column_kind(column), raw[f"c{i}"]
        if kind == TEXT:
            values = series.to_numpy(dtype=object, copy=True)
            if column.nullable:
                values[raw[f"c{i}_null"].to_numpy() == 1] = None
            out[column.name] = pd.Series(values, dtype=object).astype("str")
        elif kind == FLOAT:
            out[column.name] = series
        else:
            mask = series.isna().to_numpy()
            numbers = series.to_numpy(dtype="int64", na_value=0)
            if kind == DATE:
                stamps = (_UNIX_DAY + numbers.astype("timedelta64[D]")).astype("datetime64[ns]")
            elif kind == TIMESTAMP:
                stamps = (_UNIX_US + numbers.astype("timedelta64[us]")).astype("datetime64[ns]")
            if kind in (DATE, TIMESTAMP):
                stamps[mask] = np.datetime64("NaT")
                out[column.name] = pd.Series(stamps)
            elif kind == INTEGER:
                out[column.name] = series if mask.any() else pd.Series(numbers)
            else:  # BOOLEAN
                out[column.name] = series.astype("boolean") if mask.any() else pd.Series(numbers.astype(bool))
    return pd.DataFrame(out, columns=[c.name for c in columns]).reset_index(drop=True)
