"""The schema: generated DDL files, contract tables/columns/keys, idempotent apply, upgrades."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from factor_platform.storage import Database, frames, schema, split_sql_statements

# The contract (CONTRACT.md §3) as the spec: table -> its columns, in contract order.
CONTRACT_COLUMNS = {
    "prices": ["symbol", "date", "open", "high", "low", "close", "adj_close", "volume", "source"],
    "symbol_factor_exposures": [
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
    ],
    "symbol_metrics": [
        "symbol",
        "date",
        "return_1d",
        "return_5d",
        "return_21d",
        "return_63d",
        "return_252d",
        "volatility_21d",
        "volatility_63d",
        "high_52w",
        "low_52w",
    ],
    "company_profiles": ["symbol", "name", "sector", "industry", "market_cap", "currency", "updated_at"],
    "fundamentals": ["symbol", "period_end", "metric", "value"],
    "symbol_failures": ["symbol", "stage", "date", "error", "attempts", "first_seen", "last_seen"],
    "portfolios": ["portfolio_id", "name", "starting_equity", "inception_date", "created_at"],
    "positions": [
        "position_id",
        "portfolio_id",
        "symbol",
        "position_type",
        "investment_class",
        "quantity",
        "entry_price",
        "entry_date",
        "exit_date",
        "exit_price",
        "underlying",
        "strike",
        "expiration",
        "option_type",
        "manual_market_value",
        "sector",
    ],
    "position_values": [
        "portfolio_id",
        "position_id",
        "date",
        "price",
        "market_value",
        "exposure",
        "delta",
        "price_source",
    ],
    "portfolio_snapshots": [
        "portfolio_id",
        "date",
        "equity",
        "cash",
        "long_exposure",
        "short_exposure",
        "gross_exposure",
        "net_exposure",
        "daily_pnl",
        "daily_return",
        "cumulative_pnl",
        "n_positions",
        "is_complete",
    ],
    "portfolio_factor_exposures": ["portfolio_id", "date", "factor", "beta", "exposure_dollar"],
    "portfolio_sector_weights": ["portfolio_id", "date", "sector", "weight"],
    "portfolio_risk": [
        "portfolio_id",
        "date",
        "volatility_21d",
        "volatility_63d",
        "volatility_forecast",
        "hhi",
        "effective_n",
        "top3_weight",
        "top10_weight",
    ],
    "portfolio_correlations": ["portfolio_id", "date", "symbol_a", "symbol_b", "rho", "cluster"],
    "stress_results": ["portfolio_id", "date", "scenario", "pnl", "pnl_pct"],
}

NATURAL_KEYS = {
    "prices": ["symbol", "date"],
    "symbol_factor_exposures": ["symbol", "date", "factor"],
    "symbol_metrics": ["symbol", "date"],
    "company_profiles": ["symbol"],
    "fundamentals": ["symbol", "period_end", "metric"],
    "symbol_failures": ["symbol", "stage"],
    "portfolios": ["portfolio_id"],
    "positions": ["position_id"],
    "position_values": ["portfolio_id", "position_id", "date"],
    "portfolio_snapshots": ["portfolio_id", "date"],
    "portfolio_factor_exposures": ["portfolio_id", "date", "factor"],
    "portfolio_sector_weights": ["portfolio_id", "date", "sector"],
    "portfolio_risk": ["portfolio_id", "date"],
    "portfolio_correlations": ["portfolio_id", "date", "symbol_a", "symbol_b"],
    "stress_results": ["portfolio_id", "date", "scenario"],
}

# Tables the project adds (docs/contract-additions.md), with their keys.
ADDED_TABLES = {
    "corporate_actions": ["symbol", "date", "kind"],
    "stale_partitions": ["asset", "key", "first_date"],
    "price_rebasings": ["symbol", "recorded_at"],
    "history_spans": ["asset", "key", "first_date"],
}

EXPECTED_KINDS = {  # columns whose type the brief fixes; every other non-text column is a float
    "date": "date",
    "period_end": "date",
    "inception_date": "date",
    "entry_date": "date",
    "exit_date": "date",
    "expiration": "date",
    "updated_at": "timestamp",
    "first_seen": "timestamp",
    "last_seen": "timestamp",
    "created_at": "timestamp",
    "n_obs": "integer",
    "n_positions": "integer",
    "attempts": "integer",
    "volume": "integer",
    "cluster": "integer",
    "is_complete": "boolean",
}


def _snapshot(db: Database) -> dict:
    inspector = sa.inspect(db.engine)
    return {
        name: (
            [(c["name"], frames.type_kind(c["type"]), c["nullable"]) for c in inspector.get_columns(name)],
            inspector.get_pk_constraint(name)["constrained_columns"],
            sorted((ix["name"], tuple(ix["column_names"])) for ix in inspector.get_indexes(name)),
        )
        for name in sorted(inspector.get_table_names())
    }


@pytest.mark.parametrize("dialect", schema.DIALECTS)
def test_sql_files_are_the_generated_ddl(dialect):
    path = schema.sql_path(dialect)
    assert path.read_text(encoding="utf-8") == schema.ddl(dialect), (
        f"{path} is stale: regenerate it with `python -m factor_platform.storage.schema`"
    )


def test_every_contract_table_is_in_the_metadata_with_its_key():
    assert set(schema.DATA_TABLES) == set(CONTRACT_COLUMNS) | set(ADDED_TABLES)
    for name, key in ADDED_TABLES.items():
        assert [c.name for c in schema.metadata.tables[name].primary_key.columns] == key
    for name, columns in CONTRACT_COLUMNS.items():
        table = schema.metadata.tables[name]
        assert [c for c in table.c.keys() if c in columns] == columns
        assert [c.name for c in table.primary_key.columns] == NATURAL_KEYS[name]


def test_contract_tables_columns_and_keys_exist_in_the_database(database):
    inspector = sa.inspect(database.engine)
    tables = set(inspector.get_table_names())
    assert set(CONTRACT_COLUMNS) | {"schema_version"} <= tables
    for name, columns in CONTRACT_COLUMNS.items():
        reflected = {c["name"]: c for c in inspector.get_columns(name)}
        missing = [c for c in columns if c not in reflected]
        assert not missing, f"{name} lacks contract columns {missing}"
        assert inspector.get_pk_constraint(name)["constrained_columns"] == NATURAL_KEYS[name]
        for column in columns:
            kind = frames.type_kind(reflected[column]["type"])
            expected = EXPECTED_KINDS.get(column, "text" if kind == "text" else "float")
            assert kind == expected, f"{name}.{column} is {reflected[column]['type']!r}"
    assert "status" in {c["name"] for c in inspector.get_columns("symbol_failures")}
    indexed = {tuple(ix["column_names"]) for ix in inspector.get_indexes("prices")}
    assert ("date",) in indexed
    assert ("date",) in {tuple(ix["column_names"]) for ix in inspector.get_indexes("symbol_factor_exposures")}
    assert ("portfolio_id",) in {tuple(ix["column_names"]) for ix in inspector.get_indexes("positions")}


def test_database_schema_matches_the_metadata(database):
    """What the sql file created is what the metadata (and so the writers) describe."""
    snapshot = _snapshot(database)
    for name, table in schema.metadata.tables.items():
        columns, pk, indexes = snapshot[name]
        assert [(c.name, frames.column_kind(c), c.nullable) for c in table.columns] == columns
        assert [c.name for c in table.primary_key.columns] == pk
        assert sorted((ix.name, tuple(c.name for c in ix.columns)) for ix in table.indexes) == indexes


def test_init_schema_twice_is_a_no_op(database):
    frame = pd.DataFrame({"symbol": ["AAA"], "date": [pd.Timestamp("2024-01-02")], "close": [10.0]})
    database.upsert("prices", frame)
    before = _snapshot(database)
    database.init_schema()
    database.init_schema()
    assert _snapshot(database) == before
    assert database.schema_version() == schema.SCHEMA_VERSION
    with database.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM schema_version")).scalar() == 1
    pd.testing.assert_series_equal(database.read("prices")["close"], frame["close"])


@pytest.mark.parametrize("url_fixture", ["sqlite_url", pytest.param("postgres_url", marks=pytest.mark.postgres)])
def test_init_schema_upgrades_an_older_table_by_adding_columns(request, url_fixture):
    db = Database(request.getfixturevalue(url_fixture))
    try:
        with db.begin() as conn:  # symbol_failures as an older version had it: no status column
            conn.exec_driver_sql(
                "CREATE TABLE symbol_failures (symbol TEXT NOT NULL, stage TEXT NOT NULL, date DATE, error TEXT, "
                "attempts INTEGER NOT NULL DEFAULT 1, first_seen TIMESTAMP, last_seen TIMESTAMP, "
                "PRIMARY KEY (symbol, stage))"
            )
            conn.exec_driver_sql("INSERT INTO symbol_failures (symbol, stage, error) VALUES ('X', 'prices', 'e')")
        db.init_schema()
        failures = db.read("symbol_failures")
        assert failures[["symbol", "status"]].values.tolist() == [["X", "open"]]
        assert set(CONTRACT_COLUMNS) <= set(sa.inspect(db.engine).get_table_names())
    finally:
        db.dispose()


@pytest.mark.parametrize("url_fixture", ["sqlite_url", pytest.param("postgres_url", marks=pytest.mark.postgres)])
def test_fresh_urls_are_empty_and_usable(url_fixture, request):
    db = Database(request.getfixturevalue(url_fixture))
    try:
        assert sa.inspect(db.engine).get_table_names() == []
        db.init_schema()
        assert db.read("prices").empty
    finally:
        db.dispose()


def test_unsupported_urls_are_rejected():
    with pytest.raises(ValueError, match="psycopg2"):
        Database("postgresql+psycopg://u@localhost/db")
    with pytest.raises(ValueError, match="unsupported database"):
        Database("mysql://u@localhost/db")


def test_split_sql_statements_respects_quotes_and_comments():
    script = """
    -- a comment; with a semicolon
    CREATE TABLE a (x TEXT DEFAULT 'semi;colon', "we;ird" INTEGER);
    /* block; comment */
    INSERT INTO a (x) VALUES ('it''s; fine');
    ;
    -- trailing comment only
    """
    statements = split_sql_statements(script)
    assert len(statements) == 2
    assert statements == [
        """CREATE TABLE a (x TEXT DEFAULT 'semi;colon', "we;ird" INTEGER)""",
        "INSERT INTO a (x) VALUES ('it''s; fine')",
    ]
