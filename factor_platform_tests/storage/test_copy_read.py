"""Postgres reads through COPY ... TO STDOUT (CSV) give the frame the driver's rows give, bit for bit.

The oracle is the path every other read took before: psycopg2's rows through `frames.decode`. A
probe table holds each column kind, nullable and not, with the values CSV and float text get wrong
when done carelessly: empty strings beside NULLs, quotes, newlines, the NULL marker's text, -0.0,
subnormals, infinities, the largest doubles, 17-digit floats, far dates and microsecond timestamps.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from factor_platform.storage import Database, frames

from .test_upsert import HOSTILE

pytestmark = pytest.mark.postgres

ROWS = 400


def _probe_table() -> sa.Table:
    return sa.Table(
        "copy_read_probe",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("maybe_day", sa.Date, nullable=True),
        sa.Column("stamp", sa.DateTime, nullable=True),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("maybe_value", sa.Float, nullable=True),
        sa.Column("count", sa.BigInteger, nullable=True),
        sa.Column("flag", sa.Boolean, nullable=True),
    )


def _rows(rng: np.random.Generator) -> list[dict]:
    awkward = [0.0, -0.0, 5e-324, -2.2250738585072014e-308, 1.7976931348623157e308, float("inf"), float("-inf")]
    awkward += [0.1 + 0.2, 1 / 3, 123456789.12345679, 1e-300, 2.0**-1074 * 3]
    bits = rng.integers(0, 2**63, size=ROWS, dtype=np.uint64).view(np.float64)  # any finite double
    bits = np.where(np.isfinite(bits), bits, 1.0)
    rows = []
    for i in range(ROWS):
        text = HOSTILE[i % len(HOSTILE)]
        rows.append(
            {
                "id": i,
                "name": text,
                "note": None if i % 3 == 0 else text,
                "day": dt.date(1900, 1, 1) + dt.timedelta(days=int(rng.integers(0, 80_000))),
                "maybe_day": None if i % 4 == 0 else dt.date(2024, 2, 29) + dt.timedelta(days=i),
                "stamp": None
                if i % 5 == 0
                else dt.datetime(1969, 12, 31, 23, 59, 59, 999_999)
                + dt.timedelta(microseconds=int(rng.integers(0, 2**50))),
                "value": awkward[i] if i < len(awkward) else float(bits[i]),
                "maybe_value": None if i % 2 == 0 else float(rng.normal() * 10.0 ** rng.integers(-20, 20)),
                "count": None if i % 7 == 0 else int(rng.integers(-(2**62), 2**62)),
                "flag": None if i % 6 == 0 else bool(i % 2),
            }
        )
    return rows


def _same_bits(left: pd.DataFrame, right: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(left, right, check_exact=True)
    for name in left.columns:
        if left[name].dtype == "float64":
            np.testing.assert_array_equal(left[name].to_numpy().view(np.int64), right[name].to_numpy().view(np.int64))


@pytest.fixture
def probe(_postgres_session_database: Database):
    db, table = _postgres_session_database, _probe_table()
    table.create(db.engine, checkfirst=True)
    try:
        yield db, table
    finally:
        table.drop(db.engine)


def _both_ways(db: Database, query: sa.Select, columns: list[sa.Column]) -> tuple[pd.DataFrame, pd.DataFrame]:
    with db.engine.connect() as conn, conn.begin():
        by_driver = frames.decode(conn.execute(query).fetchall(), columns)
        by_copy = frames.decode_copy(db._copy_out(conn, query, columns), columns)
    return by_copy, by_driver


def test_copy_read_equals_the_driver_rows_bit_for_bit(probe):
    db, table = probe
    with db.engine.begin() as conn:
        conn.execute(table.insert(), _rows(np.random.default_rng(7)))
        # psycopg2 sends -0.0 as the literal -0.0, which Postgres reads as minus numeric zero: 0.
        conn.execute(table.update().where(table.c.id == 1).values(value=sa.text("'-0'::float8")))
    columns = list(table.columns)
    by_copy, by_driver = _both_ways(db, sa.select(*columns).order_by(table.c.id), columns)
    assert len(by_copy) == ROWS
    _same_bits(by_copy, by_driver)
    # The cases the CSV could lose: an empty string is not NULL, -0.0 keeps its sign.
    assert (by_copy["note"] == "").sum() == sum(1 for i in range(ROWS) if i % 3 and HOSTILE[i % len(HOSTILE)] == "")
    assert by_copy["note"].isna().sum() == len(range(0, ROWS, 3))
    assert np.signbit(by_copy.loc[1, "value"]) and by_copy.loc[1, "value"] == 0.0


def test_copy_read_of_no_rows_and_of_columns_without_nulls_has_the_drivers_dtypes(probe):
    db, table = probe
    columns = list(table.columns)
    by_copy, by_driver = _both_ways(db, sa.select(*columns), columns)
    _same_bits(by_copy, by_driver)
    with db.engine.begin() as conn:
        conn.execute(table.insert(), [{**r, "count": 1, "flag": True} for r in _rows(np.random.default_rng(3))[1:20]])
    by_copy, by_driver = _both_ways(
        db, sa.select(*columns).where(table.c.id.in_([4, 5, 6])).order_by(table.c.id), columns
    )
    _same_bits(by_copy, by_driver)
    assert by_copy["count"].dtype == "int64" and by_copy["flag"].dtype == bool


def test_database_read_binds_values_through_the_driver(database):
    """Hostile symbols are values of the WHERE clause, not SQL: each finds exactly its own row."""
    prices = pd.DataFrame(
        {
            "symbol": [s for s in HOSTILE if s],
            "date": pd.Timestamp("2024-01-02"),
            "close": np.arange(1.0, len(HOSTILE)),
        }
    )
    database.upsert("prices", prices)
    for symbol in prices["symbol"]:
        got = database.read(
            "prices", {"symbol": [symbol], "date": (dt.date(2024, 1, 1), None)}, columns=["symbol", "close"]
        )
        assert got["symbol"].tolist() == [symbol]
    assert database.count("prices") == len(prices)
