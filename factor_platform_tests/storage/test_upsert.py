"""upsert / replace / read on both dialects: idempotence, scopes, NULLs, hostile values, validation."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from factor_platform.storage import Database

D1, D2, D3 = pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-03"), pd.Timestamp("2024-01-04")

HOSTILE = [
    "O'Brien",
    'say "hi"',
    "a,b",
    "tab\there",
    "back\\slash",
    "\\N",
    "new\nline",
    "cr\rlf\r\n",
    "ünïcødé 株式 🚀",
    "",
    "  padded  ",
    "%s",
    "%(symbol)s",
    "?",
    ":symbol",
    "'); DROP TABLE prices; --",
    "BRK.B",
    "semi;colon",
]


def exposures(symbols=("AAA", "BBB"), dates=(D1, D2), factors=("market_beta", "value"), seed=0) -> pd.DataFrame:
    keys = pd.MultiIndex.from_product([list(symbols), list(dates), list(factors)], names=["symbol", "date", "factor"])
    frame = keys.to_frame(index=False)
    rng = np.random.default_rng(seed)
    for column in ("beta", "alpha", "r_squared", "std_error", "p_value"):
        frame[column] = rng.normal(size=len(frame))
    frame["n_obs"] = 90
    frame["method"] = "ols"
    return frame


def count(db: Database, table: str) -> int:
    with db.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(db.table(table))).scalar()


def assert_frame_matches(actual: pd.DataFrame, expected: pd.DataFrame, keys: list[str]) -> None:
    expected = expected.sort_values(keys, ignore_index=True)
    pd.testing.assert_frame_equal(actual[list(expected.columns)], expected, check_dtype=False)


# ---------------------------------------------------------------------------- upsert
def test_upsert_inserts_and_reads_back(database):
    frame = exposures()
    assert database.upsert("symbol_factor_exposures", frame) == len(frame)
    back = database.read("symbol_factor_exposures")
    assert list(back.columns) == [
        "symbol",
        "date",
        "factor",
        "beta",
        "alpha",
        "r_squared",
        "std_error",
        "p_value",
        "n_obs",
        "method",
    ]
    assert back["date"].dtype == "datetime64[ns]"
    assert back["n_obs"].dtype == "int64"
    assert_frame_matches(back, frame, ["symbol", "date", "factor"])


def test_upsert_is_idempotent_and_updates_changed_values(database):
    frame = exposures()
    database.upsert("symbol_factor_exposures", frame)
    database.upsert("symbol_factor_exposures", frame)
    assert count(database, "symbol_factor_exposures") == len(frame)
    assert_frame_matches(database.read("symbol_factor_exposures"), frame, ["symbol", "date", "factor"])

    changed = frame.copy()
    changed["beta"] = changed["beta"] + 1.0
    changed.loc[0, "method"] = "ridge"
    database.upsert("symbol_factor_exposures", changed)
    assert count(database, "symbol_factor_exposures") == len(frame)
    assert_frame_matches(database.read("symbol_factor_exposures"), changed, ["symbol", "date", "factor"])


def test_upsert_of_some_columns_leaves_the_others_untouched(database):
    frame = exposures()
    database.upsert("symbol_factor_exposures", frame)
    partial = frame[["symbol", "date", "factor", "beta"]].assign(beta=42.0)
    database.upsert("symbol_factor_exposures", partial)
    back = database.read("symbol_factor_exposures")
    assert (back["beta"] == 42.0).all()
    assert_frame_matches(back.drop(columns="beta"), frame.drop(columns="beta"), ["symbol", "date", "factor"])


def test_upsert_accepts_unsorted_frames_any_index_and_column_order(database):
    frame = exposures(symbols=("ZZZ", "AAA", "MMM")).sample(frac=1.0, random_state=3)
    frame.index = frame.index * 7 + 100
    shuffled = frame[list(reversed(frame.columns))]
    database.upsert("symbol_factor_exposures", shuffled)
    back = database.read("symbol_factor_exposures")
    assert back["symbol"].tolist() == sorted(back["symbol"].tolist())  # read orders by key
    assert_frame_matches(back, frame.reset_index(drop=True), ["symbol", "date", "factor"])


def test_empty_frames_write_nothing(database):
    assert database.upsert("prices", pd.DataFrame()) == 0
    assert database.upsert("prices", pd.DataFrame(columns=["symbol", "date", "close"])) == 0
    assert count(database, "prices") == 0


def test_large_upsert_and_chunked_in_lists(database):
    symbols = [f"S{i:05d}" for i in range(2500)]
    frame = pd.DataFrame({"symbol": symbols, "date": D1, "close": np.arange(2500, dtype=float)})
    database.upsert("prices", frame)
    wanted = symbols[::2] + ["NOT_THERE"]
    back = database.read("prices", {"symbol": wanted})
    assert back["symbol"].tolist() == symbols[::2]
    assert database.replace("prices", frame.iloc[:10], {"symbol": symbols[:2000]}) == 10
    assert count(database, "prices") == 510


def test_count_by_counts_matching_rows_per_key_across_chunked_in_lists(database):
    symbols = [f"S{i:05d}" for i in range(2500)]
    days = [D1, D2, D3]
    frame = pd.DataFrame(
        [(s, d, 1.0) for i, s in enumerate(symbols) for d in days[: 1 + i % 3]], columns=["symbol", "date", "close"]
    )
    database.upsert("prices", frame)
    got = database.count_by("prices", "symbol", {"symbol": symbols + ["NOT_THERE"], "date": (D2.date(), D3.date())})
    assert got == {s: i % 3 for i, s in enumerate(symbols) if i % 3}
    assert database.count_by("prices", "date") == {D1.date(): 2500, D2.date(): 1666, D3.date(): 833}


# ---------------------------------------------------------------------------- values
def test_hostile_strings_round_trip(database):
    prices = pd.DataFrame({"symbol": HOSTILE, "date": D1, "close": 1.0, "source": list(reversed(HOSTILE))})
    database.upsert("prices", prices)
    back = database.read("prices")
    assert sorted(zip(back["symbol"], back["source"])) == sorted(zip(HOSTILE, reversed(HOSTILE)))
    for symbol in HOSTILE:
        assert database.read("prices", {"symbol": symbol})["symbol"].tolist() == [symbol]
    assert sorted(database.read("prices", {"symbol": HOSTILE[:5]})["symbol"]) == sorted(HOSTILE[:5])
    database.replace("prices", prices.iloc[:1], {"symbol": HOSTILE[:3]})
    assert set(database.read("prices")["symbol"]) == set(HOSTILE) - set(HOSTILE[1:3])
    with database.engine.connect() as conn:  # stored as plain values, not escaped text
        stored = conn.execute(sa.text("SELECT symbol FROM prices WHERE symbol = :s"), {"s": "tab\there"}).scalar()
    assert stored == "tab\there"


def test_nulls_are_null_in_every_type(database):
    snapshots = pd.DataFrame(
        {
            "portfolio_id": ["P", "P", "P"],
            "date": [D1, D2, D3],
            "equity": [1.0, np.nan, None],
            "n_positions": pd.array([3, None, 5], dtype="Int64"),
            "is_complete": pd.array([True, None, False], dtype="boolean"),
        }
    )
    database.upsert("portfolio_snapshots", snapshots)
    positions = pd.DataFrame(
        {
            "position_id": ["a", "b", "c", "d"],
            "portfolio_id": "P",
            "symbol": ["AAA", "BBB", "CCC", "DDD"],
            "exit_date": [D1, pd.NaT, None, np.nan],
            "sector": ["Tech", None, np.nan, pd.NA],
            "strike": [1.5, pd.NA, np.nan, None],
        }
    )
    database.upsert("positions", positions)
    with database.engine.connect() as conn:

        def nulls(table: str, column: str) -> int:
            return conn.execute(sa.text(f"SELECT COUNT(*) FROM {table} WHERE {column} IS NULL")).scalar()

        assert nulls("portfolio_snapshots", "equity") == 2
        assert nulls("portfolio_snapshots", "n_positions") == 1
        assert nulls("portfolio_snapshots", "is_complete") == 1
        assert nulls("positions", "exit_date") == 3
        assert nulls("positions", "sector") == 3
        assert nulls("positions", "strike") == 3
    back = database.read("portfolio_snapshots")
    assert back["n_positions"].tolist()[0] == 3 and back["n_positions"].isna().tolist() == [False, True, False]
    assert back["is_complete"].isna().tolist() == [False, True, False]
    assert back["is_complete"].dtype == "boolean" and bool(back["is_complete"].iloc[0]) is True
    read_positions = database.read("positions")
    assert read_positions["exit_date"].isna().tolist() == [False, True, True, True]
    assert read_positions["sector"].isna().tolist() == [False, True, True, True]
    assert database.read("positions", {"sector": None})["position_id"].tolist() == ["b", "c", "d"]


def test_read_dtypes_and_python_value_conversions(database):
    frame = pd.DataFrame(
        {
            "portfolio_id": ["P", "P"],
            "date": [dt.date(2024, 1, 2), "2024-01-03"],
            "equity": [np.float32(1.5), 2],
            "n_positions": [np.int64(3), 4.0],
            "is_complete": [np.bool_(True), False],
        }
    )
    database.upsert("portfolio_snapshots", frame)
    back = database.read("portfolio_snapshots")
    assert back["date"].tolist() == [D1, D2]
    assert back["date"].dtype == "datetime64[ns]"
    assert back["equity"].tolist() == [1.5, 2.0]
    assert back["n_positions"].dtype == "int64" and back["n_positions"].tolist() == [3, 4]
    assert back["is_complete"].dtype == bool and back["is_complete"].tolist() == [True, False]
    with database.engine.connect() as conn:  # dates are YYYY-MM-DD in the database
        assert conn.execute(
            sa.text("SELECT CAST(date AS TEXT) FROM portfolio_snapshots ORDER BY date")
        ).scalars().all() == ["2024-01-02", "2024-01-03"]
    empty = database.read("portfolio_snapshots", {"portfolio_id": []})
    assert empty.empty and empty["date"].dtype == "datetime64[ns]" and list(empty.columns) == list(back.columns)


def test_floats_and_timestamps_round_trip_exactly(database):
    values = [0.1, 1 / 3, 1e-300, 5e-324, 1.7976931348623157e308, -0.0, 123456789.123456789, np.inf, -np.inf]
    frame = pd.DataFrame({"symbol": [f"S{i}" for i in range(len(values))], "date": D1, "close": values})
    database.upsert("prices", frame)
    assert database.read("prices")["close"].tolist() == values
    stamp = pd.Timestamp("2024-05-06 07:08:09.123456")
    aware = pd.Timestamp("2024-05-06 09:08:09.123456", tz="Europe/Berlin")  # = stamp in UTC
    database.upsert("company_profiles", pd.DataFrame({"symbol": ["A", "B"], "updated_at": [stamp, stamp]}))
    database.upsert("company_profiles", pd.DataFrame({"symbol": ["B"], "updated_at": [aware]}))
    assert database.read("company_profiles")["updated_at"].tolist() == [stamp, stamp]


def test_where_forms(database):
    frame = exposures(symbols=("AAA", "BBB", "CCC"), dates=(D1, D2, D3), factors=("market_beta",))
    database.upsert("symbol_factor_exposures", frame)
    read = database.read
    assert len(read("symbol_factor_exposures", {"symbol": "AAA"})) == 3
    assert len(read("symbol_factor_exposures", {"symbol": ["AAA", "CCC"], "date": (D2, D3)})) == 4
    assert len(read("symbol_factor_exposures", {"date": ("2024-01-03", None)})) == 6
    assert len(read("symbol_factor_exposures", {"date": (None, dt.date(2024, 1, 2))})) == 3
    assert len(read("symbol_factor_exposures", {"date": np.datetime64("2024-01-04")})) == 3
    assert len(read("symbol_factor_exposures", {"symbol": pd.Series(["BBB"]), "factor": {"market_beta"}})) == 3
    assert read("symbol_factor_exposures", {"symbol": []}).empty
    narrow = read("symbol_factor_exposures", {"symbol": "BBB"}, columns=["date", "beta"])
    assert list(narrow.columns) == ["date", "beta"] and narrow["date"].tolist() == [D1, D2, D3]


# ---------------------------------------------------------------------------- replace
def test_replace_removes_stale_rows_only_within_scope(database):
    frame = exposures(symbols=("AAA", "BBB"), dates=(D1, D2, D3), factors=("market_beta", "value"))
    database.upsert("symbol_factor_exposures", frame)
    fresh = exposures(symbols=("AAA",), dates=(D1,), factors=("market_beta",), seed=9)
    written = database.replace("symbol_factor_exposures", fresh, {"symbol": ["AAA"], "date": (D1, D2)})
    assert written == 1
    back = database.read("symbol_factor_exposures")
    kept = frame[~((frame["symbol"] == "AAA") & frame["date"].isin([D1, D2]))]
    assert_frame_matches(back, pd.concat([kept, fresh]), ["symbol", "date", "factor"])
    # an empty frame empties the scope
    database.replace("symbol_factor_exposures", frame.iloc[:0], {"symbol": "BBB", "date": D3})
    assert len(database.read("symbol_factor_exposures", {"symbol": "BBB"})) == 4


def test_replace_validates_before_deleting(database):
    frame = exposures()
    database.upsert("symbol_factor_exposures", frame)
    bad = frame.assign(nonsense=1)
    with pytest.raises(ValueError, match="nonsense"):
        database.replace("symbol_factor_exposures", bad, {"symbol": ["AAA", "BBB"]})
    with pytest.raises(ValueError, match="outside the scope"):
        database.replace("symbol_factor_exposures", frame, {"symbol": ["AAA"]})
    with pytest.raises(ValueError, match="outside the scope"):
        database.replace("symbol_factor_exposures", frame, {"date": (D1, D1)})
    with pytest.raises(ValueError, match="non-empty scope"):
        database.replace("symbol_factor_exposures", frame, {})
    assert count(database, "symbol_factor_exposures") == len(frame)


def test_delete_by_scope(database):
    database.upsert("symbol_factor_exposures", exposures())
    assert database.delete("symbol_factor_exposures", {"symbol": "AAA", "factor": ["value"]}) == 2
    assert count(database, "symbol_factor_exposures") == 6
    with pytest.raises(ValueError, match="non-empty scope"):
        database.delete("symbol_factor_exposures", {})


# ---------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.assign(bogus=1), r"symbol_factor_exposures: unknown column\(s\) \['bogus'\]"),
        (lambda f: f.drop(columns="factor"), r"symbol_factor_exposures: missing required column\(s\) \['factor'\]"),
        (lambda f: f.assign(symbol=[None] + f["symbol"].tolist()[1:]), r"column 'symbol' is NULL in 1 row"),
        (lambda f: f.assign(date=[pd.NaT] + f["date"].tolist()[1:]), r"column 'date' is NULL in 1 row"),
        (lambda f: pd.concat([f, f.iloc[:1]]), r"symbol_factor_exposures: 2 rows share a key"),
        (lambda f: f.assign(date=f["date"] + pd.Timedelta(hours=1)), r"symbol_factor_exposures\.date: .*time of day"),
        (lambda f: f.assign(date="01/02/2024"), r"symbol_factor_exposures\.date: values are not ISO"),
        (lambda f: f.assign(n_obs=1.5), r"symbol_factor_exposures\.n_obs: INTEGER column got non-integral"),
        (lambda f: f.assign(beta="abc"), r"symbol_factor_exposures\.beta: values are not numeric"),
    ],
    ids=[
        "unknown-column",
        "missing-key",
        "null-symbol",
        "null-date",
        "duplicate-key",
        "time-in-date",
        "non-iso-date",
        "fractional-int",
        "non-numeric",
    ],
)
def test_upsert_validation_errors_name_table_and_column(database, change, message):
    with pytest.raises(ValueError, match=message):
        database.upsert("symbol_factor_exposures", change(exposures()))
    assert count(database, "symbol_factor_exposures") == 0


def test_other_validation_errors(database):
    with pytest.raises(ValueError, match="unknown table 'nope'"):
        database.upsert("nope", exposures())
    with pytest.raises(ValueError, match="positions: missing required column"):
        database.upsert("positions", pd.DataFrame({"position_id": ["x"], "portfolio_id": ["P"]}))
    with pytest.raises(ValueError, match="is_complete: BOOLEAN"):
        database.upsert(
            "portfolio_snapshots", pd.DataFrame({"portfolio_id": ["P"], "date": [D1], "is_complete": ["yes"]})
        )
    with pytest.raises(ValueError, match="prices: unknown column 'colour'"):
        database.read("prices", {"colour": "red"})
    with pytest.raises(ValueError, match="prices: unknown column 'colour'"):
        database.read("prices", columns=["symbol", "colour"])
    with pytest.raises(ValueError, match=r"\(lo, hi\) tuple"):
        database.read("prices", {"date": (D1, D2, D3)})
    with pytest.raises(TypeError):
        database.upsert("prices", [{"symbol": "A"}])


def test_text_with_nul_is_rejected_on_both_dialects(database):
    with pytest.raises(ValueError, match="prices.source: text contains a NUL"):
        database.upsert("prices", pd.DataFrame({"symbol": ["A"], "date": [D1], "source": ["a\x00b"]}))
